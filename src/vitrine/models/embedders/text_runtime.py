"""Text towers on ONNX Runtime: a text query embedded without torch.

A text search needs one vector from the model's text tower. Loading the whole model through torch
(torch, open_clip or timm, sentence-transformers) takes seconds; the text tower alone, exported to
ONNX and run by ONNX Runtime with a ``tokenizers`` tokenizer, loads in a fraction of that and embeds a
query in milliseconds. Two kinds of tower are exported:

* ``clip``: an open_clip text tower (token ids -> joint vector, L2-normalised). Its attention is
  causal and it pools at the end-of-text token, so the ids after the last end-of-text of a batch
  change nothing: the ONNX graph takes any sequence length and the runtime cuts each batch there
  (a short query runs a few tokens instead of 77). The tokenizer is open_clip's own BPE vocabulary
  and merges written as a ``tokenizer.json``; open_clip's text cleaning (ftfy, HTML unescaping,
  whitespace, lower case) runs in Python before it, as open_clip does;
* ``mean_pool``: a sentence-transformers encoder (all-MiniLM-L6-v2 for ``offline-concepts``):
  BERT, the mean of the token vectors under the attention mask, L2-normalised, all in the graph;
  its own ``tokenizer.json`` with the model's maximum sequence length.

The model modules export their tower once per weights (:func:`vitrine.runtime.cache.cached`, keyed
by the weights' hash) when a project is indexed, and the project records where it went
(:func:`record`); a later query opens that folder (:func:`open_recorded`) and never imports torch.
A folder that is missing, unreadable or made from other weights than the ones the model now
resolves to is not used: the caller falls back to the torch model.
"""

from __future__ import annotations

import html
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from vitrine.runtime.cache import MANIFEST, artifact_key, cached, read_manifest
from vitrine.runtime.session import Session, Variant, open_session

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
# VITRINE_TEXT_RUNTIME=torch: text queries load the torch model even where a tower was exported
# (a comparison, or a way around a runtime problem)
TEXT_RUNTIME_ENV = "VITRINE_TEXT_RUNTIME"
MODEL_STEM = "text"
INT8_FILE = f"{MODEL_STEM}-int8.onnx"  # the int8 copy, kept only when the gate picks it
CHOICE_FILE = "choice.json"
KINDS = ("clip", "mean_pool")
OPSET = 17
TEXT_BATCH = 64  # texts per run: a batch pads to its longest text
# ONNX Runtime threads per query: a query is a few tokens, which one thread embeds as fast as two
# (MiniLM, 2-core machine: 2.2 ms on 1 thread, 2.4-7.7 ms on 2 while other processes ran), and
# concurrent requests then run side by side on the other cores instead of contending for them
QUERY_THREADS = 1
# open_clip's pre-tokenizer pattern (after its special tokens): words, single digits, punctuation runs
CLIP_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


class NotExportable(ValueError):
    """This model's text side is not one the exporters here handle (it stays on torch)."""


# --------------------------------------------------------------------------------------------
# running an exported tower


