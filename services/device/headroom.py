"""How much audio the codec's listeners keep if it drains its queue now: the least seconds any listener would still
hold when its window ends, with the pending windows run in deadline order at the codec's measured seconds per work
unit of its rows (the padding its calls carried counted in the seconds: a queued window's own units pay for it too),
and every settled listener's audio in hand counted as it is.

Admission reads it where its codec rule reads a burst as overload (admission.py, rule 3, `queue_headroom_s`). On a
device the engine's process shares by time slices, each codec call is stretched while the engine runs every request
ahead of real time, so the codec's seconds per stream read during a burst are dearer than the same streams cost once
the engine has run ahead; rule 3 multiplies that dear figure by every stream open and refuses bursts the device
carries. The queue says what the codec owes now: while every listener would keep `queue_headroom_s` after the whole
queue ran, the codec is keeping up. Newcomers' windows count too: a stream's second window is due 80 ms after its
first audio, so while newcomers arrive faster than the codec serves them the headroom is small and rule 3 stands.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Protocol

from services.device.accounting import due
from services.device.queueing import PendingWindow, StreamHandle
from services.device.windows import WindowKind


def drain_headroom(
    pending: Iterable[PendingWindow],
    streams: Iterable[StreamHandle],
    now: float,
    seconds_per_work: Mapping[WindowKind, float | None],
) -> float:
    """Seconds the most pressed listener keeps: for each heard window in `pending` (deadline order), its listener's
    deadline less when the queue up to it would end at `seconds_per_work` of its kind, and for each settled listener
    its deadline less `now`. -inf before the codec has measured any call (nothing to drain at); inf with nobody heard.
    A window whose stream nobody hears yet costs its place in the queue and is judged by no deadline."""
    measured = [rate for rate in seconds_per_work.values() if rate is not None]
    if not measured:
        return -math.inf
    fallback = max(measured)  # a kind not measured yet costs what the dearer one does
    ends = now
    least = math.inf
    for window in pending:
        if window.future.done():
            continue
        rate = seconds_per_work.get(window.kind)
        ends += window.units * (fallback if rate is None else rate)
        deadline = due(window)
        if deadline is not None:
            least = min(least, deadline - ends)
    for stream in streams:
        if stream.playback.heard and stream.settled and not stream.closed:
            least = min(least, stream.playback.deadline() - now)
    return least


class DrainsQueue(Protocol):
    def drain_headroom(self) -> float: ...


def queue_keeps_up(scheduler: DrainsQueue, limit_s: float | None, sr_live: bool) -> bool:
    """Admission's rule 3 passes (`queue_headroom_s`): set, no AP-BWE row ran lately (a 48 kHz window waits for the
    next decoded audio as right context, so the queue does not show the work that is coming), and the codec's queue
    drains leaving every listener `limit_s`."""
    return limit_s is not None and not sr_live and scheduler.drain_headroom() >= limit_s
