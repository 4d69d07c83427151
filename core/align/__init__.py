"""Word and character timestamps for speech we produced: the spoken words and the 16 kHz audio in, spans out.

Two methods: `estimate` (no model: pauses in our audio + expected word durations, `core.align.estimate`) and `ctc`
(forced alignment with a wav2vec2-CTC checkpoint, `core.align.ctc`). Callers hand plain words; mapping them back to
the text a user wrote (through normalisation) is `processing.spoken_map`'s job, joined in `services`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from core.align.estimate import SAMPLE_RATE, estimate_alignment
from core.align.types import Alignment, CharSpan, WordSpan, character_spans
from core.align.units import expected_units, split_words

if TYPE_CHECKING:
    from core.align.ctc import CtcAligner

__all__ = [
    "Alignment",
    "AlignMethod",
    "CharSpan",
    "SAMPLE_RATE",
    "WordSpan",
    "align",
    "character_spans",
    "expected_units",
    "split_words",
]

AlignMethod = Literal["estimate", "ctc"]
METHODS: tuple[str, ...] = ("estimate", "ctc")


def align(
    audio: np.ndarray,
    words: Sequence[str],
    *,
    method: AlignMethod = "estimate",
    ctc: CtcAligner | None = None,
) -> Alignment:
    """Spans of `words` (in order, as spoken) in `audio` (16 kHz mono float). No words: an empty alignment.
    Thread-safe: no state is kept between calls (the CTC model is only read)."""
    samples = np.nan_to_num(np.asarray(audio, dtype=np.float32).reshape(-1), nan=0.0, posinf=1.0, neginf=-1.0)
    words = [w for w in words if w.strip()]
    duration = len(samples) / SAMPLE_RATE
    if not words:
        return Alignment((), method, duration)
    if method == "estimate":
        return estimate_alignment(samples, words)
    if method == "ctc":
        if ctc is None:
            raise ValueError("the ctc method needs a model (CtcAligner)")
        return ctc.align_batch([(samples, list(words))])[0]
    raise ValueError(f"unknown alignment method {method!r}; use one of {', '.join(METHODS)}")
