"""Text towers on ONNX Runtime (vitrine.models.embedders.text_runtime): open_clip's tokenizer written
as a ``tokenizers`` file gives open_clip's ids; the exported towers (a tiny random CLIP, the real
MiniLM of offline-concepts) give the torch model's vectors; a record goes stale when the weights
file changes, and a new export follows new weights."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_clip import build_tiny_clip, make_tiny_clip_embedder, save_tiny_clip_weights  # noqa: E402

from vitrine.models.embedders import text_runtime  # noqa: E402

# accents, punctuation, HTML entities, curly quotes, ligatures, full-width letters, other scripts,
# emoji, digits, contractions, a literal special token, whitespace, and texts past 77 tokens
TEXTS = [
    "a cat",
    "A photo of a golden retriever playing in the snow, next to a red sled.",
    "café crème brûlée à la française",
    "¿Dónde está la estación? Très bien!",
    "&amp; ampersands &lt;b&gt;bold&lt;/b&gt;",
    "“curly quotes” — dashes… and ‘single’ ones",
    "ﬁne ligature and ＦＵＬＬＷＩＤＴＨ letters",
    "日本語のテキスト 中文 русский текст",
    "emoji 🐱🐶 cat dog",
    "don't won't it's we'll they've I'm she'd",
    "123 456.78 3.14159 2026-12-06",
    "<start_of_text> a literal special token <end_of_text>",
    "  lots   of\tspace\n and new lines  ",
    "x" * 400,
    " ".join(["word"] * 300),
    "Ünïcödé ÀÉÎÕÜ çedilla ßharp",
]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VITRINE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_clip_tokenizer_gives_open_clip_ids(tmp_path):
    import open_clip

    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    facts = text_runtime.clip_tokenizer_json(tokenizer, tmp_path / text_runtime.TOKENIZER_FILE)
    assert (facts["sot_id"], facts["eot_id"]) == (49406, 49407)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tmp_path / text_runtime.TOKENIZER_FILE))
    tok.enable_truncation(77)
    ours = [e.ids for e in tok.encode_batch([text_runtime.clean_clip_text(t) for t in TEXTS])]
    for text, ref, got in zip(TEXTS, tokenizer(TEXTS).tolist(), ours, strict=True):
        ref = ref[: max(i for i, x in enumerate(ref) if x) + 1]  # open_clip pads with 0 to 77
        assert got == ref, text
    assert len(ours[TEXTS.index("x" * 400)]) <= 77 and ours[-2][-1] == 49407  # truncated, ends with end-of-text


def test_clip_text_tower_export_matches_open_clip(cache):
    emb = make_tiny_clip_embedder(seed=1)
    rec = emb.export_text_runtime()
    enc, why = text_runtime.open_recorded(rec)
    assert enc is not None, why
    assert (enc.kind, enc.space, enc.dim) == ("clip", "joint", emb.dim)
    assert enc.manifest["check_min_cosine"] >= text_runtime.CHECK_COSINE
    got, ref = enc.embed_texts(TEXTS), emb.embed_texts(TEXTS)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert (got * ref).sum(axis=1).min() > 0.9999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # a short query runs only its own tokens (the tower is causal): same vector alone and in a batch
    assert len(enc.token_ids(["a cat"])[0]) == 4
    np.testing.assert_allclose(enc.embed_texts(["a cat"])[0], got[0], atol=1e-5)
    # the same weights: the same folder, not a second export
    assert make_tiny_clip_embedder(seed=1).export_text_runtime()["folder"] == rec["folder"]
    assert make_tiny_clip_embedder(seed=2).export_text_runtime()["folder"] != rec["folder"]


def test_record_goes_stale_when_the_weights_file_changes_and_a_new_export_follows(cache, tmp_path):
    from vitrine.models.embedders.clip import OpenClipEmbedder

    path = save_tiny_clip_weights(tmp_path / "w" / "tiny.safetensors", seed=3)

    def embedder(seed):
        model, preprocess, tokenizer = build_tiny_clip(seed)
        info = {"weights": str(path), "arch": "tiny"}
        return OpenClipEmbedder.from_open_clip("clip-tiny-file", model, preprocess, tokenizer, "cpu", info=info)

    first = embedder(3).export_text_runtime()
    assert text_runtime.stale_reason(first) is None
    save_tiny_clip_weights(path, seed=4)  # other weights in the same file
    assert "changed" in text_runtime.stale_reason(first)
    enc, why = text_runtime.open_recorded(first)
    assert enc is None and "changed" in why
    second = embedder(4).export_text_runtime()
    assert second["folder"] != first["folder"] and text_runtime.stale_reason(second) is None
    path.unlink()
    assert "gone" in text_runtime.stale_reason(second)


def test_unusable_records_say_why(cache, tmp_path, monkeypatch):
    rec = make_tiny_clip_embedder(seed=5).export_text_runtime()
    assert text_runtime.open_recorded(None)[0] is None
    monkeypatch.setenv(text_runtime.TEXT_RUNTIME_ENV, "torch")
    assert text_runtime.open_recorded(rec) == (None, "VITRINE_TEXT_RUNTIME=torch")
    monkeypatch.delenv(text_runtime.TEXT_RUNTIME_ENV)
    assert "another export" in text_runtime.stale_reason({**rec, "key": "other"})
    assert "no exported text tower" in text_runtime.stale_reason({**rec, "folder": str(tmp_path / "nowhere")})
    # a corrupt model file: no encoder, a reason, no exception
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in Path(rec["folder"]).iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "text.onnx").write_bytes(b"not an onnx file")
    enc, why = text_runtime.open_recorded({**rec, "folder": str(broken)})
    assert enc is None and "cannot open" in why


def test_a_text_tower_that_cannot_be_exported_is_reported_not_raised(cache):
    class NoTower:
        name = "no-tower"
        spaces = type("S", (), {"text_space": "joint"})()

        def export_text_runtime(self):
            raise ValueError("cannot export this text tower: a reason")

    rec, why = text_runtime.export_for(NoTower())
    assert rec is None and "a reason" in why
    assert text_runtime.export_for(object())[0] is None


@pytest.mark.slow
def test_minilm_export_matches_sentence_transformers(cache, tmp_path):
    """The real MiniLM of offline-concepts: same ids as sentence-transformers' tokenizer, and the parity
    gate on a few hundred real query texts (ImageNet label texts, the demo's ontology)."""
    from sentence_transformers import SentenceTransformer

    from vitrine.demo import ONTOLOGY
    from vitrine.models.classifiers.efficientnet_lite import imagenet_label_texts
    from vitrine.models.embedders.offline_concepts import LABEL_TEMPLATE, text_encoder_dir
    from vitrine.runtime.parity import embedding_parity

    st = SentenceTransformer(str(text_encoder_dir()), device="cpu")

    def reference(texts):
        return st.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)

    folder, built = text_runtime.export_folder(
        "minilm-test",
        "h",
        {},
        lambda tmp: text_runtime.export_mean_pool(text_encoder_dir(), tmp, "concepts", reference=reference),
    )
    assert built
    enc = text_runtime.RuntimeTextEncoder(folder)
    assert (enc.kind, enc.dim, enc.max_length) == ("mean_pool", 384, 256)
    ids = st.tokenizer(TEXTS, truncation=True, max_length=256)["input_ids"]
    assert enc.token_ids(TEXTS) == ids
    labels = imagenet_label_texts()[::4]
    queries = TEXTS + [LABEL_TEMPLATE.format(t) for t in labels] + [k for k in ONTOLOGY] + list(ONTOLOGY.values())
    got, ref = enc.embed_texts(queries), reference(queries)
    parity = embedding_parity(ref, got)
    assert parity.passed, parity.reason
    assert (_unit(got) * _unit(ref)).sum(axis=1).min() > 0.999
    assert json.loads((folder / "artifact.json").read_text())["check_min_cosine"] > 0.999


