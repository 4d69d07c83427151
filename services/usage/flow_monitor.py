"""Audio flow accounting: did every stage pass on what the stage before it produced?

`AudioFlowMonitor.record()` takes one request's `PipelineStats` at the end of the request and compares stages:

| stage              | a completed request loses audio when ...                                               |
|--------------------|-----------------------------------------------------------------------------------------|
| generation         | `generation_done` is false                                                              |
| parse              | the LLM produced tokens but none were semantic (no audio at all)                        |
| decode             | `decode_done` is false, fewer text chunks finished than planned, or decoded samples <   |
|                    | semantic_tokens * hop - tolerance (the decoder emits exactly tokens * hop; it runs      |
|                    | before the crossfade, so overlaps do not count here)                                    |
| super_resolution   | SR applied and sr_samples < 3 * (decoded - crossfade overlap * joins) - tolerance       |
| resample           | (output rate known) output_samples < source samples * out_rate / source_rate - tolerance|
|                    | (rate unknown) no output samples although audio was decoded                             |
| encode             | `encode_done` is false, output samples but no encoded frames, or (frame size known)      |
|                    | encoded_frames < ceil(output_samples / frame samples): a frame went missing on the way   |
| send               | `send_done` is false, or sent_bytes < encoded_bytes                                     |

Only *completed* requests can lose audio. A disconnected or failed request stops early by design (the client
left, or the error explains it): it is recorded as one "cut short" event naming the stage where the flow
stopped, with the undelivered bytes, and counted apart from losses. Shortfalls are the only concern; a stage
that produced more than expected is not flagged.

Each loss (at most one per stage per request) increments `veena3_tts_pipeline_losses_total{stage}`, logs a
WARNING with request id and stage (never text), and joins a bounded list of recent events.

`StreamCadence` follows one stream's sends: intervals, jitter and playback underruns.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from shared import metrics

logger = logging.getLogger("services.usage.flow_monitor")

Outcome = Literal["completed", "failed", "disconnected"]
OUTCOMES: tuple[str, ...] = ("completed", "failed", "disconnected")
STAGES: tuple[str, ...] = ("generation", "parse", "decode", "super_resolution", "resample", "encode", "send")

# Every stage's series exists at 0 from the start, so dashboards and `increase()` alerts see it before any event.
for _stage in STAGES:
    metrics.PIPELINE_LOSSES.labels(_stage)
    metrics.FRAMES_DROPPED.labels(_stage)

HOP_SAMPLES = 320  # BiCodec: one semantic token = 320 samples at 16 kHz (50 tokens/s)
NATIVE_RATE = 16_000
SR_FACTOR = 3  # AP-BWE 16 kHz -> 48 kHz, exactly 3x the samples


class StatsLike(Protocol):
    """The attributes of services.pipeline.synthesis.PipelineStats that the monitor reads."""

    llm_tokens: int
    semantic_tokens: int
    decoded_chunks: int
    decoded_samples: int
    sr_chunks: int
    sr_samples: int
    output_samples: int
    encoded_frames: int
    encoded_bytes: int
    sent_chunks: int
    sent_bytes: int
    text_chunks: int
    text_chunks_done: int
    generation_done: bool
    decode_done: bool
    encode_done: bool
    send_done: bool


# The integer counters, summed across requests in the snapshot (names as in PipelineStats).
COUNT_FIELDS: tuple[str, ...] = tuple(
    name for name, kind in StatsLike.__annotations__.items() if kind == "int"
)


@dataclass(frozen=True)
class Shortfall:
    """A later stage saw less than an earlier one: `expected` vs `actual`, in `unit`."""

    stage: str
    unit: str  # samples | bytes | frames | tokens | text_chunks | flag
    expected: float
    actual: float

    @property
    def missing(self) -> float:
        return self.expected - self.actual


@dataclass(frozen=True)
class FlowEvent:
    """One entry of `recent_events`; never holds text."""

    ts: str
    request_id: str
    outcome: str
    kind: str  # "loss" (completed request) | "cut_short" (disconnected / failed request)
    stage: str  # where audio went missing, or where the flow stopped
    unit: str
    expected: float
    actual: float
    missing: float
    error_code: str | None = None
    undelivered_bytes: int = 0  # encoded but never sent


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 6) if den > 0 else None


def _now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AudioFlowMonitor:
    """Process-wide per-stage totals, losses and recent events. Thread-safe; `snapshot()` is JSON-ready."""

    def __init__(
        self,
        *,
        hop_samples: int = HOP_SAMPLES,
        crossfade_samples: int = 800,
        decode_tolerance_samples: int = 0,
        sr_tolerance_samples: int = 0,
        resample_tolerance_samples: int = 2,
        frame_ms: int | None = None,
        max_events: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hop_samples = hop_samples
        self.crossfade_samples = crossfade_samples
        self.decode_tolerance = decode_tolerance_samples
        self.sr_tolerance = sr_tolerance_samples
        self.resample_tolerance = resample_tolerance_samples
        self.frame_ms = frame_ms
        self._clock = clock
        self._lock = threading.Lock()
        self._events: deque[FlowEvent] = deque(maxlen=max_events)
        self._reset_state()

    @classmethod
    def from_settings(cls, settings: Any) -> AudioFlowMonitor:
        return cls(
            crossfade_samples=round(NATIVE_RATE * settings.text.crossfade_ms / 1000.0),
            frame_ms=settings.stream.frame_ms,
        )

    def _reset_state(self) -> None:
        self._since = self._clock()
        self._outcomes: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._totals: Counter[str] = Counter()
        self._completed_totals: Counter[str] = Counter()
        self._losses: Counter[str] = Counter()
        self._missing: dict[str, dict[str, float]] = {}  # stage -> unit -> what went missing
        self._lossy_requests = 0
        self._cut: dict[str, Counter[str]] = {}
        self._undelivered_bytes = 0
        self._cadence: dict[str, float] = dict.fromkeys(
            ("streams", "chunks", "underruns", "underrun_seconds", "streams_with_underruns"), 0
        )
        self._cadence_max_interval = 0.0
        self._events.clear()

    # ------------------------------------------------------------------ rules
    def shortfalls(
        self,
        stats: StatsLike,
        *,
        sr_applied: bool | None = None,
        output_rate: int | None = None,
        expected_decoded_samples: int | None = None,
    ) -> list[Shortfall]:
        """Every stage that saw less than the one before it, judged as if the request completed."""
        s = stats
        out: list[Shortfall] = []

        def flag(stage: str, done: bool) -> None:
            if not done:
                out.append(Shortfall(stage, "flag", 1, 0))

        def short(stage: str, unit: str, expected: float, actual: float, tolerance: float = 0) -> None:
            if actual < expected - tolerance:
                out.append(Shortfall(stage, unit, expected, actual))

        flag("generation", s.generation_done)
        if s.llm_tokens > 0 and s.semantic_tokens == 0:
            out.append(Shortfall("parse", "tokens", 1, 0))
        flag("decode", s.decode_done)
        short("decode", "text_chunks", s.text_chunks, s.text_chunks_done)
        decode_expected = (
            expected_decoded_samples
            if expected_decoded_samples is not None
            else s.semantic_tokens * self.hop_samples
        )
        short("decode", "samples", decode_expected, s.decoded_samples, self.decode_tolerance)

        # Crossfades shorten the joined 16 kHz signal by at most `crossfade_samples` per join.
        joins = max(0, s.text_chunks_done - 1)
        joined_min = max(0, s.decoded_samples - self.crossfade_samples * joins)
        if getattr(s, "time_stretch", 1.0) != 1.0:
            # `speed` re-times the joined audio on purpose: later stages are judged against what the stretch made.
            joined_min = getattr(s, "stretched_samples", 0)
        applied = s.sr_chunks > 0 if sr_applied is None else sr_applied
        if applied:
            short("super_resolution", "samples", SR_FACTOR * joined_min, s.sr_samples, self.sr_tolerance)
        if output_rate is not None:
            source, source_rate = (
                (s.sr_samples, SR_FACTOR * NATIVE_RATE) if applied else (joined_min, NATIVE_RATE)
            )
            expected = source * output_rate / source_rate
            short("resample", "samples", expected, s.output_samples, self.resample_tolerance)
        elif s.decoded_samples > 0 and s.output_samples == 0:
            out.append(Shortfall("resample", "samples", s.decoded_samples, 0))

        flag("encode", s.encode_done)
        if s.output_samples > 0 and s.encoded_frames == 0:
            out.append(Shortfall("encode", "frames", 1, 0))
        elif self.frame_ms and output_rate:
            # The re-framer hands the encoder full frames plus one short tail (same rule as AudioChain).
            frame = max(1, output_rate * self.frame_ms // 1000)
            short("encode", "frames", math.ceil(s.output_samples / frame), s.encoded_frames)
        flag("send", s.send_done)
        short("send", "bytes", s.encoded_bytes, s.sent_bytes)
        return out

    # ------------------------------------------------------------------ recording
    def record(
        self,
        request_id: str,
        stats: StatsLike,
        outcome: Outcome,
        error_code: str | None = None,
        *,
        sr_applied: bool | None = None,
        output_rate: int | None = None,
        expected_decoded_samples: int | None = None,
        cadence: dict[str, Any] | None = None,
    ) -> list[FlowEvent]:
        """Account one finished request; returns the events it produced (losses or one cut-short event)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        found = self.shortfalls(
            stats,
            sr_applied=sr_applied,
            output_rate=output_rate,
            expected_decoded_samples=expected_decoded_samples,
        )
        stamp = _now_iso(self._clock())
        undelivered = max(0, stats.encoded_bytes - stats.sent_bytes)

        def event(kind: str, sf: Shortfall) -> FlowEvent:
            return FlowEvent(
                stamp,
                request_id,
                outcome,
                kind,
                stage=sf.stage,
                unit=sf.unit,
                expected=sf.expected,
                actual=sf.actual,
                missing=sf.missing,
                error_code=error_code,
                undelivered_bytes=undelivered,
            )

        if outcome == "completed":
            per_stage: dict[str, Shortfall] = {}
            for sf in found:  # one loss per stage per request; the first rule that fired explains it
                per_stage.setdefault(sf.stage, sf)
            events = [event("loss", sf) for sf in per_stage.values()]
        else:
            events = [event("cut_short", found[0] if found else Shortfall("none", "flag", 0, 0))]

        with self._lock:
            self._outcomes[outcome] += 1
            if error_code and outcome == "failed":
                self._errors[error_code] += 1
            for name in COUNT_FIELDS:
                value = int(getattr(stats, name))
                self._totals[name] += value
                if outcome == "completed":
                    self._completed_totals[name] += value
            if outcome == "completed":
                self._lossy_requests += 1 if events else 0
                for ev in events:
                    self._losses[ev.stage] += 1
                    units = self._missing.setdefault(ev.stage, {})
                    units[ev.unit] = units.get(ev.unit, 0) + ev.missing
            else:
                self._cut.setdefault(outcome, Counter())[events[0].stage] += 1
                self._undelivered_bytes += undelivered
            if cadence:
                self._add_cadence(cadence)
            self._events.extend(events)

        for ev in events:
            if ev.kind == "loss":
                metrics.PIPELINE_LOSSES.labels(ev.stage).inc()
                logger.warning(
                    "pipeline loss",
                    extra={
                        "request_id": request_id,
                        "stage": ev.stage,
                        "unit": ev.unit,
                        "expected": ev.expected,
                        "actual": ev.actual,
                    },
                )
        return events

    def _add_cadence(self, summary: dict[str, Any]) -> None:
        self._cadence["streams"] += 1
        self._cadence["chunks"] += int(summary.get("chunks", 0))
        self._cadence["underruns"] += int(summary.get("underruns", 0))
        self._cadence["underrun_seconds"] += float(summary.get("underrun_seconds", 0.0))
        self._cadence["streams_with_underruns"] += 1 if summary.get("underruns") else 0
        self._cadence_max_interval = max(
            self._cadence_max_interval, float(summary.get("interval_max_s") or 0.0)
        )

    # ------------------------------------------------------------------ read-out
    def snapshot(self) -> dict[str, Any]:
        """Everything since the last reset, as plain JSON types (GET /v1/tts/debug/stats)."""
        with self._lock:
            now = self._clock()
            total = sum(self._outcomes.values())
            done = self._completed_totals
            return {
                "since": _now_iso(self._since),
                "window_seconds": round(now - self._since, 3),
                "requests": {"total": total, **{o: self._outcomes[o] for o in OUTCOMES}},
                "errors_by_code": dict(self._errors),
                "totals": {name: self._totals[name] for name in COUNT_FIELDS},
                "completed_totals": {name: done[name] for name in COUNT_FIELDS},
                "efficiency": {
                    "completion": _ratio(self._outcomes["completed"], total),
                    "decode": _ratio(done["decoded_samples"], done["semantic_tokens"] * self.hop_samples),
                    "text_chunks": _ratio(done["text_chunks_done"], done["text_chunks"]),
                    "send": _ratio(done["sent_bytes"], done["encoded_bytes"]),
                },
                "losses": {
                    "total": sum(self._losses.values()),
                    "requests_with_loss": self._lossy_requests,
                    "by_stage": {stage: self._losses[stage] for stage in STAGES},
                    "missing_by_stage": {stage: dict(units) for stage, units in self._missing.items()},
                },
                "cut_short": {
                    "by_outcome": {o: dict(self._cut.get(o, {})) for o in ("disconnected", "failed")},
                    "undelivered_bytes": self._undelivered_bytes,
                },
                "cadence": {
                    "streams": self._cadence["streams"],
                    "chunks": self._cadence["chunks"],
                    "underruns": self._cadence["underruns"],
                    "underrun_seconds": round(self._cadence["underrun_seconds"], 6),
                    "streams_with_underruns": self._cadence["streams_with_underruns"],
                    "interval_max_s": round(self._cadence_max_interval, 6),
                },
                "recent_events": [asdict(ev) for ev in self._events],
            }

    def reset(self) -> None:
        """Start a new window (POST /v1/tts/debug/reset). Prometheus counters stay monotonic."""
        with self._lock:
            self._reset_state()


