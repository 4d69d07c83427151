"""The reference encoder: 16 kHz audio -> 32 global tokens (+ the reference's semantic tokens). WORK IN PROGRESS:
the interface is final, the model code lands next."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class CloningUnavailable(RuntimeError):
    """The model directory lacks what encoding needs (wav2vec2, or BiCodec's encoder tensors)."""


@dataclass(frozen=True)
class ReferenceTokens:
    """What a reference encodes to: the voice (32 global ids, 0..4095) and, when asked, the reference speech itself
    as semantic ids (0..8191, 50 per second) for a continuation prompt with its transcript."""

    global_tokens: tuple[int, ...]
    semantic_tokens: tuple[int, ...] | None = None


def cloning_unavailable_reason(model_dir: str | os.PathLike[str]) -> str | None:
    """None when `model_dir` can encode references; otherwise what is missing, naming the file."""
    root = Path(model_dir)
    if not (root / "wav2vec2-large-xlsr-53" / "config.json").is_file():
        return f"{root / 'wav2vec2-large-xlsr-53'}: missing; voice cloning needs the wav2vec2 encoder"
    return None


class ReferenceEncoder:
    """Loaded once per process (lazily: wav2vec2 is 1.2 GB and only cloning needs it)."""

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike[str], device: str = "cpu") -> ReferenceEncoder:
        raise CloningUnavailable("the reference encoder is not implemented yet")

    def encode(self, samples: np.ndarray, *, semantic: bool = True) -> ReferenceTokens:
        """`samples`: 16 kHz mono (as `decode_reference_audio` returns, before volume normalisation)."""
        raise NotImplementedError
