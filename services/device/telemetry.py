"""What the codec scheduler shows operators: Prometheus families counted per device call, gauges read at scrape
time, a snapshot for the admin route `GET /v1/tts/debug/scheduler`, and the cumulative `SchedulerStats` the
scheduler keeps (admission reads them too).

Why a module of its own: the scheduler's `_account` runs on the event loop once per device call, so the live path
gets only pre-bound counter and histogram children (`record_call`, a handful of updates plus one per row);
everything that walks the streams or sorts the pending windows (`refresh_gauges`, `snapshot`) runs when someone
looks. Nothing here decides anything: reading never moves a measure admission uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from services.device.calls import MODEL_CALL_KINDS, ModelCallKind
from services.device.windows import WindowKind
from services.device.work_class import WORK_CLASSES, WorkClass
from shared import metrics

# The scheduler imports this module (its per-call hook), so its types are not imported back here: `call` is a
# scheduler.Call, `chosen` its _Pending rows, `scheduler` a CodecScheduler.

KINDS = ("decode", "sr")


class _KindMetrics:
    """One kind's pre-bound children: `.labels()` is a dict lookup under a lock, too much per row."""

    def __init__(self, kind: str) -> None:
        self.bucketed = metrics.CODEC_SCHED_CALLS.labels(kind=kind, shape="bucketed")
        self.exact = metrics.CODEC_SCHED_CALLS.labels(kind=kind, shape="exact")
        self.rows = metrics.CODEC_SCHED_ROWS.labels(kind=kind)
        self.padded = metrics.CODEC_SCHED_PADDED_ROWS.labels(kind=kind)
        self.busy = metrics.CODEC_SCHED_BUSY.labels(kind=kind)
        self.batch = metrics.CODEC_SCHED_BATCH.labels(kind=kind)
        self.wait_first = metrics.CODEC_SCHED_WAIT.labels(kind=kind, phase="first")
        self.wait_steady = metrics.CODEC_SCHED_WAIT.labels(kind=kind, phase="steady")
        self.misses = metrics.CODEC_SCHED_MISSES.labels(kind=kind)


_BY_KIND = {kind: _KindMetrics(kind) for kind in KINDS}
_MODEL_CALL_SECONDS = {
    kind: metrics.CODEC_SCHED_MODEL_CALL_SECONDS.labels(kind=kind) for kind in MODEL_CALL_KINDS
}
_MODEL_CALL_WAIT = {kind: metrics.CODEC_SCHED_MODEL_CALL_WAIT.labels(kind=kind) for kind in MODEL_CALL_KINDS}
_DEVICE_SECONDS = {
    work_class: metrics.DEVICE_SECONDS.labels(work_class=work_class) for work_class in WORK_CLASSES
}


@dataclass
class SchedulerStats:
    """The scheduler's cumulative figures (`CodecScheduler.stats`): admission reads them, the debug route shows them."""

    calls: int = 0
    rows: int = 0
    padded_rows: int = 0
    work: int = 0  # units including padding
    valid_work: int = 0
    busy_seconds: float = (
        0.0  # codec calls' and model calls' device seconds (admission's codec cost reads it)
    )
    # live decode rows' kept tokens: the audio the codec made (50 a second; admission's codec cost per audio second)
    kept_tokens: int = 0
    # of busy_seconds and kept_tokens, the settled streams' rows' (queueing.SETTLED_TOKENS; a call's seconds split by
    # rows): admission's codec cost of settled streams (codec_cost.py)
    settled_seconds: float = 0.0
    settled_kept_tokens: int = 0
    missed_deadlines: int = 0  # rows whose call ended after their deadline
    misses_loop_lag: int = 0  # calls whose every miss the event loop's stalls account for (not the device's)
    near_misses_lone: int = (
        0  # near misses while one live stream was open: not read by admission (accounting.py)
    )
    eager_calls: int = 0
    calls_by_kind: dict[str, int] = field(default_factory=lambda: {"decode": 0, "sr": 0})
    rows_by_kind: dict[str, int] = field(default_factory=lambda: {"decode": 0, "sr": 0})
    seconds_by_kind: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "sr": 0.0})
    # the rows' own work units (no padding): seconds per unit then prices a queued window's own units, the padding
    # its call will carry included
    valid_work_by_kind: dict[str, int] = field(default_factory=lambda: {"decode": 0, "sr": 0})
    # Model calls run beside the windows (`CodecScheduler.run_model_call`), by kind: speaker, reference, align
    model_calls_by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODEL_CALL_KINDS, 0))
    model_seconds_by_kind: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(MODEL_CALL_KINDS, 0.0)
    )
    # Background streams' calls (work_class.py), apart from every figure above: admission never reads them
    background_calls: int = 0
    background_rows: int = 0
    background_seconds: float = 0.0

    def mean_batch(self, kind: WindowKind | None = None) -> float:
        calls = self.calls if kind is None else self.calls_by_kind[kind]
        rows = self.rows if kind is None else self.rows_by_kind[kind]
        return rows / calls if calls else 0.0

    def seconds_per_work(self, kind: WindowKind) -> float | None:
        """Device seconds per work unit of the rows themselves: what a queued window's units will cost."""
        work = self.valid_work_by_kind[kind]
        return self.seconds_by_kind[kind] / work if work else None