def clean_clip_text(text: str) -> str:
    """open_clip's ``lower`` cleaning: ftfy's fixes, HTML unescaped twice, whitespace collapsed, lower case."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:  # open_clip requires ftfy; without it (a lean install) only NFC, as ftfy also does
        import unicodedata

        text = unicodedata.normalize("NFC", text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).strip().lower()


class RuntimeTextEncoder:
    """An exported text tower: ``embed_texts(texts) -> (n, dim)`` float32, L2-normalised, in ``space``."""

    def __init__(self, folder: str | os.PathLike, threads: int | None = QUERY_THREADS, manifest: Mapping | None = None):
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        manifest = dict(manifest) if manifest is not None else read_manifest(self.folder)
        if manifest is None:
            raise FileNotFoundError(f"no {MANIFEST} in {self.folder}")
        if manifest.get("kind") not in KINDS:
            raise ValueError(f"{self.folder}: unknown text tower kind {manifest.get('kind')!r}")
        self.manifest = manifest
        self.kind: str = manifest["kind"]
        self.space: str = manifest["space"]
        self.dim: int = int(manifest["dim"])
        self.max_length: int = int(manifest["max_length"])
        self.pad_id: int = int(manifest.get("pad_id", 0))
        self.tokenizer = Tokenizer.from_file(str(self.folder / TOKENIZER_FILE))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.precision: str = manifest.get("precision", "fp32")
        onnx_file = self.folder / manifest.get("model_file", f"{MODEL_STEM}.onnx")
        # ONNX Runtime's run() is thread-safe: concurrent queries share the session
        self.session: Session = open_session(onnx_file, Variant("onnxruntime", self.precision), threads=threads)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The ids each text runs as (special tokens added, truncated to the model's length)."""
        if self.kind == "clip":
            texts = [clean_clip_text(t) for t in texts]
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        width = max(len(x) for x in ids)
        tokens = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for i, row in enumerate(ids):
            tokens[i, : len(row)] = row
            mask[i, : len(row)] = 1
        feeds = {"input_ids": tokens}
        if self.kind == "mean_pool":
            feeds["attention_mask"] = mask
        return self.session.run(feeds)[0]

    def embed_texts(self, texts: Sequence[str] | str) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = self.token_ids(texts)
        # similar lengths together, so a batch pads little
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for start in range(0, len(order), TEXT_BATCH):
            rows = order[start : start + TEXT_BATCH]
            out[rows] = self._run([ids[i] for i in rows])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def __repr__(self) -> str:
        return f"RuntimeTextEncoder({self.kind}, {self.space!r}, dim={self.dim}, folder={str(self.folder)!r})"


_OPEN: dict[str, RuntimeTextEncoder] = {}
_OPEN_LOCK = threading.Lock()


def open_encoder(folder: str | os.PathLike) -> RuntimeTextEncoder:
    """The encoder in ``folder``, opened once per process (a server keeps it warm)."""
    key = str(Path(folder).resolve())
    with _OPEN_LOCK:
        enc = _OPEN.get(key)
        if enc is None:
            enc = _OPEN[key] = RuntimeTextEncoder(folder)
        return enc


# --------------------------------------------------------------------------------------------
# where a project finds it: a record kept in the catalog


def _stat(path: str | os.PathLike) -> list:
    st = os.stat(path)
    return [str(path), st.st_size, st.st_mtime_ns]


def record(folder: Path, weight_files: Sequence[str | os.PathLike] = ()) -> dict:
    """What a project keeps to find the exported tower again: its folder and key, and the size and
    modification time of each weights file it was made from (checked at query time by ``stat``
    alone, so a replaced file is noticed without hashing it)."""
    manifest = read_manifest(folder) or {}
    return {
        "folder": str(folder),
        "key": manifest.get("key"),
        "space": manifest.get("space"),
        "dim": manifest.get("dim"),
        "weights": [_stat(p) for p in weight_files],
    }


def stale_reason(rec: Mapping) -> str | None:
    """Why a recorded tower cannot be used (None: it can)."""
    folder = Path(str(rec.get("folder", "")))
    manifest = read_manifest(folder)
    if manifest is None:
        return f"no exported text tower in {folder}"
    if manifest.get("key") != rec.get("key"):
        return f"{folder} holds another export than the one recorded"
    for entry in rec.get("weights") or []:
        path, size, mtime = entry
        try:
            if _stat(path)[1:] != [size, mtime]:
                return f"weights file {path} changed since the export"
        except OSError:
            return f"weights file {path} is gone"
    return None


def open_recorded(rec: Mapping | None) -> tuple[RuntimeTextEncoder | None, str]:
    """``(encoder, "")`` for a usable record, else ``(None, why not)``; never raises."""
    if os.environ.get(TEXT_RUNTIME_ENV, "").strip().lower() == "torch":
        return None, f"{TEXT_RUNTIME_ENV}=torch"
    if not rec:
        return None, "no exported text tower recorded (index the project to export one)"
    why = stale_reason(rec)
    if why:
        return None, why
    try:
        return open_encoder(rec["folder"]), ""
    except Exception as exc:  # noqa: BLE001 (a corrupt file, a missing runtime: torch answers instead)
        return None, f"cannot open the text tower in {rec.get('folder')}: {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------------
