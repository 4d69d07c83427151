"""Typed values between a stream and the codec scheduler: one window of work, one row of a batched call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

# An AP-BWE row is the window `SRPlanner` plans: one type from the planner to the device, no copy between them.
from core.sr_planner import SRWindow

__all__ = ["DecodeWindow", "SRWindow", "WindowKind"]

WindowKind = Literal["decode", "sr"]


@dataclass(frozen=True, eq=False)
class DecodeWindow:
    """One BiCodec row: semantic ids with their left context and look-ahead, the voice, and which tokens to keep.

    `ids` were range-checked where they entered (`core.streaming.DecodePlanner.push`), never again on the device.
    The result is the audio of tokens [keep_start, keep_end) of the window: (keep_end - keep_start) * hop samples,
    float32 at 16 kHz."""

    ids: np.ndarray  # int32 [T], T >= 1
    d_vector: Any  # the voice's d-vector: a torch tensor [D] (or [1, D]) on the codec's device; cached per voice
    keep_start: int  # tokens, within the window
    keep_end: int

    def __post_init__(self) -> None:
        if self.ids.ndim != 1 or self.ids.size == 0:
            raise ValueError(f"a decode window needs a non-empty 1-D id array, got shape {self.ids.shape}")
        if not 0 <= self.keep_start <= self.keep_end <= self.ids.size:
            raise ValueError(f"keep [{self.keep_start}, {self.keep_end}) outside a window of {self.ids.size} ids")

    @property
    def length(self) -> int:
        return int(self.ids.size)

    def wave_span(self, reach: int | None, margin: int) -> tuple[int, int]:
        """[start, end) of the window's tokens the wave generator must run on (`BiCodecDecoder.decode_rows`): the kept
        tokens and `reach` more on each side, or up to the window's edge (where the whole window's decode sees its
        edge too), widened as needed so that at most `margin` tokens of the window lie beyond it on each side (a call
        places every row's span at column `margin`). None: the whole window (no trim)."""
        if reach is None:
            return 0, self.length
        start = min(max(0, self.keep_start - reach), margin)
        end = max(min(self.length, self.keep_end + reach), self.length - margin)
        return start, end