class RecentRows:
    """Whether the scheduler ran rows of one kind within the last `memory_s` seconds, read off its cumulative stats
    (admission: 48 kHz streams are live while AP-BWE rows run)."""

    def __init__(self, kind: WindowKind, memory_s: float) -> None:
        self.kind, self.memory_s = kind, memory_s
        self._rows, self._at = 0, -math.inf

    def within(self, stats: SchedulerStats, now: float) -> bool:
        rows = stats.rows_by_kind.get(self.kind, 0)
        if rows > self._rows:
            self._rows, self._at = rows, now
        return now - self._at <= self.memory_s


def record_call(
    call: Any, chosen: Sequence[Any], started: float, seconds: float, late: Sequence[float]
) -> None:
    """Count one finished (or failed) device call: its rows, padding, busy seconds, each window's wait from its
    submission to `started`, and the playing rows that ended `late` (seconds past their deadline each)."""
    m = _BY_KIND[call.kind]
    rows = len(call.windows)
    (m.exact if call.length is None else m.bucketed).inc()
    m.rows.inc(rows)
    if call.rows_padded > rows:
        m.padded.inc(call.rows_padded - rows)
    m.busy.inc(seconds)
    m.batch.observe(rows)
    for p in chosen:
        # A window submitted before its stream's first audio left is part of what a newcomer's first audio waits.
        (m.wait_first if p.first else m.wait_steady).observe(max(0.0, started - p.submitted))
    if late:
        m.misses.inc(len(late))
        for seconds_late in late:
            metrics.CODEC_SCHED_LATENESS.observe(seconds_late)


def record_model_call(kind: ModelCallKind, waited: float, seconds: float) -> None:
    """Count one model call run beside the windows: its wait from submission to start, and its device seconds."""
    _MODEL_CALL_WAIT[kind].observe(max(0.0, waited))
    _MODEL_CALL_SECONDS[kind].observe(seconds)


def record_device_seconds(work_class: WorkClass, seconds: float) -> None:
    """Count the seconds one scheduler call (codec or model call) held the device, by work class."""
    _DEVICE_SECONDS[work_class].inc(seconds)


def refresh_gauges(scheduler: Any, admission: Any = None) -> None:
    """Set the scheduler's scrape-time gauges (call before rendering /metrics). No scheduler (models not loaded):
    zeros, +Inf slack, NaN for admission's figures."""
    if scheduler is None:
        metrics.CODEC_SCHED_BUSY_RATIO.set(0.0)
        metrics.CODEC_SCHED_PENDING.set(0)
        metrics.CODEC_SCHED_STREAMS.set(0)
        metrics.CODEC_SCHED_MIN_SLACK.set(math.inf)
    else:
        metrics.CODEC_SCHED_BUSY_RATIO.set(scheduler.busy_ratio())
        metrics.CODEC_SCHED_PENDING.set(scheduler.pending_windows)
        metrics.CODEC_SCHED_STREAMS.set(scheduler.active_streams)
        metrics.CODEC_SCHED_MIN_SLACK.set(scheduler.min_slack())
    view = admission.view() if admission is not None else {}
    share = view.get("codec_share_with_one_more")
    pace = view.get("llm_tokens_per_s_per_request")
    metrics.ADMISSION_CODEC_SHARE.set(math.nan if share is None else share)
    metrics.ADMISSION_LLM_PACE.set(math.nan if pace is None else pace)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def snapshot(scheduler: Any, admission: Any = None, *, limit: int = 50) -> dict[str, Any]:
    """The scheduler's figures for the admin route: cumulative stats, the load figures admission reads, admission's
    own view, and why the `limit` most urgent pending windows and model calls wait (the whole list is sorted: a
    debug call only; `stream_id` null: a model call)."""
    waiting = scheduler.why_waiting()
    by_reason: dict[str, int] = {}
    for _, _, _, reason in waiting:
        by_reason[reason] = by_reason.get(reason, 0) + 1
    stats = asdict(scheduler.stats)
    stats["mean_batch"] = {kind: scheduler.stats.mean_batch(kind) for kind in KINDS}
    return {
        "stats": stats,
        "load": {
            "busy_ratio": scheduler.busy_ratio(),
            "busy_window_s": scheduler.busy_window_s,
            "recent_misses": scheduler.recent_misses(),
            "min_slack_s": _finite(scheduler.min_slack()),  # null: no stream playing
            "open_streams": scheduler.active_streams,
            "pending_windows": scheduler.pending_windows,
            "pending_model_calls": scheduler.pending_model_calls,
            "calls_in_flight": scheduler.calls_in_flight,
            "max_inflight": scheduler.policy.max_inflight,
        },
        "admission": admission.view() if admission is not None else None,
        "waiting": [
            {"stream_id": stream_id, "kind": kind, "seconds_to_deadline": round(slack, 6), "reason": reason}
            for stream_id, kind, slack, reason in waiting[:limit]
        ],
        "waiting_shown": min(limit, len(waiting)),
        "waiting_by_reason": by_reason,
    }