_EPSILON_S = 1e-6  # arrival "exactly when the buffer runs dry" is on time, whatever the float rounding


def _p99(sorted_values: list[float]) -> float:
    return sorted_values[max(0, math.ceil(0.99 * len(sorted_values)) - 1)]


class StreamCadence:
    """One stream's send timeline: intervals, jitter (|interval - previous interval|) and playback underruns.

    Playback model: the client starts playing when the first chunk carrying audio arrives (plus `prebuffer_s`)
    and plays continuously. A chunk with audio that arrives after everything sent so far has finished playing is
    an underrun; playback resumes from that chunk, and the gap counts as underrun seconds. Chunks without audio
    (a WAV header, an encoder flush) count for intervals but never start playback or underrun.
    """

    def __init__(
        self,
        *,
        prebuffer_s: float = 0.0,
        observe_metrics: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prebuffer_s = prebuffer_s
        self.observe_metrics = observe_metrics
        self._clock = clock
        self._first: float | None = None
        self._last: float | None = None
        self._intervals: list[float] = []
        self._jitters: list[float] = []
        self._audio_seconds = 0.0
        self._play_end: float | None = None  # wall time at which the audio received so far finishes playing
        self.underruns = 0
        self.underrun_seconds = 0.0

    def on_chunk(self, audio_seconds: float, at: float | None = None) -> None:
        """A chunk holding `audio_seconds` of audio was sent at `at` (default: now)."""
        t = self._clock() if at is None else at
        if self._last is not None:
            interval = t - self._last
            if self._intervals:
                jitter = abs(interval - self._intervals[-1])
                self._jitters.append(jitter)
                if self.observe_metrics:
                    metrics.CHUNK_JITTER.observe(jitter)
            self._intervals.append(interval)
            if self.observe_metrics:
                metrics.CHUNK_INTERVAL.observe(interval)
        else:
            self._first = t
        self._last = t
        self._audio_seconds += audio_seconds
        if audio_seconds <= 0:
            return
        if self._play_end is None:
            self._play_end = t + self.prebuffer_s + audio_seconds
        elif t > self._play_end + _EPSILON_S:
            self.underruns += 1
            self.underrun_seconds += t - self._play_end
            self._play_end = t + audio_seconds
        else:
            self._play_end += audio_seconds

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self._intervals)
        jitters = sorted(self._jitters)
        n = len(self._intervals) + (1 if self._last is not None else 0)
        return {
            "chunks": n,
            "audio_seconds": round(self._audio_seconds, 6),
            "duration_s": round((self._last or 0.0) - (self._first or 0.0), 6),
            "interval_mean_s": round(sum(ordered) / len(ordered), 6) if ordered else None,
            "interval_p99_s": round(_p99(ordered), 6) if ordered else None,
            "interval_max_s": round(ordered[-1], 6) if ordered else None,
            "jitter_p99_s": round(_p99(jitters), 6) if jitters else None,
            "underruns": self.underruns,
            "underrun_seconds": round(self.underrun_seconds, 6),
        }