def test_a_hugging_face_text_tower_stays_on_torch(cache, tmp_path):
    """The multilingual CLIP's XLM-RoBERTa text tower is not exported: the index run notes why."""
    from tiny_clip import build_tiny_multilingual, write_tiny_xlmr

    from vitrine.models.embedders.clip import OpenClipEmbedder

    model, preprocess, tokenizer = build_tiny_multilingual(write_tiny_xlmr(tmp_path / "xlmr"))
    emb = OpenClipEmbedder.from_open_clip("clip-tiny-ml", model, preprocess, tokenizer, "cpu")
    rec, why = text_runtime.export_for(emb)
    assert rec is None and "not open_clip's built-in causal text tower" in why
    assert not (cache / "runtime").exists() or not any((cache / "runtime").iterdir())


def test_int8_is_measured_and_kept_only_when_it_passes_the_gate(cache, tmp_path):
    import shutil

    from vitrine.runtime.cache import read_manifest

    rec = make_tiny_clip_embedder(seed=6).export_text_runtime()
    folder = Path(rec["folder"])
    facts = read_manifest(folder)
    trials = {t["precision"]: t for t in json.loads((folder / text_runtime.CHOICE_FILE).read_text())["trials"]}
    assert set(trials) == {"fp32", "int8"} and trials["int8"]["parity"]["samples"] >= 100
    assert facts["precision"] in ("fp32", "int8")
    assert (folder / text_runtime.INT8_FILE).exists() == (facts["precision"] == "int8")
    assert text_runtime.RuntimeTextEncoder(folder).precision == facts["precision"]

    # a gate int8 cannot pass: fp32 stays, the int8 copy is gone, the refusal is on record
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    out = text_runtime.choose_precision(copy, facts, gate={"mean_cosine": 1.5})
    assert out["precision"] == "fp32" and not (copy / text_runtime.INT8_FILE).exists()
    refused = {t["precision"]: t for t in json.loads((copy / text_runtime.CHOICE_FILE).read_text())["trials"]}
    assert refused["int8"]["parity"]["passed"] is False

    # an int8 copy runs, close to fp32
    text_runtime.quantize_int8(copy / "text.onnx", copy / text_runtime.INT8_FILE)
    int8 = text_runtime.RuntimeTextEncoder(copy, manifest={**facts, "model_file": text_runtime.INT8_FILE})
    fp32 = text_runtime.RuntimeTextEncoder(copy, manifest={**facts, "model_file": "text.onnx"})
    cos = (int8.embed_texts(TEXTS) * fp32.embed_texts(TEXTS)).sum(axis=1)
    assert cos.min() > 0.9