# exporting (torch is loaded here: the index run has it)


def export_folder(
    model: str, weights_hash: str, options: Mapping, build: Callable[[Path], Mapping | None]
) -> tuple[Path, bool]:
    """``(folder, built now)``: the cached export for these weights and options, built when missing."""
    key = artifact_key(f"{model}-text", weights_hash, "onnxruntime", {"opset": OPSET, **dict(options)})
    built = []

    def _build(tmp: Path):
        t0 = time.perf_counter()
        facts = dict(build(tmp) or {})
        built.append(True)
        return {**facts, "export_seconds": round(time.perf_counter() - t0, 2)}

    folder = cached(f"{model}-text", key, _build)
    return folder, bool(built)


# texts the export is checked on: short and long, accents, punctuation, past the context length
CHECK_TEXTS = (
    "a cat",
    "A photo of a golden retriever playing in the snow, next to a red sled.",
    "café crème brûlée à la française",
    "&amp; “quotes”, dashes — and 123.45",
    " ".join(["a long query that goes on"] * 20),
)
CHECK_COSINE = 0.999


def check_export(folder: Path, facts: Mapping, reference: Callable[[list[str]], np.ndarray]) -> dict:
    """Run the exported tower on :data:`CHECK_TEXTS` against ``reference`` (the torch model's own
    vectors); raises when a cosine is below :data:`CHECK_COSINE`, returns the figure for the manifest."""
    encoder = RuntimeTextEncoder(folder, threads=1, manifest=facts)
    got = encoder.embed_texts(list(CHECK_TEXTS))
    ref = np.asarray(reference(list(CHECK_TEXTS)), dtype=np.float32)
    ref = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    worst = float((got * ref).sum(axis=1).min())
    if not worst >= CHECK_COSINE:
        raise ValueError(f"the exported text tower disagrees with torch: cosine {worst:.5f} < {CHECK_COSINE}")
    return {"check_min_cosine": round(worst, 6)}


