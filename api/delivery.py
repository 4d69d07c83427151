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
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi.responses import JSONResponse, Response, StreamingResponse

from api.client_gone import wait_for_disconnect
from api.errors import ApiError
from api.timed_delivery import event_json, json_lines
from services.access.entrance import AccountedSpeech
from services.pipeline.gpu_faults import GpuFaultDetector
from services.pipeline.speech import SpeechService
from services.pipeline.synthesis import SynthesisError, SynthesisJob
from services.pipeline.timestamps import TimestampsEvent
from services.usage.accounting import EndStatus, RequestAccounting
from shared import metrics

logger = logging.getLogger("api.delivery")
# How long an answer waits for its record to reach the spool (credits settle first; an fsync'd append is ~1 ms).
RECORD_WAIT_S = 2.0

# Jobs whose audio is being delivered now; the stream-queue gauges are read from them at scrape time.
_LIVE_JOBS: weakref.WeakSet[SynthesisJob] = weakref.WeakSet()


def refresh_queue_gauges() -> None:
    """Set the queue depth (sum over live streams) and fill ratio (fullest queue) gauges; call before a scrape."""
    queues = [job.queue for job in list(_LIVE_JOBS)]
    metrics.QUEUE_DEPTH.set(sum(q.qsize() for q in queues))
    metrics.QUEUE_FILL_RATIO.set(max((q.qsize() / q.maxsize for q in queues if q.maxsize > 0), default=0.0))


# Builds a complete answer with timestamps from a Delivery's job (api.timed_delivery.complete_json, bound).
TimedAnswer = Callable[["Delivery"], Awaitable[dict[str, Any]]]
# A streamed answer's own framing (a dialect's): its media type, and the body made from the audio pieces and
# TimestampsEvent items in order (the delivery's `final_status` says how the stream ended).
Framing = tuple[str, Callable[[AsyncIterator[Any], "Delivery"], AsyncIterator[bytes]]]


