"""Small codec models for tests: the steering fixtures' tiny BiCodec (../shared/fixtures/bicodec_tiny; a test that
asks for it is skipped where the fixtures are absent), and random ones built here (the demo-size BiCodec decoder, a
small AP-BWE), and a tiny random Qwen2 for the LLM engine."""

from __future__ import annotations

import pytest
import torch

from core.apbwe import RELEASED_CONFIG, APBWEConfig, SuperResolution, random_generator
from core.bicodec import BiCodecDecoder
from core.demo.random_bicodec import DEMO_CONFIG, build_random_state_dict
from tests.conftest import FIXTURES

TINY_BICODEC = FIXTURES / "bicodec_tiny"


def tiny_bicodec() -> BiCodecDecoder:
    if not (TINY_BICODEC / "model.safetensors").is_file():
        pytest.skip(f"BiCodec fixture not found at {TINY_BICODEC} (steering fixtures absent)")
    return BiCodecDecoder.from_pretrained(TINY_BICODEC)


def demo_decoder(seed: int = 3) -> BiCodecDecoder:
    """The demo checkpoint's BiCodec decoder shape with random weights."""
    model = BiCodecDecoder(DEMO_CONFIG)
    state = build_random_state_dict(DEMO_CONFIG, seed=seed)
    model.load_decode_state_dict({name: state[name] for name in model.state_dict()})
    return model


def small_sr(seed: int = 1) -> SuperResolution:
    """AP-BWE at the released layout, narrowed (16 channels, 2 ConvNeXt layers), random weights."""
    cfg = APBWEConfig.from_dict({**RELEASED_CONFIG, "ConvNeXt_channels": 16, "ConvNeXt_layers": 2})
    return SuperResolution(random_generator(cfg, seed=seed), cfg)


def tiny_qwen2(vocab_size: int = 1000, seed: int = 0) -> torch.nn.Module:
    """A random Qwen2 causal LM, two layers of hidden 64 (head_dim 64), tied embeddings, float32, eval mode."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config).eval()
