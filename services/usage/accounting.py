"""The one accounting sink: what every synthesis request reports, whatever transport carried it.

HTTP (native and OpenAI, bytes or SSE) and each WebSocket utterance make one `RequestAccounting`. It counts the
request when synthesis starts, its first audio, and its end exactly once: Prometheus metrics, the lifecycle log
lines (`request_received`, `first_audio`, `request_completed` | `request_failed` | `request_cancelled` |
`client_disconnected`), then hands the frozen `RequestReport` to the settle hook, which releases the concurrency
slot, settles credits, feeds the audio-flow monitor and writes the request-log record
(`services.access.AccessServices.settle`). Metric labels and log fields never depend on the transport; the
transport is one log field, so one dashboard and one log query cover all of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from core.guards.chunk import SAMPLES_PER_TOKEN
from core.guards.text_budget import SEMANTIC_TOKENS_PER_SECOND, expected_tokens
from services.pipeline.chunk_guards import delivered_chars
from services.pipeline.load_shed import BACKLOG
from services.usage.flow_monitor import StreamCadence
from services.usage.shutdown import shutting_down
from shared import metrics

if TYPE_CHECKING:
    from services.pipeline.synthesis import SynthesisJob

logger = logging.getLogger("services.usage.accounting")

# job: one chapter of a long-form job (services/jobs); wyoming: Home Assistant's TCP protocol (api/protocols/wyoming)
Transport = Literal["http", "websocket", "wyoming", "job"]
# completed | failed | cancelled (a WebSocket `cancel`) | disconnected (the client left) | interrupted (the server
# cut it at shutdown: refunded, see services/usage/shutdown.py)
EndStatus = Literal["completed", "failed", "cancelled", "disconnected", "interrupted"]
_END_EVENTS = {
    "completed": "request_completed",
    "failed": "request_failed",
    "cancelled": "request_cancelled",
    "disconnected": "client_disconnected",
    "interrupted": "request_interrupted",
}


@dataclass
class RequestReport:
    """One request's facts at its end; what the settle hook (credits, flow monitor, request log) reads."""

    request_id: str
    transport: Transport
    job: SynthesisJob
    status: EndStatus
    error_code: str | None
    ttfb_ms: float | None
    audio_seconds: float
    rtf: float | None
    wall_seconds: float
    chunks_sent: int
    bytes_sent: int
    cadence: dict[str, Any] | None = None


SettleHook = Callable[[RequestReport], "asyncio.Future[Any] | None"]  # may return the settlement's task
BeginHook = Callable[
    ["RequestAccounting"], None
]  # admitted: write the durable intent record (must not block)
# Audio delivered so far: (seconds, the text it covers), noted on the intent record (must not block).
ProgressHook = Callable[[float, str], None]
# Delivered audio between two progress notes: an interrupted request's row is at most this far behind what was heard,
# for one small spool write per second of audio.
PROGRESS_STEP_S = 1.0


