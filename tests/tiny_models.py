"""The steering fixtures' tiny BiCodec (../shared/fixtures/bicodec_tiny) for codec tests; a test that asks for it
is skipped where the fixtures are absent."""

from __future__ import annotations

import pytest

from core.bicodec import BiCodecDecoder
from tests.conftest import FIXTURES

TINY_BICODEC = FIXTURES / "bicodec_tiny"


def tiny_bicodec() -> BiCodecDecoder:
    if not (TINY_BICODEC / "model.safetensors").is_file():
        pytest.skip(f"BiCodec fixture not found at {TINY_BICODEC} (steering fixtures absent)")
    return BiCodecDecoder.from_pretrained(TINY_BICODEC)
