"""A tiny transformers CLIP checkpoint folder (config and a word-level tokenizer, no weights) for
``hf:<folder>?weights=random``: built from a small config, nothing downloaded.

Import it after putting this folder on ``sys.path`` (see ``tiny_clip.py``)."""

from __future__ import annotations

from pathlib import Path

WORDS = "a photo of red green blue square cat dog"


def tiny_hf_clip(folder: Path, tokenizer: bool = True) -> Path:
    """Write a tiny CLIPConfig (16-d projections, 32 px images) and, with ``tokenizer``, a
    word-level fast tokenizer into ``folder``; return it."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, PreTrainedTokenizerFast

    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={
            **small,
            "vocab_size": 64,
            "max_position_embeddings": 16,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 0,
        },
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    if tokenizer:
        vocab = {"[PAD]": 0, "[BOS]": 1, "[EOS]": 2, "[UNK]": 3}
        for word in WORDS.split():
            vocab[word] = len(vocab)
        tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        PreTrainedTokenizerFast(
            tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]"
        ).save_pretrained(folder)
    return folder


def tiny_hf_dinov2(folder: Path) -> Path:
    """A tiny DINOv2 config (image-only, 32-d pooled output)."""
    from transformers import Dinov2Config

    folder.mkdir(parents=True, exist_ok=True)
    Dinov2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    ).save_pretrained(folder)
    return folder
