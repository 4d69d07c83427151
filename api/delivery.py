"""Turn a SynthesisJob into an HTTP response: headers, first-chunk prefetch, metrics, logs and the audit trail.

Streaming responses wait for the first audio bytes before sending headers, so a request that fails before any
audio exists still gets a real error status and envelope. After that, failures end the stream (and are logged,
counted and recorded); a client that disconnects cancels the job, which aborts generation.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi.responses import Response, StreamingResponse

from api.errors import ApiError
from services.flow_monitor import StreamCadence
from services.gpu_health import GpuFaultDetector
from services.synthesis import SynthesisError, SynthesisJob
from shared import metrics

logger = logging.getLogger("api.delivery")

# Jobs whose audio is being delivered now; the stream-queue gauges are read from them at scrape time.
_LIVE_JOBS: weakref.WeakSet[SynthesisJob] = weakref.WeakSet()


async def _wait_for_disconnect(receive: Any) -> None:
    """Return when the client hangs up (the request body has already been read, so nothing else arrives)."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return


def refresh_queue_gauges() -> None:
    """Set the queue depth (sum over live streams) and fill ratio (fullest queue) gauges; call before a scrape."""
    queues = [job.queue for job in list(_LIVE_JOBS)]
    metrics.QUEUE_DEPTH.set(sum(q.qsize() for q in queues))
    metrics.QUEUE_FILL_RATIO.set(max((q.qsize() / q.maxsize for q in queues if q.maxsize > 0), default=0.0))


@dataclass
class RequestOutcome:
    """What happened to one request; handed to the completion hook (request log, flow monitor, credits)."""

    request_id: str
    status: str  # completed | failed | disconnected
    error_code: str | None
    ttfb_ms: float | None
    audio_seconds: float
    rtf: float | None
    wall_seconds: float
    job: SynthesisJob
    cadence: dict[str, Any] | None = None


CompletionHook = Callable[[RequestOutcome], Any]


