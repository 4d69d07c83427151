"""The scheduler's device-time accounting: each call's seconds and rows into `SchedulerStats` and Prometheus
(telemetry.py), and the figures admission reads over the last `window_s` (busy ratio, deadline misses less the
event loop's stalls). Background calls go to an account of their own that none of admission's figures reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from services.device.background import BackgroundGate
from services.device.calls import Call
from services.device.loop_lag import LoopLag
from services.device.queueing import PendingModelCall, PendingWindow
from services.device.telemetry import SchedulerStats, record_call, record_device_seconds, record_model_call
from services.device.windows import WINDOW_KINDS, DecodeWindow, WindowKind

# How close to running dry a settled stream's window may end and still be recorded, as a near miss (the most a
# negative miss grace may read).
NEAR_MISS_S = 0.5


def due(window: PendingWindow) -> float | None:
    """When the window's listener runs dry on the audio it already has (None: nobody hears the stream yet).

    Read when the call ends, not the deadline the window was queued by: a window queued before its stream's first
    audio is queued by the stream's arrival (the most urgent), but its listener needs it only once the audio before
    it has played. Judged by the queueing deadline, a newcomer's second window counted its first audio's latency as
    a miss, and the miss rule refused arrivals for seconds with no listener short of audio. A window queued after the
    first audio keeps the deadline it was queued by: when its listener would run dry on the audio it had then (the
    stricter reading where earlier windows of its stream were still on the device, and the one admission's caps were
    calibrated on)."""
    playback = window.stream.playback
    if not playback.heard:
        return None
    return playback.deadline() if window.first else window.deadline


class DeviceTimeAccount:
    """The scheduler's calls' device time: totals in `stats`, and the recent calls and misses within `window_s`."""

    def __init__(self, window_s: float) -> None:
        self.stats = SchedulerStats()
        self.window_s = window_s
        self.recent_calls: deque[tuple[float, float]] = (
            deque()
        )  # (end time, device seconds) within the window
        # (end time, worst lateness in seconds, less the loop's stalls) of calls that missed a row's deadline by more
        # than the event loop's stalls account for, within the window
        self.recent_missed: deque[tuple[float, float]] = deque()
        # (end time, kind, device seconds, work units without padding) of live codec calls within the window
        self.recent_work: deque[tuple[float, WindowKind, float, int]] = deque()

    def live_call(
        self,
        call: Call,
        chosen: Sequence[PendingWindow],
        started: float,
        ended: float,
        device_seconds: float | None,
        loop_lag: LoopLag | None,
        *,
        lone: bool = False,
    ) -> int:
        """A live codec call: the stats, Prometheus, and the busy ratio and misses admission reads. Returns how
        many of its streams settled with it (`StreamHandle.settled`). `lone`: one live stream was open, so a near
        miss is not recorded (`near_misses_lone` counts it): near misses foretell overload only where streams share
        the device; a lone stream's come from a busy host, and read as misses they refused its own next sentence."""
        s = self.stats
        # Start to end with the engine's kernels in between (the device serialises them; the stand-in's timeline
        # too), as admission's caps were calibrated: measured by the runner where the call runs; dispatch to resume
        # when the call failed. Deadlines are judged at `ended`, when the audio reached the stream.
        seconds = max(0.0, device_seconds if device_seconds is not None else ended - started)
        s.calls += 1
        s.rows += len(call.windows)
        s.padded_rows += call.rows_padded - len(call.windows)
        s.work += call.work
        s.valid_work += call.valid_work
        s.busy_seconds += seconds
        s.eager_calls += call.length is None
        settled_before = [p.stream.settled for p in chosen]
        s.settled_seconds += seconds * sum(settled_before) / max(1, len(chosen))
        unsettled = {id(p.stream): p.stream for p, was in zip(chosen, settled_before, strict=True) if not was}
        if call.kind == "decode":
            for p, was_settled in zip(chosen, settled_before, strict=True):
                if not isinstance(p.window, DecodeWindow):
                    continue
                kept = p.window.keep_end - p.window.keep_start
                s.kept_tokens += kept
                s.settled_kept_tokens += kept if was_settled else 0
                p.stream.decoded_tokens += kept
        # a stream closed meanwhile is no longer counted open
        newly_settled = sum(1 for h in unsettled.values() if h.settled and not h.closed)
        s.calls_by_kind[call.kind] += 1
        s.rows_by_kind[call.kind] += len(call.windows)
        s.seconds_by_kind[call.kind] += seconds
        s.valid_work_by_kind[call.kind] += call.valid_work
        dues = [due(p) for p in chosen]  # None: nobody hears that row's stream yet
        overdue = [d for d in dues if d is not None and ended > d]
        late = [ended - d for d in overdue]
        s.missed_deadlines += len(late)
        record_call(
            call, chosen, started, seconds, late
        )  # Prometheus (telemetry.py): pre-bound children only
        record_device_seconds("live", seconds)
        self.recent_calls.append((ended, seconds))
        self.recent_work.append((ended, call.kind, seconds, call.valid_work))
        if late:
            # Admission reads the device's share of the lateness: the event loop's stalls are the host's.
            lag = loop_lag
            own = max(ended - d - (lag.excused(d, ended) if lag is not None else 0.0) for d in overdue)
            if own > 0:
                self.recent_missed.append((ended, own))
            else:
                s.misses_loop_lag += 1
        else:
            # A near miss: a settled stream's window ended with its listener under NEAR_MISS_S from running dry
            # (negative lateness; only a negative grace counts it: `recent_misses`).
            near = [
                ended - d
                for d, was in zip(dues, settled_before, strict=True)
                if was and d is not None and d - ended < NEAR_MISS_S
            ]
            if near and lone:
                s.near_misses_lone += 1
            elif near:
                self.recent_missed.append((ended, max(near)))
        self.trim(ended)
        return newly_settled

    def background_call(
        self, call: Call, ended: float, started: float, device_seconds: float | None, gate: BackgroundGate
    ) -> None:
        """A background call's seconds go to their own account: none of admission's figures (busy ratio, misses,
        the codec cost per stream) reads them."""
        s = self.stats
        seconds = max(0.0, device_seconds if device_seconds is not None else ended - started)
        s.background_calls += 1
        s.background_rows += len(call.windows)
        s.background_seconds += seconds
        record_device_seconds("background", seconds)
        gate.note_call(ended, seconds)

    def model_call(
        self, call: PendingModelCall, started: float, ended: float, device_seconds: float | None
    ) -> None:
        """A model call's device seconds count as a codec call's do (busy ratio, the cost per stream admission
        reads); it has no rows, no work units and no listener to miss."""
        s = self.stats
        seconds = max(0.0, device_seconds if device_seconds is not None else ended - started)
        s.busy_seconds += seconds
        s.model_calls_by_kind[call.kind] += 1
        s.model_seconds_by_kind[call.kind] += seconds
        record_model_call(call.kind, started - call.submitted, seconds)
        record_device_seconds("live", seconds)
        self.recent_calls.append((ended, seconds))
        self.trim(ended)

    def trim(self, now: float) -> None:
        horizon = now - self.window_s
        while self.recent_calls and self.recent_calls[0][0] < horizon:
            self.recent_calls.popleft()
        while self.recent_missed and self.recent_missed[0][0] < horizon:
            self.recent_missed.popleft()
        while self.recent_work and self.recent_work[0][0] < horizon:
            self.recent_work.popleft()

    def seconds_per_work(self, now: float) -> dict[WindowKind, float | None]:
        """Each kind's device seconds per work unit of the rows themselves (padding counted in the seconds, not the
        units) over the calls of the last `window_s`, since start where none ran within it (None: never measured):
        what a queued window's own units will cost at the device's present pace."""
        self.trim(now)
        seconds: dict[WindowKind, float] = {}
        work: dict[WindowKind, int] = {}
        for _, kind, call_seconds, units in self.recent_work:
            seconds[kind] = seconds.get(kind, 0.0) + call_seconds
            work[kind] = work.get(kind, 0) + units
        return {
            kind: seconds[kind] / work[kind] if work.get(kind) else self.stats.seconds_per_work(kind)
            for kind in WINDOW_KINDS
        }

    def busy_ratio(self, now: float) -> float:
        """Share of the last `busy_window_s` the device spent on the scheduler's calls, codec and model calls
        (0..max_inflight)."""
        self.trim(now)
        return sum(seconds for _, seconds in self.recent_calls) / self.window_s

    def recent_misses(self, now: float, grace_s: float = 0.0) -> int:
        """Calls in the last `busy_window_s` that ended more than `grace_s` after a playing row's deadline (the
        deadline assumes no client prebuffer: a client holding 100 ms hears nothing of a 50 ms miss), less the event
        loop's stalls around it (`loop_lag`). A negative grace also counts near misses: calls that ended within
        -grace_s (at most NEAR_MISS_S) before a settled stream's listener would have run dry."""
        return len(self._misses_past(now, grace_s))

    def worst_recent_miss(self, now: float, grace_s: float = 0.0) -> float | None:
        """The worst of the calls `recent_misses` counts: seconds its window ended after its listener ran dry, the
        loop's stalls taken off (negative: a near miss, that much audio left). None: none counted."""
        counted = self._misses_past(now, grace_s)
        return max(counted) if counted else None

    def _misses_past(self, now: float, grace_s: float) -> list[float]:
        """The lateness of each call within the window that missed by more than `grace_s` (both readers above)."""
        self.trim(now)
        return [late for _, late in self.recent_missed if late > grace_s]
