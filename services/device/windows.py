"""Typed values between a stream and the codec scheduler: one window of work (one row of a batched call), what the
scheduler reads of the stream's playback (`StreamDeadline`), and why a window waits (`WaitReason`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

import numpy as np

# An AP-BWE row is the window `SRPlanner` plans: one type from the planner to the device, no copy between them.
from core.sr_planner import SRWindow

__all__ = [
    "WAIT_REASONS",
    "WINDOW_KINDS",
    "DecodeWindow",
    "FixedDeadline",
    "SRWindow",
    "StreamDeadline",
    "WaitReason",
    "WindowKind",
]

WindowKind = Literal["decode", "sr"]
WINDOW_KINDS: tuple[WindowKind, ...] = get_args(WindowKind)

# Why a window (or a model call) waits, recorded when the scheduler decides:
# - queued: no plan has looked at it yet, and a device slot is free (the planner runs on the loop's next turn);
# - device_busy: it came while every device slot (`max_inflight`) held a call, so no plan has looked at it yet;
# - deadline_order: more urgent work went first: the last plan's scan stopped (`scan_limit`) before reaching it, or
#   a model call (or, for a model call, a window) due sooner took the device;
# - other_kind: the call's kind (decode or SR, the most urgent window's) is not its kind;
# - length_mismatch: its length cannot share the call's: an exact-length call (the eager fallback, an SR true end)
#   and a row of another length, a true end that would be padded, an exact-length row and a bucketed call;
# - padding_bound: joining would push the call's padding past `max_pad_waste`;
# - work_bound: joining would pass the call's work bound (`max_call_*`) or its most rows, or the call filled up
#   before the plan reached it;
# - lighter_key_busy: on a CPU, another key that used less is busy (services/device/key_share.py `CpuTurns`);
# - held: no live window is due within `SchedulerPolicy.hold_slack_s`, so none runs yet (bigger calls later).
WaitReason = Literal[
    "queued",
    "device_busy",
    "deadline_order",
    "other_kind",
    "length_mismatch",
    "padding_bound",
    "work_bound",
    "lighter_key_busy",
    "held",
]
WAIT_REASONS: tuple[WaitReason, ...] = get_args(WaitReason)


class StreamDeadline(Protocol):
    """What the scheduler reads of a stream's playback (delivery owns it: `playback.PlaybackClock`)."""

    def deadline(self) -> float:
        """When the stream's listener runs dry at real-time playback (before its first audio: its arrival)."""
        ...

    @property
    def started(self) -> bool:
        """Its first audio has left (a window submitted before that is part of what the first audio waits)."""
        ...

    @property
    def heard(self) -> bool:
        """A listener plays it as it comes and has started: a window finished after its deadline is an underrun."""
        ...


class FixedDeadline:
    """A stream nobody plays as it comes: every window is due at `at` (a benchmark's or a tool's stream)."""

    started = False
    heard = False

    def __init__(self, at: float) -> None:
        self.at = at

    def deadline(self) -> float:
        return self.at


@dataclass(frozen=True, eq=False)
class DecodeWindow:
    """One BiCodec row: semantic ids with their left context and look-ahead, the voice, and which tokens to keep.

    `ids` were range-checked where they entered (`core.streaming.DecodePlanner.push`), never again on the device.
    The result is the audio of tokens [keep_start, keep_end) of the window: (keep_end - keep_start) * hop samples,
    float32 at 16 kHz."""

    ids: np.ndarray  # int32 [T], T >= 1
    d_vector: (
        Any  # the voice's d-vector: a torch tensor [D] (or [1, D]) on the codec's device; cached per voice
    )
    keep_start: int  # tokens, within the window
    keep_end: int

    def __post_init__(self) -> None:
        if self.ids.ndim != 1 or self.ids.size == 0:
            raise ValueError(f"a decode window needs a non-empty 1-D id array, got shape {self.ids.shape}")
        if not 0 <= self.keep_start <= self.keep_end <= self.ids.size:
            raise ValueError(
                f"keep [{self.keep_start}, {self.keep_end}) outside a window of {self.ids.size} ids"
            )

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