class RequestAccounting:
    """Counts one request: `started()` once synthesis is admitted, `first_audio()`, then `finish()` exactly once.

    `clock_origin` is when the request was accepted (perf_counter): time to first audio and wall time count from
    it, so the figure is what the client waited, whatever the transport.
    """

    def __init__(
        self,
        job: SynthesisJob,
        *,
        transport: Transport,
        clock_origin: float,
        settle: SettleHook | None = None,
        begin: BeginHook | None = None,
    ) -> None:
        self.job = job
        self.begin = begin
        self.transport = transport
        self.clock_origin = clock_origin
        self.settle = settle
        self.first_audio_at: float | None = None
        self.report: RequestReport | None = None
        self.settling: asyncio.Future[Any] | None = (
            None  # the settle hook's task: done once the record is spooled
        )
        self._active = False
        # Streams only: the send timeline (chunk interval/jitter metrics, modelled playback underruns).
        self.cadence = StreamCadence(clock=time.perf_counter) if job.request.stream else None
        self._samples_seen = 0
        self.on_progress: ProgressHook | None = None  # set by the begin hook
        self._next_progress_s = 0.0

    @property
    def request_id(self) -> str:
        return self.job.request.request_id

    @property
    def voice_id(self) -> str:
        return self.job.request.voice.id

    @property
    def voice_label(self) -> str:
        return self.job.request.voice.metric_label

    @property
    def stream_label(self) -> str:
        return "true" if self.job.request.stream else "false"

    @property
    def audio_seconds(self) -> float:
        return self.job.stats.output_samples / float(self.job.request.sample_rate)

    @property
    def ttfb_ms(self) -> float | None:
        return None if self.first_audio_at is None else (self.first_audio_at - self.clock_origin) * 1000.0

    @property
    def finished(self) -> bool:
        return self.report is not None

    def started(self, *, text_length: int, key_id: str | None = None, **fields: Any) -> None:
        """Synthesis was admitted: count the request and mark it active."""
        r = self.job.request
        metrics.REQUESTS.labels(self.voice_label, self.stream_label, r.audio_format).inc()
        metrics.ACTIVE_STREAMS.inc()
        self._active = True
        if (
            self.transport != "job"
        ):  # a job's chapter waits for idle device time: no live request is shed for it
            BACKLOG.enter(self)
        logger.info(
            "request_received",
            extra={
                "event": "request_received",
                "transport": self.transport,
                "speaker": self.voice_id,
                "format": r.audio_format,
                "sample_rate": r.sample_rate,
                "stream": r.stream,
                "text_length": text_length,
                "text_chunks": self.job.stats.text_chunks,
                "key_id": key_id,
                **fields,
            },
        )
        if self.begin is not None:
            try:
                self.begin(self)
            except Exception:  # noqa: BLE001 - accounting must never break delivery
                logger.exception("request intent record failed")

    def first_audio(self) -> bool:
        """The first audio bytes exist; True the first time."""
        if self.first_audio_at is not None:
            return False
        self.first_audio_at = time.perf_counter()
        BACKLOG.leave(self)
        ttfb = self.first_audio_at - self.clock_origin
        metrics.TTFB.labels(self.stream_label).observe(ttfb)
        logger.info("first_audio", extra={"event": "first_audio", "ttfb_ms": round(ttfb * 1000, 1)})
        return True

    def audio_sent(self) -> None:
        """Audio left for the client (handed to the server or the socket's writer): feed the cadence model, and
        note what has been delivered once per PROGRESS_STEP_S of audio."""
        if self.on_progress is not None and self.report is None:
            seconds = self.job.stats.sent_samples / float(self.job.request.sample_rate)
            if seconds >= self._next_progress_s and seconds > 0:
                self._next_progress_s = seconds + PROGRESS_STEP_S
                try:
                    self.on_progress(seconds, self.delivered_text(seconds))
                except Exception:  # noqa: BLE001 - accounting must never break delivery
                    logger.exception("request progress note failed")
        if self.cadence is None:
            return
        sent = self.job.stats.sent_samples
        self.cadence.on_chunk(
            (sent - self._samples_seen) / float(self.job.request.sample_rate), at=time.perf_counter()
        )
        self._samples_seen = sent

    def delivered_text(self, seconds: float) -> str:
        """The text `seconds` of delivered audio cover, by the charge's cut-chunk rule (whole chunks while the audio
        spans their speech, a share of the chunk it stops in; services.pipeline.chunk_guards.delivered_chars)."""
        job, stats = self.job, self.job.stats
        chunks = list(job.plan.chunks)
        made = [
            (len(text), expected_tokens(text), samples / SAMPLES_PER_TOKEN)
            for text, samples in zip(chunks, stats.decoded_samples_per_chunk, strict=False)
        ]
        # Output seconds -> generated seconds: `speed` shortened the audio by its time-stretch.
        tokens = seconds * stats.time_stretch * SEMANTIC_TOKENS_PER_SECOND
        left = delivered_chars(made, stats.text_chunks_done, tokens, job.guards.max_s_per_char)
        parts: list[str] = []
        for text in chunks:
            if left <= 0:
                break
            parts.append(text[:left])
            left -= len(text)
        return " ".join(parts)

    def finish(
        self,
        status: EndStatus,
        error_code: str | None = None,
        *,
        chunks_sent: int | None = None,
        bytes_sent: int | None = None,
    ) -> RequestReport | None:
        """Record the end once (later calls are ignored); then settle. Never raises."""
        if self.report is not None:
            return None
        if status in ("disconnected", "cancelled") and shutting_down():
            status = "interrupted"  # the server's own cut at shutdown looks like a hang-up; it is not one
        BACKLOG.leave(self)
        if self._active:
            metrics.ACTIVE_STREAMS.dec()
            self._active = False
        stats = self.job.stats
        wall = time.perf_counter() - self.clock_origin
        seconds = self.audio_seconds
        report = self.report = RequestReport(
            request_id=self.request_id,
            transport=self.transport,
            job=self.job,
            status=status,
            error_code=(error_code or "INTERNAL_ERROR") if status == "failed" else None,
            ttfb_ms=self.ttfb_ms,
            audio_seconds=seconds,
            rtf=wall / seconds if seconds > 0 else None,
            wall_seconds=wall,
            chunks_sent=stats.sent_chunks if chunks_sent is None else chunks_sent,
            bytes_sent=stats.sent_bytes if bytes_sent is None else bytes_sent,
            cadence=self.cadence.summary() if self.cadence is not None else None,
        )
        self._count(report)
        if self.settle is not None:
            try:
                settling = self.settle(report)
                self.settling = settling if isinstance(settling, asyncio.Future) else None
            except Exception:  # noqa: BLE001 - accounting must never break delivery
                logger.exception("request settlement failed")
        return report

    def _count(self, report: RequestReport) -> None:
        voice, stream = self.voice_label, self.stream_label
        if report.status == "completed":
            metrics.COMPLETED.labels(voice, stream, "success").inc()
            metrics.AUDIO_SECONDS.observe(report.audio_seconds)
            metrics.CHUNKS_SENT.observe(report.chunks_sent)
            if report.rtf is not None:
                metrics.RTF.observe(report.rtf)
        elif report.status == "failed":
            metrics.FAILED.labels(voice, report.error_code or "INTERNAL_ERROR", "error").inc()
        else:
            if report.status == "disconnected":
                metrics.CLIENT_DISCONNECTS.inc()
            metrics.COMPLETED.labels(voice, stream, report.status).inc()
        event = _END_EVENTS[report.status]
        logger.info(
            event,
            extra={
                "event": event,
                "status": report.status,
                "transport": report.transport,
                "error_code": report.error_code,
                "ttfb_ms": None if report.ttfb_ms is None else round(report.ttfb_ms, 1),
                "audio_seconds": round(report.audio_seconds, 3),
                "rtf": None if report.rtf is None else round(report.rtf, 4),
                "wall_ms": round(report.wall_seconds * 1000, 1),
                "text_chunks": self.job.stats.text_chunks,
                "chunks_sent": report.chunks_sent,
                "bytes_sent": report.bytes_sent,
            },
        )