def _onnx_export(module, args: tuple, path: Path, input_names: list[str], dynamic: dict) -> None:
    import warnings

    import torch

    # the tracer's warnings (shapes read as Python values) are about code paths the check below covers
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=["embedding"],
            dynamic_axes={**dynamic, "embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


# -- int8, when it earns its place --------------------------------------------------------------


def gate_texts() -> list[str]:
    """Real query texts for the int8 gate: :data:`CHECK_TEXTS`, ImageNet classes as CLIP's prompt
    ("a photo of a tench.") and bare ("goldfish"), about two hundred in all."""
    texts = list(CHECK_TEXTS)
    try:
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    except ImportError:  # open_clip absent: the check texts alone (the gate still runs)
        return texts
    return texts + [f"a photo of a {c}." for c in IMAGENET_CLASSNAMES[::7]] + list(IMAGENET_CLASSNAMES[3::16])


def quantize_int8(src: Path, dst: Path) -> None:
    """ONNX Runtime dynamic int8 quantization (weights int8, activations quantized per run); the
    shape pre-processing skips symbolic inference, which transformer graphs do not pass."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dst.with_name(dst.stem + ".pre.onnx")
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8)
    finally:
        pre.unlink(missing_ok=True)


def choose_precision(folder: Path, facts: Mapping, texts: Sequence[str] | None = None, gate=None) -> dict:
    """fp32 or int8 for this tower, by measurement (:func:`vitrine.runtime.choose.choose`): the int8
    copy is kept only when it passes the embedding parity gate against fp32 on :func:`gate_texts`
    and answers a single query at least 1.1x faster here; otherwise fp32 stays and the copy is
    removed. The choice (each variant's speed and parity) is written to ``choice.json``; a failure
    of any kind leaves fp32."""
    from vitrine.runtime.choose import Candidate, choose, save_choice
    from vitrine.runtime.parity import embedding_parity

    texts = list(texts or gate_texts())
    fp32 = RuntimeTextEncoder(folder, manifest=facts)
    int8: dict[str, RuntimeTextEncoder] = {}

    def build() -> None:
        quantize_int8(folder / f"{MODEL_STEM}.onnx", folder / INT8_FILE)
        int8["encoder"] = RuntimeTextEncoder(folder, manifest={**facts, "model_file": INT8_FILE})

    timed = texts[:16]

    def one_by_one(encoder: Callable[[], RuntimeTextEncoder]):
        """The timed batch runs one text at a time, as queries come; the rest, for parity only, in batches."""
        return lambda batch: (
            np.concatenate([encoder().embed_texts([t]) for t in batch])
            if batch is timed
            else encoder().embed_texts(batch)
        )

    batches = [timed, texts[16:]] if len(texts) > 16 else [timed]
    try:
        choice = choose(
            Candidate(Variant("onnxruntime", "fp32"), one_by_one(lambda: fp32)),
            [Candidate(Variant("onnxruntime", "int8"), one_by_one(lambda: int8["encoder"]), build=build)],
            batches,
            lambda ref, got: embedding_parity(ref, got, gate=gate),
            repeats=5,
        )
        save_choice(folder / CHOICE_FILE, choice)
    except Exception as exc:  # noqa: BLE001 (fp32 is checked already: it stays)
        log.warning("int8 text tower not measured (%s: %s); fp32 stays", type(exc).__name__, exc)
        (folder / INT8_FILE).unlink(missing_ok=True)
        return {"precision": "fp32", "model_file": f"{MODEL_STEM}.onnx"}
    if choice.picked.precision != "int8":
        int8.clear()
        (folder / INT8_FILE).unlink(missing_ok=True)
        return {"precision": "fp32", "model_file": f"{MODEL_STEM}.onnx", "choice": choice.summary()}
    return {"precision": "int8", "model_file": INT8_FILE, "choice": choice.summary()}


# -- open_clip --------------------------------------------------------------------------------


def clip_exportable(model, tokenizer) -> str | None:
    """Why this open_clip model's text side cannot be exported (None: it can): only the built-in
    causal text tower with end-of-text pooling, and open_clip's own BPE tokenizer with its
    ``lower`` cleaning (a Hugging Face text tower, e.g. the multilingual model, stays on torch)."""
    for attr in ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask"):
        if getattr(model, attr, None) is None:
            return f"no {attr}: not open_clip's built-in causal text tower"
    import torch

    for block in getattr(model.transformer, "resblocks", None) or [None]:
        if not isinstance(getattr(block, "attn", None), torch.nn.MultiheadAttention) or hasattr(block, "ln_1_kv"):
            return "its blocks are not open_clip's ResidualAttentionBlock with nn.MultiheadAttention"
        if not getattr(block.attn, "_qkv_same_embed_dim", False) or block.attn.in_proj_weight is None:
            return "its attention has separate q, k, v projections"
    if getattr(model, "text_pool_type", "argmax") != "argmax":
        return f"text pooling {model.text_pool_type!r} (only argmax, end-of-text, is exported)"
    if not hasattr(tokenizer, "bpe_ranks") or not hasattr(tokenizer, "encoder"):
        return f"tokenizer {type(tokenizer).__name__} is not open_clip's BPE tokenizer"
    if getattr(tokenizer, "reduction_fn", None) is not None:
        return "the tokenizer reduces long texts instead of truncating them"
    from open_clip import tokenizer as oc_tokenizer

    if getattr(tokenizer, "clean_fn", None) is not oc_tokenizer._clean_lower:
        return "the tokenizer cleans text otherwise than open_clip's 'lower'"
    return None


def _attention(mha, x, mask):
    """``nn.MultiheadAttention`` (self-attention, batch first) written out with shapes read from the
    input: its own code fixes the sequence length seen at export into the graph."""
    import torch

    width = x.shape[-1]
    heads = mha.num_heads
    q, k, v = torch.nn.functional.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
    scores = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-1, -2) + mask
    out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], width)
    return mha.out_proj(out)


def _clip_tower(model):
    import torch

    class ClipTextTower(torch.nn.Module):
        """open_clip's ``encode_text`` for any sequence length up to the context length, normalised."""

        def __init__(self, clip):
            super().__init__()
            self.clip = clip

        def forward(self, input_ids):
            m = self.clip
            length = input_ids.shape[1]
            x = m.token_embedding(input_ids)
            x = x + m.positional_embedding[:length]
            mask = m.attn_mask[:length, :length].to(x.dtype)
            for block in m.transformer.resblocks:
                x = x + block.ls_1(_attention(block.attn, block.ln_1(x), mask))
                x = x + block.ls_2(block.mlp(block.ln_2(x)))
            x = m.ln_final(x)
            x = x[torch.arange(x.shape[0]), input_ids.argmax(dim=-1)]
            proj = m.text_projection
            if proj is not None:
                x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
            return torch.nn.functional.normalize(x, dim=-1)

    return ClipTextTower(model).eval()


def clip_tokenizer_json(tokenizer, path: Path) -> dict:
    """Write open_clip's BPE tokenizer as a ``tokenizers`` ``tokenizer.json`` (no padding, truncation
    set by the reader); returns the special ids."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    merges = [pair for pair, _ in sorted(tokenizer.bpe_ranks.items(), key=lambda kv: kv[1])]
    bpe = models.BPE(vocab=dict(tokenizer.encoder), merges=merges, end_of_word_suffix="</w>", fuse_unk=False)
    tok = Tokenizer(bpe)
    specials = [tokenizer.decoder[i] for i in tokenizer.all_special_ids]
    tok.add_special_tokens(specials)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    sot, eot = tokenizer.sot_token_id, tokenizer.eot_token_id
    tok.post_processor = processors.TemplateProcessing(
        single=f"{tokenizer.decoder[sot]} $A {tokenizer.decoder[eot]}",
        special_tokens=[(tokenizer.decoder[sot], sot), (tokenizer.decoder[eot], eot)],
    )
    tok.save(str(path))
    return {"sot_id": int(sot), "eot_id": int(eot)}


def export_clip_text(model, tokenizer, folder: Path, space: str = "joint") -> dict:
    """Export an open_clip model's text tower and tokenizer into ``folder``; returns manifest facts."""
    import copy

    import torch

    why = clip_exportable(model, tokenizer)
    if why:
        raise NotExportable(f"cannot export this text tower: {why}")
    context = int(getattr(tokenizer, "context_length", None) or model.positional_embedding.shape[0])
    facts = clip_tokenizer_json(tokenizer, folder / TOKENIZER_FILE)
    param = next(model.parameters())
    on_cpu = param.device.type == "cpu" and param.dtype == torch.float32
    cpu_model = model if on_cpu else copy.deepcopy(model).cpu().float()  # the embedder keeps its own
    tower = _clip_tower(cpu_model)
    example = tokenizer(["a photo of a cat", "a dog"]).to("cpu")
    example = example[:, : int(example.argmax(dim=-1).max()) + 1]
    _onnx_export(tower, (example,), folder / f"{MODEL_STEM}.onnx", ["input_ids"], {"input_ids": {0: "batch", 1: "seq"}})
    with torch.no_grad():
        dim = int(tower(example).shape[-1])
    facts = {"kind": "clip", "space": space, "dim": dim, "max_length": context, "pad_id": 0, **facts}

    def reference(texts: list[str]) -> np.ndarray:  # open_clip's tokenizer and encode_text, full length
        with torch.no_grad():
            return model.encode_text(tokenizer(texts).to(model.positional_embedding.device)).float().cpu().numpy()

    facts = {**facts, **check_export(folder, facts, reference)}
    return {**facts, **choose_precision(folder, facts)}


def clip_state_hash(model) -> str:
    """The identity of an open_clip model's text weights when they are not a file (random, in memory)."""
    from vitrine.runtime.cache import state_hash

    text_parts = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
    state = {k: v for k, v in model.state_dict().items() if k.split(".", 1)[0] in text_parts}
    return state_hash(state)


# -- sentence-transformers mean pooling -------------------------------------------------------


def _mean_pool_tower(hf_model):
    import torch

    class MeanPoolTower(torch.nn.Module):
        """BERT, mean of the token vectors under the mask, L2-normalised (sentence-transformers' pipeline)."""

        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            out = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
            )
            tokens = out[0]
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    return MeanPoolTower(hf_model).eval()


def mean_pool_config(model_dir: Path) -> tuple[int, str]:
    """``(max sequence length, pooling)`` of a sentence-transformers folder; raises when it is not
    the Transformer -> mean Pooling -> Normalize pipeline exported here."""
    modules = json.loads((model_dir / "modules.json").read_text())
    types = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if types[:2] != ["Transformer", "Pooling"] or (types[2:] and types[2:] != ["Normalize"]):
        raise ValueError(f"{model_dir}: modules {types} are not Transformer, Pooling, Normalize")
    pooling_dir = model_dir / modules[1].get("path", "1_Pooling")
    pooling = json.loads((pooling_dir / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens") or any(
        v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"
    ):
        raise ValueError(f"{model_dir}: pooling {pooling} is not the mean of the tokens")
    cfg_file = model_dir / "sentence_bert_config.json"
    max_length = int(json.loads(cfg_file.read_text()).get("max_seq_length") or 0) if cfg_file.is_file() else 0
    return max_length or 512, "mean"


def export_mean_pool(
    model_dir: Path, folder: Path, space: str, reference: Callable[[list[str]], np.ndarray] | None = None
) -> dict:
    """Export a sentence-transformers mean-pooling encoder (``model_dir``: its folder) into ``folder``,
    checked against ``reference`` (the loaded sentence-transformers model; default: the exported
    torch graph on the same token ids)."""
    import shutil

    import torch
    from transformers import AutoModel

    max_length, _ = mean_pool_config(model_dir)
    if not (model_dir / TOKENIZER_FILE).is_file():
        raise ValueError(f"{model_dir} has no {TOKENIZER_FILE}")
    shutil.copyfile(model_dir / TOKENIZER_FILE, folder / TOKENIZER_FILE)
    hf = AutoModel.from_pretrained(str(model_dir)).to("cpu").float().eval()
    max_length = min(max_length, int(getattr(hf.config, "max_position_embeddings", max_length)))
    tower = _mean_pool_tower(hf)
    ids = torch.tensor([[101, 1037, 6302, 1997, 1037, 4937, 102], [101, 1037, 3899, 102, 0, 0, 0]])
    mask = (ids != 0).long()
    dynamic = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    _onnx_export(tower, (ids, mask), folder / f"{MODEL_STEM}.onnx", ["input_ids", "attention_mask"], dynamic)
    from tokenizers import Tokenizer

    pad = Tokenizer.from_file(str(folder / TOKENIZER_FILE)).token_to_id("[PAD]")
    with torch.no_grad():
        dim = int(tower(ids, mask).shape[-1])
    facts = {"kind": "mean_pool", "space": space, "dim": dim, "max_length": max_length, "pad_id": int(pad or 0)}
    tok = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    tok.enable_truncation(max_length)
    tok.enable_padding(pad_id=facts["pad_id"])

    def graph(texts: list[str]) -> np.ndarray:  # the torch graph on the same ids
        enc = tok.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc])
        with torch.no_grad():
            return tower(ids, torch.tensor([e.attention_mask for e in enc])).numpy()

    facts = {**facts, **check_export(folder, facts, reference or graph)}
    return {**facts, **choose_precision(folder, facts)}


# -- what the index run calls ----------------------------------------------------------------


def export_for(embedder) -> tuple[dict | None, str]:
    """Export ``embedder``'s text tower if it offers one (``export_text_runtime()``, cached per
    weights) and return ``(record for the project, "")``, or ``(None, why not)``: a model without
    the hook, or an export that failed (logged; text queries then load the torch model)."""
    hook = getattr(embedder, "export_text_runtime", None)
    if hook is None or getattr(getattr(embedder, "spaces", None), "text_space", None) is None:
        return None, f"{getattr(embedder, 'name', 'this model')} has no exportable text tower"
    try:
        return hook(), ""
    except NotExportable as exc:  # expected (e.g. a Hugging Face text tower): torch answers its queries
        log.info("%s: %s", getattr(embedder, "name", "model"), exc)
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 (text queries fall back to torch; the index run goes on)
        why = f"text tower not exported ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        log.warning("%s: %s; text queries will load the torch model", getattr(embedder, "name", "model"), why)
        return None, why