class Delivery:
    """Wraps one job: streams or collects its audio and tells the request's accounting what happened."""

    def __init__(
        self,
        job: SynthesisJob,
        accounting: RequestAccounting,
        *,
        headers: dict[str, str],
        stall_timeout_s: float = 30.0,
        realtime_pacing: bool = False,
        gpu_faults: GpuFaultDetector | None = None,
        max_buffered_bytes: int = 0,
    ) -> None:
        self.job = job
        self.accounting = accounting
        self.max_buffered_bytes = max_buffered_bytes  # non-streaming responses only; 0 = no cap
        self.headers = headers
        self.stall_timeout_s = stall_timeout_s
        self.realtime_pacing = realtime_pacing
        self.gpu_faults = gpu_faults
        self.final_status: str | None = None
        _LIVE_JOBS.add(job)

    @classmethod
    def of(cls, accounted: AccountedSpeech, service: SpeechService, headers: dict[str, str]) -> Delivery:
        """The delivery of an accounted job (services/access/entrance.py), with the deployment's stream settings."""
        settings = service.settings
        return cls(
            accounted.job,
            accounted.accounting,
            headers=headers,
            stall_timeout_s=settings.stream.send_stall_timeout_s,
            realtime_pacing=settings.stream.realtime_pacing,
            gpu_faults=service.gpu_faults,
            max_buffered_bytes=settings.limits.max_buffered_audio_mb * 2**20,
        )

    @property
    def audio_seconds(self) -> float:
        return self.accounting.audio_seconds

    def _report(self, status: EndStatus, error_code: str | None) -> None:
        _LIVE_JOBS.discard(self.job)
        self.accounting.finish(status, error_code)

    async def _recorded(self) -> None:
        """Wait (bounded) until the finished request's record is in the durable spool, so an answer the client
        received is never lost to a kill -9 just after it; past the bound the record still follows."""
        settling = self.accounting.settling
        if settling is not None:
            await asyncio.wait({settling}, timeout=RECORD_WAIT_S)

    async def _error_code(self, exc: SynthesisError) -> str:
        """A GPU fault also marks the container unhealthy (and, on Modal, asks to be replaced)."""
        if self.gpu_faults is None:
            return exc.code
        return await self.gpu_faults.handle_async(exc) or exc.code

    def _mark_first_audio(self) -> None:
        self.accounting.first_audio()

    # ------------------------------------------------------------------ responses
    async def complete_response(self, receive: Any = None, *, timed: TimedAnswer | None = None) -> Response:
        """Non-streaming: the whole file, with exact sizes and the timing headers; with `timed` (timestamps asked
        for), the JSON object it builds from the job's audio and spans instead.

        `receive` (the ASGI receive of a request whose body was read): a client that hangs up while the file is
        being made cancels the work, as a streaming client does."""
        collect = asyncio.ensure_future(self._collect() if timed is None else timed(self))
        watch = asyncio.ensure_future(wait_for_disconnect(receive)) if receive is not None else None
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
        self.job.stats.sent_chunks = 1
        self._report("completed", None)
        await self._recorded()
        report = self.accounting.report
        headers = dict(self.headers)
        if timed is not None:
            track = self.job.timestamps
            headers.update(
                {
                    "X-Audio-Seconds": f"{self.audio_seconds:.3f}",
                    **guard_headers(self.job),
                    "X-Timestamps-Status": "fallback" if track is not None and track.fallbacks else "ok",
                }
            )
            return JSONResponse(body, headers=headers)
        headers.update(
            {
                "X-Audio-Bytes": str(len(body)),
                "X-Audio-Seconds": f"{self.audio_seconds:.3f}",
                "X-TTFB-ms": f"{(self.accounting.ttfb_ms or 0.0):.1f}",
                "X-RTF": f"{(report.rtf if report is not None and report.rtf is not None else 0.0):.4f}",
                **guard_headers(self.job),
            }
        )
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
                    "holds; send stream=true for long audio.",
                    "stream",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _prefetch(self, source: AsyncGenerator[Any, None]) -> Any:
        try:
            return await anext(source)
        except StopAsyncIteration:
            return b""
        except SynthesisError as exc:
            code = await self._error_code(exc)
            self._report("failed", code)
            raise ApiError(code, exc.message, param=exc.param) from exc

    async def streaming_response(
        self, receive: Any = None, *, sse: bool = False, framing: Framing | None = None
    ) -> Response:
        """Chunked response. Headers go out with the first audio chunk.

        `receive` (the ASGI receive of a request whose body was read): a client that hangs up before the first audio
        cancels the work at once; nothing else listens then (the response, which does, starts with that audio)."""
        kind = self.job.request.timestamps
        # With timestamps asked for, TimestampsEvent items travel in order between the audio pieces.
        source = self.job.stream_events() if kind else self.job.stream_bytes()
        prefetch = asyncio.ensure_future(self._prefetch(source))
        watch = asyncio.ensure_future(wait_for_disconnect(receive)) if receive is not None else None
        try:
            if watch is not None:
                await asyncio.wait({prefetch, watch}, return_when=asyncio.FIRST_COMPLETED)
                if not prefetch.done():  # the client left first
                    hung_up_at = time.perf_counter()
                    prefetch.cancel()
                    await asyncio.gather(prefetch, return_exceptions=True)
                    await source.aclose()
                    self._report("disconnected", None)
                    log_stopped(hung_up_at)
                    return Response(status_code=499)  # nobody reads it
            first = await prefetch
        except BaseException:
            prefetch.cancel()
            await asyncio.gather(prefetch, return_exceptions=True)
            await source.aclose()
            if not self.accounting.finished:
                self._report("disconnected", None)
            raise
        finally:
            if watch is not None and not watch.done():
                watch.cancel()
        self._mark_first_audio()
        if framing is not None:
            media_type, frame = framing
            body = frame(self._audio_chunks(first, source), self)
        elif sse:
            body, media_type = self._sse_body(first, source), "text/event-stream"
        elif kind:
            body, media_type = (
                json_lines(self._audio_chunks(first, source), kind, self),
                "application/x-ndjson",
            )
        else:
            body, media_type = self._audio_chunks(first, source), self.job.content_type
        headers = dict(self.headers)
        headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **guard_headers(self.job)})
        return GuardedStreamingResponse(
            body, media_type=media_type, headers=headers, stall_timeout_s=self.stall_timeout_s
        )

    async def _paced(self, chunk: bytes) -> None:
        """Optional real-time pacing: never run more than ~1 s ahead of playback."""
        if not self.realtime_pacing or self.accounting.first_audio_at is None:
            return
        ahead = self.audio_seconds - (time.perf_counter() - self.accounting.first_audio_at)
        if ahead > 1.0:
            await asyncio.sleep(ahead - 1.0)

    async def _audio_chunks(self, first: Any, source: AsyncGenerator[Any, None]) -> AsyncIterator[Any]:
        """Audio bytes (and, when asked for, TimestampsEvent items, passed through as they are)."""
        status: EndStatus = "failed"
        code: str | None = "STREAMING_ERROR"
        try:
            for chunk in [first] if first else []:
                if isinstance(chunk, bytes):
                    self.accounting.audio_sent()
                yield chunk
            async for chunk in source:
                if isinstance(chunk, bytes):
                    await self._paced(chunk)
                    self.accounting.audio_sent()
                yield chunk
            status, code = "completed", None
            self._report(status, code)  # the record is spooled before the body ends (finish runs once)
            await self._recorded()
        except SynthesisError as exc:
            code = await self._error_code(exc)
            logger.warning("stream ended early", extra={"error_code": code})
        except (asyncio.CancelledError, GeneratorExit):
            status, code = "disconnected", None
            raise
        finally:
            self.final_status = status
            try:
                await (
                    source.aclose()
                )  # a second cancellation (a hang-up during pacing) can interrupt this ...
            finally:
                self._report(status, code)  # ... but never the release of the slot and the accounting

    async def _sse_body(self, first: Any, source: AsyncGenerator[Any, None]) -> AsyncIterator[bytes]:
        async for chunk in self._audio_chunks(first, source):
            if isinstance(chunk, TimestampsEvent):  # an event type OpenAI's clients skip
                timed = {
                    **event_json(chunk, self.job.request.timestamps or "word"),
                    "type": "speech.timestamps",
                }
                yield f"data: {json.dumps(timed, ensure_ascii=False)}\n\n".encode()
                continue
            event = {"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode("ascii")}
            yield f"data: {json.dumps(event)}\n\n".encode()
        if self.final_status != "completed":
            error = {
                "type": "error",
                "error": {
                    "code": self.job.error.code if self.job.error else "STREAMING_ERROR",
                    "message": "The audio stream ended early.",
                },
            }
            yield f"data: {json.dumps(error)}\n\n".encode()
            return
        usage = {
            "input_tokens": len(self.job.request.text),
            "output_tokens": self.job.stats.llm_tokens,
            "total_tokens": len(self.job.request.text) + self.job.stats.llm_tokens,
        }
        yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n".encode()


def guard_headers(job: SynthesisJob) -> dict[str, str]:
    """What the generation guards did: text chunks generated again and streamed chunks cut. A stream's headers
    leave with its first audio, so they count what happened before it (the request log has the whole count)."""
    return {"X-Chunks-Retried": str(job.stats.chunks_retried), "X-Chunks-Cut": str(job.stats.chunks_cut)}


class ClientStalled(Exception):
    """The reader has not accepted bytes for longer than the stall timeout."""


# Body messages go to the socket in pieces of at most this size, each with its own stall deadline: the guard
# then measures progress (a reader must accept this much per stall timeout), not how long one large item
# (up to seconds of audio) takes, so a slow but steady reader is never cut off. 64 KB is 0.7 s of 48 kHz pcm (2 s
# at 16 kHz) against a 30 s stall timeout; each piece passes every middleware's send wrapper, and 16 KB pieces
# made a 48 kHz stream's chunk 8 sends (docs/benchmarks.md, "The API path at 48 kHz").
SEND_PIECE_BYTES = 64 * 1024


def log_stopped(hung_up_at: float) -> None:
    """A streamed answer's client hung up: `stream_stopped` with `stop_ms` from the hang-up reaching the server to
    the end of the job's work (the WebSocket sessions log `utterance_stopped` the same way)."""
    logger.info(
        "stream_stopped",
        extra={
            "event": "stream_stopped",
            "reason": "disconnected",
            "stop_ms": round((time.perf_counter() - hung_up_at) * 1000, 1),
        },
    )


class GuardedStreamingResponse(StreamingResponse):
    """A StreamingResponse that cuts off a reader that accepts less than SEND_PIECE_BYTES in `stall_timeout_s`.

    uvicorn's `send` blocks while the transport's write buffer is full (flow control), so a stalled reader
    shows up as a `send` that does not return. Closing the body iterator cancels the synthesis job.
    """

    def __init__(self, *args: Any, stall_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stall_timeout_s = stall_timeout_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        hung_up_at: list[float] = []
        finished: list[bool] = []  # the last body message went out: a later hang-up stopped nothing

        async def guarded_send(message: Any) -> None:
            if message.get("type") == "http.response.body" and not message.get("more_body", False):
                finished.append(True)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for wraps every send in a new task (one more
            # event-loop pass per piece); one deadline, moved on after each piece, does the same job.
            loop = asyncio.get_running_loop()
            try:
                body = message.get("body", b"") if message.get("type") == "http.response.body" else b""
                async with asyncio.timeout_at(loop.time() + self.stall_timeout_s) as deadline:
                    if len(body) <= SEND_PIECE_BYTES:
                        await send(message)
                        return
                    more = message.get("more_body", False)
                    for start in range(0, len(body), SEND_PIECE_BYTES):
                        piece = body[start : start + SEND_PIECE_BYTES]
                        last = start + SEND_PIECE_BYTES >= len(body)
                        deadline.reschedule(loop.time() + self.stall_timeout_s)
                        await send(
                            {"type": "http.response.body", "body": piece, "more_body": more or not last}
                        )
            except TimeoutError:
                metrics.STALLED_CLIENTS.inc()
                logger.warning(
                    "client stalled; cutting it off", extra={"stall_timeout_s": self.stall_timeout_s}
                )
                close = getattr(self.body_iterator, "aclose", None)  # ours are async generators
                if close is not None:
                    await close()  # cancels the synthesis job
                raise ClientStalled from None

        async def watched_receive() -> Any:
            message = await receive()
            if message.get("type") == "http.disconnect" and not hung_up_at:
                hung_up_at.append(time.perf_counter())
            return message

        try:
            await super().__call__(scope, watched_receive, guarded_send)
        except ClientStalled:
            # Expected, already logged and counted: no traceback. The server closes the unfinished response.
            return
        finally:
            if (
                hung_up_at and not finished
            ):  # a hang-up mid-stream: the body (and with it the job) is closed by now
                log_stopped(hung_up_at[0])