class Delivery:
    """Wraps one job: measures, streams or collects, and reports exactly once."""

    def __init__(self, job: SynthesisJob, *, started: float, speaker_label: str, headers: dict[str, str],
                 on_complete: CompletionHook | None = None, stall_timeout_s: float = 30.0,
                 realtime_pacing: bool = False, gpu_faults: GpuFaultDetector | None = None,
                 max_buffered_bytes: int = 0) -> None:
        self.job = job
        self.max_buffered_bytes = max_buffered_bytes  # non-streaming responses only; 0 = no cap
        self.started = started
        self.speaker_label = speaker_label
        self.headers = headers
        self.on_complete = on_complete
        self.stall_timeout_s = stall_timeout_s
        self.realtime_pacing = realtime_pacing
        self.gpu_faults = gpu_faults
        self.first_audio_at: float | None = None
        self._reported = False
        self.cadence = StreamCadence(clock=time.perf_counter)
        self._samples_seen = 0
        self._stream_label = "true" if job.request.stream else "false"
        self.final_status: str | None = None
        _LIVE_JOBS.add(job)

    # ------------------------------------------------------------------ accounting
    @property
    def audio_seconds(self) -> float:
        return self.job.stats.output_samples / float(self.job.request.sample_rate)

    def _ttfb_ms(self) -> float | None:
        return None if self.first_audio_at is None else (self.first_audio_at - self.started) * 1000.0

    def _observe_send(self, now: float) -> None:
        """Feed the cadence model (interval/jitter metrics, modelled playback underruns) with this send."""
        sent = self.job.stats.sent_samples
        self.cadence.on_chunk((sent - self._samples_seen) / float(self.job.request.sample_rate), at=now)
        self._samples_seen = sent

    def _report(self, status: str, error_code: str | None) -> None:
        if self._reported:
            return
        self._reported = True
        _LIVE_JOBS.discard(self.job)
        wall = time.perf_counter() - self.started
        audio_seconds = self.audio_seconds
        rtf = wall / audio_seconds if audio_seconds > 0 else None
        ttfb = self._ttfb_ms()
        if status == "completed":
            metrics.COMPLETED.labels(self.speaker_label, self._stream_label, "success").inc()
            metrics.AUDIO_SECONDS.observe(audio_seconds)
            metrics.CHUNKS_SENT.observe(self.job.stats.sent_chunks)
            if rtf is not None:
                metrics.RTF.observe(rtf)
        elif status == "disconnected":
            metrics.CLIENT_DISCONNECTS.inc()
            metrics.COMPLETED.labels(self.speaker_label, self._stream_label, "disconnected").inc()
        else:
            metrics.FAILED.labels(self.speaker_label, error_code or "INTERNAL_ERROR", "error").inc()
        event = {"completed": "request_completed", "failed": "request_failed",
                 "disconnected": "client_disconnected"}[status]
        logger.info(event, extra={
            "event": event, "status": status, "error_code": error_code,
            "ttfb_ms": None if ttfb is None else round(ttfb, 1), "audio_seconds": round(audio_seconds, 3),
            "rtf": None if rtf is None else round(rtf, 4), "wall_ms": round(wall * 1000, 1),
            "text_chunks": self.job.stats.text_chunks, "chunks_sent": self.job.stats.sent_chunks,
            "bytes_sent": self.job.stats.sent_bytes,
        })
        if self.on_complete is not None:
            try:
                self.on_complete(RequestOutcome(
                    request_id=self.job.request.request_id, status=status, error_code=error_code, ttfb_ms=ttfb,
                    audio_seconds=audio_seconds, rtf=rtf, wall_seconds=wall, job=self.job,
                    cadence=self.cadence.summary() if self.job.request.stream else None,
                ))
            except Exception:  # noqa: BLE001 - accounting must never break delivery
                logger.exception("completion hook failed")

    async def _error_code(self, exc: SynthesisError) -> str:
        """A GPU fault also marks the container unhealthy (and, on Modal, asks to be replaced)."""
        if self.gpu_faults is None:
            return exc.code
        return await self.gpu_faults.handle_async(exc) or exc.code

    def _mark_first_audio(self) -> None:
        if self.first_audio_at is None:
            self.first_audio_at = time.perf_counter()
            ttfb = self.first_audio_at - self.started
            metrics.TTFB.labels(self._stream_label).observe(ttfb)
            logger.info("first_audio", extra={"event": "first_audio", "ttfb_ms": round(ttfb * 1000, 1)})

    # ------------------------------------------------------------------ responses
    async def complete_response(self, receive: Any = None) -> Response:
        """Non-streaming: the whole file, with exact sizes and the timing headers.

        `receive` (the ASGI receive of a request whose body was read): a client that hangs up while the file is
        being made cancels the work, as a streaming client does."""
        metrics.ACTIVE_STREAMS.inc()
        collect = asyncio.ensure_future(self._collect())
        watch = asyncio.ensure_future(_wait_for_disconnect(receive)) if receive is not None else None
        try:
            if watch is not None:
                await asyncio.wait({collect, watch}, return_when=asyncio.FIRST_COMPLETED)
                if not collect.done():  # the client left first
                    collect.cancel()
                    await asyncio.gather(collect, return_exceptions=True)
                    self._report("disconnected", None)
                    return Response(status_code=499)  # nobody reads it
            body = await collect
        except SynthesisError as exc:
            code = await self._error_code(exc)
            self._report("failed", code)
            raise ApiError(code, exc.message, param=exc.param) from exc
        except asyncio.CancelledError:
            collect.cancel()
            self._report("disconnected", None)
            raise
        finally:
            if watch is not None and not watch.done():
                watch.cancel()
            metrics.ACTIVE_STREAMS.dec()
        self.job.stats.sent_chunks = 1
        self._report("completed", None)
        wall = time.perf_counter() - self.started
        headers = dict(self.headers)
        headers.update({
            "X-Audio-Bytes": str(len(body)),
            "X-Audio-Seconds": f"{self.audio_seconds:.3f}",
            "X-TTFB-ms": f"{(self._ttfb_ms() or 0.0):.1f}",
            "X-RTF": f"{(wall / self.audio_seconds) if self.audio_seconds else 0.0:.4f}",
        })
        return Response(body, media_type=self.job.content_type, headers=headers)

    async def _collect(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.job.stream_bytes():
            self._mark_first_audio()
            size += len(chunk)
            if self.max_buffered_bytes and size > self.max_buffered_bytes:
                raise SynthesisError(
                    "PAYLOAD_TOO_LARGE",
                    f"The audio exceeds {self.max_buffered_bytes // 2**20} MiB, the most a non-streaming response "
                    "holds; send stream=true for long audio.", "stream")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _prefetch(self, source: AsyncIterator[bytes]) -> bytes:
        try:
            return await anext(source)
        except StopAsyncIteration:
            return b""
        except SynthesisError as exc:
            code = await self._error_code(exc)
            self._report("failed", code)
            raise ApiError(code, exc.message, param=exc.param) from exc

    async def streaming_response(self, *, sse: bool = False) -> StreamingResponse:
        """Chunked response. Headers go out with the first audio chunk."""
        metrics.ACTIVE_STREAMS.inc()
        source = self.job.stream_bytes()
        try:
            first = await self._prefetch(source)
        except BaseException:
            metrics.ACTIVE_STREAMS.dec()
            await source.aclose()
            raise
        self._mark_first_audio()
        body = self._sse_body(first, source) if sse else self._audio_chunks(first, source)
        headers = dict(self.headers)
        headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        media_type = "text/event-stream" if sse else self.job.content_type
        return GuardedStreamingResponse(body, media_type=media_type, headers=headers,
                                        stall_timeout_s=self.stall_timeout_s)

    async def _paced(self, chunk: bytes) -> None:
        """Optional real-time pacing: never run more than ~1 s ahead of playback."""
        if not self.realtime_pacing or self.first_audio_at is None:
            return
        ahead = self.audio_seconds - (time.perf_counter() - self.first_audio_at)
        if ahead > 1.0:
            await asyncio.sleep(ahead - 1.0)

    async def _audio_chunks(self, first: bytes, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        status, code = "failed", "STREAMING_ERROR"
        try:
            if first:
                self._observe_send(time.perf_counter())
                yield first
            async for chunk in source:
                await self._paced(chunk)
                self._observe_send(time.perf_counter())
                yield chunk
            status, code = "completed", None
        except SynthesisError as exc:
            code = await self._error_code(exc)
            logger.warning("stream ended early", extra={"error_code": code})
        except (asyncio.CancelledError, GeneratorExit):
            status, code = "disconnected", None
            raise
        finally:
            self.final_status = status
            metrics.ACTIVE_STREAMS.dec()
            try:
                await source.aclose()  # a second cancellation (a hang-up during pacing) can interrupt this ...
            finally:
                self._report(status, code)  # ... but never the release of the slot and the accounting

    async def _sse_body(self, first: bytes, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in self._audio_chunks(first, source):
            event = {"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode("ascii")}
            yield f"data: {json.dumps(event)}\n\n".encode()
        if self.final_status != "completed":
            error = {"type": "error", "error": {"code": self.job.error.code if self.job.error else "STREAMING_ERROR",
                                                "message": "The audio stream ended early."}}
            yield f"data: {json.dumps(error)}\n\n".encode()
            return
        usage = {"input_tokens": len(self.job.request.text), "output_tokens": self.job.stats.llm_tokens,
                 "total_tokens": len(self.job.request.text) + self.job.stats.llm_tokens}
        yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n".encode()


class ClientStalled(Exception):
    """The reader has not accepted bytes for longer than the stall timeout."""


# Body messages go to the socket in pieces of at most this size, each with its own stall deadline: the guard
# then measures progress (a reader must accept this much per stall timeout), not how long one large item
# (up to seconds of audio) takes, so a slow but steady reader is never cut off.
SEND_PIECE_BYTES = 16 * 1024


class GuardedStreamingResponse(StreamingResponse):
    """A StreamingResponse that cuts off a reader that accepts less than SEND_PIECE_BYTES in `stall_timeout_s`.

    uvicorn's `send` blocks while the transport's write buffer is full (flow control), so a stalled reader
    shows up as a `send` that does not return. Closing the body iterator cancels the synthesis job.
    """

    def __init__(self, *args: Any, stall_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stall_timeout_s = stall_timeout_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def guarded_send(message: Any) -> None:
            try:
                body = message.get("body", b"") if message.get("type") == "http.response.body" else b""
                if len(body) <= SEND_PIECE_BYTES:
                    await asyncio.wait_for(send(message), self.stall_timeout_s)
                    return
                more = message.get("more_body", False)
                for start in range(0, len(body), SEND_PIECE_BYTES):
                    piece = body[start : start + SEND_PIECE_BYTES]
                    last = start + SEND_PIECE_BYTES >= len(body)
                    await asyncio.wait_for(
                        send({"type": "http.response.body", "body": piece, "more_body": more or not last}),
                        self.stall_timeout_s,
                    )
            except TimeoutError:
                metrics.STALLED_CLIENTS.inc()
                logger.warning("client stalled; cutting it off", extra={"stall_timeout_s": self.stall_timeout_s})
                await self.body_iterator.aclose()  # type: ignore[union-attr]
                raise ClientStalled from None

        try:
            await super().__call__(scope, receive, guarded_send)
        except ClientStalled:
            # Expected, already logged and counted: no traceback. The server closes the unfinished response.
            return
