"""A tiny random Wav2Vec2ForCTC in the Hugging Face directory layout (config, weights, vocab.json), for the ctc
aligner's tests: the whole path runs, the spans are meaningless."""

from __future__ import annotations

import json
from pathlib import Path

VOCAB = {"<pad>": 0, "|": 1, "a": 2, "b": 3, "c": 4, "d": 5, "e": 6, "l": 7, "o": 8, "h": 9}


def build_tiny_ctc_model(directory: Path) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32, 32),
        conv_stride=(5, 4, 16),
        conv_kernel=(10, 4, 16),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
    )
    directory.mkdir(parents=True, exist_ok=True)
    Wav2Vec2ForCTC(config).eval().save_pretrained(directory)
    (directory / "vocab.json").write_text(json.dumps(VOCAB), encoding="utf-8")
    return directory
