"""WebSocket synthesis sessions: text that arrives in pieces goes in, audio frames and JSON events come out.

Independent of the web framework. The API layer authenticates, parses client messages and calls a `WsSession`;
the session reaches the socket only through an `Outbox` (one writer task over anything with async `send_text` /
`send_bytes`, such as Starlette's WebSocket) and limits/accounting only through an `UtteranceGate`.

Per connection, utterances run one after another (start ... end, start ... end); a `start` may follow an `end`
before the previous utterance's audio is finished, and then waits its turn. Per utterance, text pieces are
buffered by a `processing.segmenter.TextSegmenter` and cut at sentence boundaries; each cut is normalised like HTTP text
(`plan_text`) and fed to one incremental `SynthesisJob`, so every cut speaks with the first cut's voice and the
joins get the same crossfade as long HTTP text, while audio of earlier cuts is already on its way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from processing.segmenter import TextSegmenter
from services.pipeline.synthesis import SynthesisError, SynthesisJob, SynthesisRequest
from services.pipeline.text_plan import plan_text
from services.sessions.ws_outbox import Outbox
from services.usage.accounting import RequestAccounting, RequestReport
from shared.logging import request_id_var

if TYPE_CHECKING:
    from services.deployment.runtime import ModelRuntime

logger = logging.getLogger("services.sessions.ws_session")

# Utterances one connection may have unfinished at once (they run one after another).
MAX_QUEUED_UTTERANCES = 4


# ---------------------------------------------------------------------------------------------- utterances
class UtteranceGate(Protocol):
    """Limits and settlement per utterance (services.access.AccessGate implements it with the access services)."""

    key_id: str | None  # the key the connection authenticated with (logged with each utterance)

    async def charge_text(self, utterance_id: str, characters: int) -> None:
        """Before text is accepted (credits). Raise SynthesisError to refuse the piece."""

    async def admit(self, utterance_id: str) -> None:
        """Before synthesis starts (rate limit, concurrency slot). Raise SynthesisError to refuse."""

    def settle(self, utterance_id: str, report: RequestReport | None) -> None:
        """Exactly once per utterance, whatever happened (report None: it was never admitted, nothing was
        synthesised); must not raise and must not block."""


class OpenGate:
    """No limits, no settlement (tests; servers without access services)."""

    key_id: str | None = None

    async def charge_text(self, utterance_id: str, characters: int) -> None:
        return None

    async def admit(self, utterance_id: str) -> None:
        return None

    def settle(self, utterance_id: str, report: RequestReport | None) -> None:
        return None


class Utterance:
    """One start ... end: the text buffer, the incremental job, and the timings and counts of its audio."""

    def __init__(self, runtime: ModelRuntime, request: SynthesisRequest, *, max_text_chars: int) -> None:
        settings = runtime.settings
        self.request = request
        self.id = request.request_id
        self.model_version = runtime.model_version
        self.max_text_chars = max_text_chars
        self.threshold = settings.chunking_threshold_chars
        self.target = settings.chunk_target_chars
        self.segmenter = TextSegmenter(threshold=self.threshold, target=self.target)
        self.job = SynthesisJob(runtime, request, incremental=True)
        self.text_parts: list[str] = []
        self.characters = 0
        self.text_open = True
        self.cancelled = False
        self.stop_reason: str | None = None  # cancelled | disconnected, set before the task is cancelled
        self.has_work = asyncio.Event()  # set once text was fed or the utterance ended
        self.admitted_at: float | None = None
        self.accounting: RequestAccounting | None = None  # from admission on
        self.audio_bytes = 0  # handed to the outbox
        self.chunks = 0
        self.sent_bytes = 0  # on the wire (after a cancel, queued frames are dropped)
        self.sent_chunks = 0
        self.status: str | None = None  # completed | failed | cancelled | disconnected | refused, once finished
        self.report: RequestReport | None = None

    # ------------------------------------------------------------------ text
    def add_text(self, piece: str) -> int:
        """Buffer a piece; feed the parts that are ready. Returns how many text chunks were fed."""
        self.check_room(len(piece))
        self.text_parts.append(piece)
        self.characters += len(piece)
        return self._feed(self.segmenter.push(piece))

    def check_room(self, characters: int) -> None:
        if self.characters + characters > self.max_text_chars:
            raise SynthesisError(
                "TEXT_TOO_LONG",
                f"Invalid 'text': an utterance holds at most {self.max_text_chars} characters "
                f"({self.characters} received so far); send 'end' and start a new utterance.",
                "text",
            )

    def flush(self) -> int:
        """Synthesise everything buffered now, sentence end or not."""
        return self._feed(self.segmenter.flush())

    def end(self) -> None:
        self.flush()
        self.text_open = False
        self.job.close_text()
        self.has_work.set()

    @property
    def text_chunks(self) -> int:
        return len(self.job.plan.chunks)

    def _feed(self, parts: list[str]) -> int:
        fed = 0
        for part in parts:
            try:
                plan = plan_text(
                    part,
                    normalize=self.request.normalize,
                    chunking=self.request.chunking,
                    threshold=self.threshold,
                    target=self.target,
                    unknown_tags=self.request.unknown_tags,
                )
            except SynthesisError:
                continue  # nothing speakable in this part (only tags or punctuation)
            for chunk in plan.chunks:
                self.job.feed_text(chunk)
                fed += 1
        if fed:
            self.has_work.set()
        return fed

    # ------------------------------------------------------------------ audio accounting
    def admit(self, gate: UtteranceGate) -> None:
        """Synthesis may start: from here on the accounting counts it and settles it through the gate."""
        self.admitted_at = time.perf_counter()
        self.accounting = RequestAccounting(self.job, transport="websocket", clock_origin=self.admitted_at,
                                            settle=lambda report: gate.settle(self.id, report))

    def note_audio(self, data: bytes) -> None:
        """Count one audio chunk handed to the outbox."""
        self.chunks += 1
        self.audio_bytes += len(data)
        if self.accounting is not None:
            self.accounting.first_audio()
            self.accounting.audio_sent()

    def delivered(self, size: int) -> None:
        self.sent_bytes += size
        self.sent_chunks += 1

    @property
    def audio_seconds(self) -> float:
        return self.job.stats.output_samples / float(self.request.sample_rate)

    @property
    def ttfb_ms(self) -> float | None:
        return None if self.accounting is None else self.accounting.ttfb_ms

    def finish(self, status: str, error: SynthesisError | None) -> None:
        """Freeze the outcome once (the job's request and plan get the whole text for the request log); an
        admitted utterance is accounted and settled through its accounting."""
        if self.status is not None:
            return
        self.status = status
        text = "".join(self.text_parts)
        self.job.request = replace(self.job.request, text=text)
        self.job.plan = replace(self.job.plan, text=text, chunked=self.text_chunks > 1)
        if self.accounting is not None:
            end = status if status in ("completed", "failed", "cancelled") else "disconnected"
            self.report = self.accounting.finish(end, error.code if error else None,  # type: ignore[arg-type]
                                                 chunks_sent=self.chunks, bytes_sent=self.audio_bytes)

    # ------------------------------------------------------------------ events
    def started_event(self) -> dict[str, Any]:
        r = self.request
        return {
            "type": "started",
            "utterance_id": self.id,
            "request_id": self.id,
            "voice": r.voice.id,
            "format": r.audio_format,
            "sample_rate": r.sample_rate,
            "content_type": self.job.content_type,
            "sr_applied": self.job.sr_applied,
            "model_version": self.model_version,
            **self._normalized(),
        }

    def _normalized(self) -> dict[str, Any]:
        """With `normalize_verbose`: what the model is asked to speak (so far, in `started`; all of it in `done`)."""
        if not self.request.normalize_verbose:
            return {}
        return {"normalized_text": " ".join(self.job.plan.chunks)}

    def progress_event(self) -> dict[str, Any]:
        return {
            "type": "progress",
            "utterance_id": self.id,
            "chunks": self.chunks,
            "audio_bytes": self.audio_bytes,
            "audio_seconds": round(self.audio_seconds, 3),
        }

    def cancelled_event(self) -> dict[str, Any]:
        return {
            "type": "cancelled",
            "utterance_id": self.id,
            "request_id": self.id,
            "audio_bytes": self.sent_bytes,
            "chunks": self.sent_chunks,
        }

    def summary(self) -> dict[str, Any]:
        """The same figures the HTTP response headers carry, plus counts."""
        ttfb = self.ttfb_ms
        rtf = self.report.rtf if self.report is not None else None
        return {
            "utterance_id": self.id,
            "request_id": self.id,
            "audio_seconds": round(self.audio_seconds, 3),
            "audio_bytes": self.audio_bytes,
            "chunks": self.chunks,
            "ttfb_ms": None if ttfb is None else round(ttfb, 1),
            "rtf": None if rtf is None else round(rtf, 4),
            "text_chunked": self.text_chunks > 1,
            "text_chunks": self.text_chunks,
            "characters": self.characters,
            "sr_applied": self.job.sr_applied,
            "model_version": self.model_version,
            "format": self.request.audio_format,
            "sample_rate": self.request.sample_rate,
            **self._normalized(),
        }


ErrorFormatter = Callable[[str, str, "str | None"], dict[str, Any]]


def plain_error(code: str, message: str, param: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "param": param, "code": code}}


class WsSession:
    """One connection's utterances. Every public method answers the client itself (events or an `error`)."""

    def __init__(
        self,
        runtime: ModelRuntime,
        outbox: Outbox,
        gate: UtteranceGate | None = None,
        *,
        connection_id: str,
        max_text_chars: int | None = None,
        progress_every: int = 10,
        format_error: ErrorFormatter = plain_error,
        on_job: Callable[[SynthesisJob], None] | None = None,
    ) -> None:
        """`on_job`: told of each utterance's job when it is created (continuity remembers it)."""
        self.runtime = runtime
        self.on_job = on_job
        self.outbox = outbox
        self.gate: UtteranceGate = gate or OpenGate()
        self.connection_id = connection_id
        self.max_text_chars = max_text_chars or runtime.settings.max_text_chars
        self.progress_every = max(1, progress_every)
        self.format_error = format_error
        self._running: dict[str, tuple[Utterance, asyncio.Task[None]]] = {}
        self._current: Utterance | None = None  # the utterance accepting text
        self._tail: asyncio.Task[None] | None = None  # the newest utterance's task; the next one waits for it
        self._count = 0
        self.closed = False

    # ------------------------------------------------------------------ state
    @property
    def open_utterance(self) -> Utterance | None:
        u = self._current
        return u if u is not None and u.text_open else None

    @property
    def working(self) -> bool:
        """An utterance has text it has not finished synthesising (the idle clock must not run)."""
        for u, _ in self._running.values():
            if u.admitted_at is None:
                continue
            stats = u.job.stats
            if stats.text_chunks_done < stats.text_chunks or not u.text_open:
                return True
        return False

    @property
    def utterance_count(self) -> int:
        return self._count

    def utterances(self) -> list[Utterance]:
        return [u for u, _ in self._running.values()]

    # ------------------------------------------------------------------ client messages
    async def start(
        self, request: SynthesisRequest, *, text: str | None = None, end: bool = False
    ) -> Utterance | None:
        current = self.open_utterance
        if current is not None:
            await self.reject(
                "VALIDATION_ERROR",
                f"Utterance {current.id} is still open; send 'end' or 'cancel' before the next 'start'.",
                "type",
            )
            return None
        if len(self._running) >= MAX_QUEUED_UTTERANCES:
            await self.reject(
                "TOO_MANY_CONCURRENT_REQUESTS",
                f"{len(self._running)} utterances are still "
                "unfinished on this connection; wait for a 'done' before the next 'start'.",
                "type",
            )
            return None
        self._count += 1
        request = replace(request, request_id=f"{self.connection_id}-u{self._count}")
        try:
            u = Utterance(self.runtime, request, max_text_chars=self.max_text_chars)
        except (ValueError, SynthesisError) as exc:
            await self.reject("VALIDATION_ERROR", f"Cannot synthesise with these settings: {exc}", None)
            return None
        if self.on_job is not None:
            self.on_job(u.job)
        task = asyncio.create_task(self._run(u, self._tail), name=f"ws-{u.id}")
        self._running[u.id] = (u, task)
        task.add_done_callback(lambda _t, uid=u.id: self._running.pop(uid, None))
        self._current, self._tail = u, task
        if text:
            await self.text(text)
        if end:
            await self.end()
        return u

    async def text(self, piece: str) -> None:
        u = await self._require_open("text")
        if u is None:
            return
        try:
            u.check_room(len(piece))
            await self.gate.charge_text(u.id, len(piece))
            u.add_text(piece)
        except SynthesisError as exc:
            await self.reject(exc.code, exc.message, exc.param, utterance_id=u.id)

    async def flush(self) -> None:
        u = await self._require_open("flush")
        if u is None:
            return
        u.flush()
        await self.outbox.reply(
            {
                "type": "flushed",
                "utterance_id": u.id,
                "text_chunks": u.text_chunks,
                "characters": u.characters,
            }
        )

    async def end(self) -> None:
        u = await self._require_open("end")
        if u is not None:
            u.end()

    async def cancel(self) -> None:
        """Stop every unfinished utterance now: queued audio is dropped and generation aborted."""
        targets = [(u, task) for u, task in self._running.values() if not task.done()]
        await self._stop(targets, "cancelled")
        for u, _ in targets:
            await self.outbox.reply(u.cancelled_event())
        if not targets:
            await self.outbox.reply({"type": "cancelled", "utterance_id": None})

    async def ping(self, message_id: Any = None) -> None:
        reply: dict[str, Any] = {"type": "pong", "server_time": round(time.time(), 3)}
        if message_id is not None:
            reply["id"] = message_id
        await self.outbox.reply(reply)

    async def reject(
        self, code: str, message: str, param: str | None = None, *, utterance_id: str | None = None
    ) -> None:
        """An `error` answering a client message; the connection stays usable."""
        await self.outbox.reply(self._error_event(code, message, param, utterance_id))

    async def close(self) -> None:
        """The socket is gone: abort all synthesis (nothing more is sent)."""
        self.closed = True
        await self._stop(list(self._running.values()), "disconnected")

    # ------------------------------------------------------------------ internals
    async def _require_open(self, kind: str) -> Utterance | None:
        u = self.open_utterance
        if u is None:
            await self.reject(
                "VALIDATION_ERROR", f"No open utterance for '{kind}'; send 'start' first.", "type"
            )
        return u

    async def _stop(self, targets: list[tuple[Utterance, asyncio.Task[None]]], reason: str) -> None:
        for u, task in targets:
            u.cancelled = True  # the writer drops what is still queued for it
            u.text_open = False
            if u.stop_reason is None:
                u.stop_reason = reason
            task.cancel()
        if targets:
            await asyncio.wait([task for _, task in targets])
        if self._current is not None and self._current.cancelled:
            self._current = None
        if self._tail is not None and self._tail.done():
            self._tail = None

    def _error_event(
        self, code: str, message: str, param: str | None, utterance_id: str | None
    ) -> dict[str, Any]:
        return {"type": "error", **self.format_error(code, message, param), "utterance_id": utterance_id}

    async def _run(self, u: Utterance, previous: asyncio.Task[None] | None) -> None:
        token = request_id_var.set(u.id)
        status, error = "refused", None
        try:
            if previous is not None:
                await asyncio.wait([previous])
            await u.has_work.wait()
            if u.text_chunks == 0:
                raise SynthesisError(
                    "VALIDATION_ERROR",
                    "Invalid 'text': the utterance ended with nothing to speak; send 'text' before 'end'.",
                    "text",
                )
            await self.gate.admit(u.id)
            u.admit(self.gate)
            status = "failed"
            assert u.accounting is not None
            u.accounting.started(text_length=u.characters, key_id=self.gate.key_id,
                                 connection_id=self.connection_id)
            await self.outbox.send(u.started_event(), owner=u)
            await self._stream(u)
            status = "completed"
            u.finish(status, None)
            await self.outbox.send({"type": "done", **u.summary()}, owner=u)
        except SynthesisError as exc:
            error = exc
            await self.outbox.send(self._error_event(exc.code, exc.message, exc.param, u.id), owner=u)
        except asyncio.CancelledError:
            status = u.stop_reason or "disconnected"
            raise
        except Exception:  # noqa: BLE001 - one utterance's bug must not end the connection
            logger.exception("websocket utterance failed")
            error = SynthesisError("INTERNAL_ERROR", "An internal error occurred; it has been logged.")
            await self.outbox.send(self._error_event(error.code, error.message, None, u.id), owner=u)
        finally:
            u.text_open = False  # text sent after the end (of any kind) gets "no open utterance"
            try:
                u.finish(status, error)  # an admitted utterance settles through its accounting
                if u.accounting is None:
                    self.gate.settle(u.id, None)
            except Exception:  # noqa: BLE001 - accounting must never break the connection
                logger.exception("utterance accounting failed")
            request_id_var.reset(token)

    async def _stream(self, u: Utterance) -> None:
        source = u.job.stream_bytes()
        try:
            async for chunk in source:
                u.note_audio(chunk)
                await self.outbox.audio(chunk, owner=u)
                if u.chunks % self.progress_every == 0:
                    await self.outbox.send(u.progress_event(), owner=u)
        finally:
            await source.aclose()  # cancels the producer, which aborts generation
