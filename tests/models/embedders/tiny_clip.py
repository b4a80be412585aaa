"""A tiny random-weight open_clip model for fast tests (no download, a few MB, CPU in milliseconds).

Import it from a test file after putting this folder on ``sys.path``::

    sys.path.insert(0, str(Path(__file__).parent))        # from tests/models
    from tiny_clip import make_tiny_clip_embedder

or from elsewhere: ``sys.path.insert(0, str(Path(__file__).parents[1] / "models"))``.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

TINY_ARCH = "vitrine-tiny-clip"
TINY_DIM = 32
TINY_IMAGE_SIZE = 64

TINY_CONFIG = {
    "embed_dim": TINY_DIM,
    "vision_cfg": {
        "image_size": TINY_IMAGE_SIZE,
        "layers": 2,
        "width": 64,
        "head_width": 32,
        "patch_size": 16,
    },
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

_config_dir: str | None = None


def register_tiny_arch() -> str:
    """Make ``vitrine-tiny-clip`` a known open_clip architecture (idempotent); return its name."""
    global _config_dir
    import open_clip

    if TINY_ARCH in open_clip.list_models():
        return TINY_ARCH
    if _config_dir is None:
        _config_dir = tempfile.mkdtemp(prefix="vitrine-tiny-clip-")
        atexit.register(shutil.rmtree, _config_dir, True)
    path = Path(_config_dir) / f"{TINY_ARCH}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    return TINY_ARCH


def build_tiny_clip(seed: int = 0):
    """``(model, eval preprocess, tokenizer)`` with random weights drawn from ``seed``."""
    import open_clip
    import torch

    register_tiny_arch()
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_ARCH, pretrained=None)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(TINY_ARCH)


def make_tiny_clip_embedder(name: str = "clip-tiny-test", seed: int = 0, device: str = "cpu"):
    """An :class:`~vitrine.models.embedders.clip.OpenClipEmbedder` around a tiny random model (32-d joint space)."""
    from vitrine.models.embedders.clip import OpenClipEmbedder

    model, preprocess, tokenizer = build_tiny_clip(seed)
    return OpenClipEmbedder.from_open_clip(name, model, preprocess, tokenizer, device=device)


def save_tiny_clip_weights(path, seed: int = 0) -> Path:
    """Save the state_dict of ``build_tiny_clip(seed)`` to ``path`` (``.safetensors`` or torch format)."""
    import torch

    model, _, _ = build_tiny_clip(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def tiny_variant(name: str = "clip-tiny-test", repo_id: str = "vitrine-test/tiny-clip", tag: str = "test"):
    """A :class:`~vitrine.models.embedders.clip.ClipVariant` of the tiny architecture, with a fake hub repo."""
    from vitrine.models.base import ModelCard
    from vitrine.models.embedders.clip import OPEN_CLIP_WEIGHT_FILES, ClipVariant

    register_tiny_arch()
    return ClipVariant(
        name=name,
        arch=TINY_ARCH,
        default_pretrained=tag,
        pretrained_env=None,
        hub_files={tag: (repo_id, OPEN_CLIP_WEIGHT_FILES)},
        card=ModelCard(summary="tiny random CLIP for tests", license="MIT"),
    )


def populate_hf_cache(cache_dir, repo_id: str, files: dict[str, Path], revision: str = "0" * 40) -> Path:
    """Lay ``files`` ({name in repo: source file}) out in ``cache_dir`` like huggingface_hub does
    (``models--org--name/{blobs,refs/main,snapshots/<rev>/...}``); return the snapshot folder."""
    repo_dir = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    (repo_dir / "blobs").mkdir(exist_ok=True)
    for name, src in files.items():
        blob = repo_dir / "blobs" / f"blob-{abs(hash(name))}"
        shutil.copyfile(src, blob)
        dest = snapshot / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            dest.symlink_to(Path("..", "..", "blobs", blob.name) if "/" not in name else blob.resolve())
        except OSError:  # no symlinks (some Windows setups): huggingface_hub copies too
            shutil.copyfile(blob, dest)
    return snapshot


# --------------------------------------------------------------------------------------------
# a tiny multilingual-style model: Hugging Face XLM-RoBERTa text tower + tokenizer from local files

TINY_ML_ARCH = "vitrine-tiny-xlmr-clip"
TINY_ML_CONFIG = {
    "embed_dim": TINY_DIM,
    "vision_cfg": TINY_CONFIG["vision_cfg"],
    "text_cfg": {
        "hf_model_name": "xlm-roberta-base",
        "hf_tokenizer_name": "xlm-roberta-base",
        "hf_pooler_type": "mean_pooler",
    },
}
_WORDS = (
    "a photo of the un une chat chien dog cat voiture car maison house rouge red bleu blue rose pink vert green"
).split()


def write_tiny_xlmr(folder) -> Path:
    """Write ``config.json`` and ``tokenizer.json`` of a tiny random XLM-RoBERTa into ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("<mask>", 0.0)]
    vocab += [("\u2581" + w, -1.0) for w in _WORDS] + [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.save(str(folder / "tokenizer.json"))
    config = {
        "model_type": "xlm-roberta",
        "architectures": ["XLMRobertaModel"],
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 80,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "type_vocab_size": 1,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def register_tiny_ml_arch() -> str:
    import open_clip

    register_tiny_arch()
    if TINY_ML_ARCH not in open_clip.list_models():
        path = Path(_config_dir) / f"{TINY_ML_ARCH}.json"
        path.write_text(json.dumps(TINY_ML_CONFIG))
        open_clip.add_model_config(path)
    return TINY_ML_ARCH


def tiny_multilingual_variant(
    name: str = "clip-tiny-ml-test",
    repo_id: str = "vitrine-test/tiny-ml-clip",
    text_repo: str = "vitrine-test/tiny-xlmr",
    tag: str = "test",
):
    """Like ``clip-multilingual`` (text tower config and tokenizer from a hub repo), but tiny."""
    from vitrine.models.base import ModelCard
    from vitrine.models.embedders.clip import OPEN_CLIP_WEIGHT_FILES, ClipVariant

    register_tiny_ml_arch()
    return ClipVariant(
        name=name,
        arch=TINY_ML_ARCH,
        default_pretrained=tag,
        pretrained_env=None,
        text_repos=(text_repo,),
        hub_files={tag: (repo_id, OPEN_CLIP_WEIGHT_FILES)},
        card=ModelCard(summary="tiny random multilingual CLIP for tests", license="MIT", languages=("en", "fr")),
    )


def build_tiny_multilingual(text_dir, seed: int = 0):
    """``(model, preprocess, tokenizer)``: random tiny model whose text tower is read from ``text_dir``."""
    import torch

    from vitrine.models.embedders.clip import build_open_clip

    variant = tiny_multilingual_variant()
    torch.manual_seed(seed)
    return build_open_clip(variant, None, variant.default_pretrained, "cpu", Path(text_dir))


# --------------------------------------------------------------------------------------------
# a fake Hugging Face hub on localhost (enough of the protocol for hf_hub_download)


class FakeHub:
    """Serve ``{"org/name": {"file": bytes}}`` like huggingface.co does, on 127.0.0.1.

    Use as a context manager and point ``HF_ENDPOINT`` at ``hub.endpoint``. ``hub.requests``
    lists ``(method, path)`` of every request served.
    """

    def __init__(self, repos: dict[str, dict[str, bytes]], commit: str = "c" * 40):
        self.repos = repos
        self.commit = commit
        self.requests: list[tuple[str, str]] = []
        self._server = None

    def _lookup(self, path: str) -> bytes | None:
        # /{org}/{name}/resolve/{revision}/{filename}
        parts = path.split("?")[0].lstrip("/").split("/")
        if len(parts) >= 5 and parts[2] == "resolve":
            return self.repos.get(f"{parts[0]}/{parts[1]}", {}).get("/".join(parts[4:]))
        return None

    def __enter__(self) -> FakeHub:
        import hashlib
        import http.server
        import threading

        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _headers(self) -> bytes | None:
                hub.requests.append((self.command, self.path))
                if self.path in ("", "/"):
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                body = hub._lookup(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                self.send_response(200)
                self.send_header("X-Repo-Commit", hub.commit)
                self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest() + '"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                return body

            def do_HEAD(self):  # noqa: N802
                self._headers()

            def do_GET(self):  # noqa: N802
                body = self._headers()
                if body:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
