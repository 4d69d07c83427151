"""A tiny random-weight `wav2vec2-large-xlsr-53/` for the demo checkpoint: the released config's structure
(stable layer norm, layer-norm feature extractor, conv kernels and strides of total stride 320, 24 layers) at small
widths, and the released `preprocessor_config.json`, so the demo encodes reference audio through the same HF code
path as the real model. The features are noise, like the rest of the demo."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Byte for byte what the released file holds (fixtures/bicodec_encode_tiny says so of its copy).
PREPROCESSOR_CONFIG = {
    "do_normalize": True,
    "feature_extractor_type": "Wav2Vec2FeatureExtractor",
    "feature_size": 1,
    "padding_side": "right",
    "padding_value": 0,
    "return_attention_mask": True,
    "sampling_rate": 16000,
}


def write_random_wav2vec2(out_dir: Path, hidden_size: int, seed: int) -> None:
    """`config.json`, `model.safetensors` and `preprocessor_config.json` of a random Wav2Vec2Model."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model
    from transformers.utils import logging as hf_logging

    config = Wav2Vec2Config(
        hidden_size=hidden_size,
        num_hidden_layers=24,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        conv_dim=(16,) * 7,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        layer_norm_eps=1e-5,
        architectures=["Wav2Vec2ForPreTraining"],
    )
    torch.manual_seed(seed)
    model = Wav2Vec2Model(config).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(str(out_dir), safe_serialization=True)
    finally:
        hf_logging.enable_progress_bar()
    (out_dir / "model.safetensors").chmod(0o644)  # safetensors creates it owner-only
    (out_dir / "preprocessor_config.json").write_text(
        json.dumps(PREPROCESSOR_CONFIG, indent=2) + "\n", encoding="utf-8"
    )
