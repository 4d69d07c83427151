"""Streaming synthesis sessions: text that arrives in pieces goes in, audio and events come out. One core for every
streaming dialect (our WebSocket, ElevenLabs multi-stream-input, Cartesia /tts/websocket).

Independent of the web framework and of the wire format. The API layer authenticates, parses client messages and
calls a `WsSession`, which reaches the socket only through an `Outbox` (one writer task, bounded: a slow reader
pauses synthesis), writes events through a `SessionWire` (wire.py) and reaches limits only through an `UtteranceGate`.

An utterance (a native `start ... end`, an ElevenLabs context, a Cartesia context_id) has a context id (None for
the native protocol). Text pieces are buffered by a `processing.segmenter.TextSegmenter` and cut at sentence ends
(or on flush); each cut is normalised like HTTP text (`plan_text`) and fed to one incremental `SynthesisJob`, so
every cut speaks with the first cut's voice and the joins get the same crossfade as long HTTP text, while audio of
earlier cuts is already on its way. `serial=True` (native) runs utterances one after another; otherwise (dialects)
each context runs as soon as it has text, each admitted and accounted on its own.

Work nobody will hear stops (README, "Barge-in"): an explicit cancel, a closed socket, and, on the dialects' sockets
(`supersede_after_s` set), a context opening while an earlier context of the socket is still unfinished and has
heard nothing from its client for `supersede_after_s`: LiveKit's pooled clients signal a barge-in that way (they send
nothing once a stream's input has ended; Pipecat 1.14 closes the context again, which the route cancels). A context
opening sooner than that after the earlier one's last message is a reply queued on purpose (Pipecat's
`TTSSpeakFrame` right after an LLM turn) and both are spoken. Every stop is logged (`utterance_stopped`,
with `stop_ms` from the client message that revealed it to the end of the utterance's task).

Longer than 500 lines because a connection's utterances share one state (open and running contexts, the serial
tail, the outbox, the idle gauge) that the client's messages, the stops and each utterance's task read and change
together, in the event loop's order; split apart, each piece would reach back into it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from services.pipeline.synthesis import SynthesisError, SynthesisJob, SynthesisRequest
from services.sessions.refused_contexts import RefusedContexts
from services.sessions.utterance import OpenGate, Utterance, UtteranceGate
from services.sessions.wire import Payload, SessionWire
from services.sessions.ws_outbox import Outbox
from services.usage.accounting import Transport
from shared import metrics
from shared.logging import request_id_var

if TYPE_CHECKING:
    from services.pipeline.resources import ModelSource

__all__ = ["MAX_QUEUED_UTTERANCES", "OpenGate", "Utterance", "UtteranceGate", "WsSession"]

logger = logging.getLogger("services.sessions.ws_session")

# Utterances one native connection may have unfinished at once (they run one after another).
MAX_QUEUED_UTTERANCES = 4
# How often an admitted utterance still taking text is checked for having caught up with it (its slot then goes).
IDLE_CHECK_S = 0.05
# How a stop is accounted (request log status): a barge-in or an abandoned context is the client's cancel.
# `ended_by_server` (a stalled reader, a broken message rule) is recorded like a hang-up but charged for the audio
# that reached the socket only (Utterance.billable_characters); so is a context `refused` mid-way (its row carries
# the refusal's 4xx code). `server_error` (our own failure ended the socket) is a 5xx failure: refunded in full.
_STOP_STATUS = {
    "superseded": "cancelled",
    "abandoned": "cancelled",
    "interrupted": "cancelled",
    "refused": "failed",
    "ended_by_server": "disconnected",
    "server_error": "failed",
}
SERVER_ERROR = SynthesisError("INTERNAL_ERROR", "An internal error occurred; it has been logged.")


class WsSession:
    """One connection's utterances. Every public method answers the client itself (through its wire format)."""

    def __init__(
        self,
        models: ModelSource,
        outbox: Outbox,
        gate: UtteranceGate | None = None,
        *,
        connection_id: str,
        max_text_chars: int | None = None,
        progress_every: int = 10,
        wire: SessionWire,
        serial: bool = True,
        max_open: int = 1,
        max_unfinished: int = MAX_QUEUED_UTTERANCES,
        on_job: Callable[[SynthesisJob], None] | None = None,
        supersede_after_s: float | None = None,
        dialect: str = "native",
        transport: Transport = "websocket",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`on_job`: told of each utterance's job when it is created (continuity remembers it).
        `supersede_after_s`: a new context stops earlier unfinished contexts silent this long (None: never).
        `transport`: what the request log records as carrying its utterances (the Wyoming server: "wyoming")."""
        self.transport: Transport = transport
        self.models = models
        self.on_job = on_job
        self.outbox = outbox
        self.gate: UtteranceGate = gate or OpenGate()
        self.connection_id = connection_id
        self.max_text_chars = max_text_chars or models.settings.limits.max_text_chars
        self.progress_every = max(1, progress_every)
        self.wire = wire
        self.serial = serial
        self.max_open = max(1, max_open)
        self.max_unfinished = max(self.max_open, max_unfinished)
        self._running: dict[str, tuple[Utterance, asyncio.Task[None]]] = {}
        self._open: dict[str | None, Utterance] = {}  # utterances accepting text, by context id
        self._tail: asyncio.Task[None] | None = (
            None  # serial: the newest utterance's task; the next waits for it
        )
        self._count = 0
        self.refused = (
            RefusedContexts()
        )  # contexts a refusal ended: their later messages are dropped until closed
        self.closed = False
        self.supersede_after_s = supersede_after_s
        self.dialect = dialect
        self._clock = clock
        self.message_at: float | None = None  # when the client message being handled arrived (stop latency)
        self._idle_shown = (0, 0)  # (idle contexts, idle socket) this session adds to metrics.WS_IDLE
        self._show_idle()

    # ------------------------------------------------------------------ state
    def utterance(self, context_id: str | None = None) -> Utterance | None:
        """The open utterance of this context (accepting text), if any."""
        u = self._open.get(context_id)
        return u if u is not None and u.text_open else None

    @property
    def open_utterance(self) -> Utterance | None:
        return self.utterance(None)

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

    async def finished(self, context_id: str | None) -> None:
        """Wait until every utterance of the context has ended (its last message is queued)."""
        tasks = [task for u, task in self._running.values() if u.context_id == context_id and not task.done()]
        if tasks:
            await asyncio.wait(tasks)

    def note_message(self, at: float | None = None) -> None:
        """A client message arrived (None: it has been handled): the time a stop it causes is measured from."""
        self.message_at = at

    def unfinished(self, context_id: str | None) -> Utterance | None:
        """The context's utterance while it is still running (open or synthesising)."""
        for u, task in self._running.values():
            if u.context_id == context_id and not task.done():
                return u
        return None

    # ------------------------------------------------------------------ client messages
    async def start(
        self,
        request: SynthesisRequest,
        *,
        text: str | None = None,
        end: bool = False,
        context_id: str | None = None,
    ) -> Utterance | None:
        self._forget_closed()
        current = self.utterance(context_id)
        if current is not None or (context_id is None and len(self._open) >= self.max_open):
            current = current or next(iter(self._open.values()))
            await self.reject(
                "VALIDATION_ERROR",
                f"Utterance {current.id} is still open; send 'end' or 'cancel' before the next 'start'.",
                "type",
                context_id=context_id,
            )
            return None
        await self.supersede(context_id)  # the route did so before admission; a no-op by now
        if len(self._open) >= self.max_open or len(self._running) >= self.max_unfinished:
            what = "utterances" if context_id is None else "contexts"
            await self.reject(
                "TOO_MANY_CONCURRENT_REQUESTS",
                f"{len(self._running)} {what} are still unfinished on this connection (at most "
                f"{self.max_unfinished}); wait for one to finish or close one before opening the next.",
                "type",
                context_id=context_id,
            )
            return None
        self._count += 1
        request = replace(request, request_id=f"{self.connection_id}-u{self._count}")
        try:
            u = Utterance(
                self.models.pipeline_resources(),
                request,
                max_text_chars=self.max_text_chars,
                context_id=context_id,
                transport=self.transport,
            )
        except (ValueError, SynthesisError) as exc:
            await self.reject(
                "VALIDATION_ERROR",
                f"Cannot synthesise with these settings: {exc}",
                None,
                context_id=context_id,
            )
            return None
        if self.on_job is not None:
            self.on_job(u.job)
        task = asyncio.create_task(self._run(u, self._tail if self.serial else None), name=f"ws-{u.id}")
        u.last_message_at = u.opened_at = self._clock()
        self._running[u.id] = (u, task)
        task.add_done_callback(partial(self._finished, u.id))
        self._open[context_id] = u
        if self.serial:
            self._tail = task
        self._show_idle()
        if text:
            await self.text(text, context_id=context_id)
        if end:
            await self.end(context_id=context_id)
        return u

    def _finished(self, utterance_id: str, _task: asyncio.Task[None] | None = None) -> None:
        self._running.pop(utterance_id, None)
        self._show_idle()

    async def text(self, piece: str, *, context_id: str | None = None) -> None:
        u = await self._require_open("text", context_id)
        if u is None:
            return
        u.last_message_at = self._clock()
        try:
            u.check_text(piece)
            await self.gate.charge_text(u.id, len(piece))
            if u.add_text(piece):
                await self._resume(u)
        except SynthesisError as exc:
            await self.reject(exc.code, exc.message, exc.param, utterance=u)

    async def flush(self, *, context_id: str | None = None, quiet: bool = False) -> None:
        u = await self._require_open("flush", context_id)
        if u is None:
            return
        u.last_message_at = self._clock()
        try:
            if u.flush():
                await self._resume(u)
        except SynthesisError as exc:
            await self.reject(exc.code, exc.message, exc.param, utterance=u)
            return
        if not quiet:
            await self._reply(self.wire.flushed(u))

    async def end(self, *, context_id: str | None = None) -> None:
        u = await self._require_open("end", context_id)
        if u is not None:
            u.last_message_at = self._clock()
            if u.paused and u.segmenter.pending.strip():  # the end speaks what is buffered: a slot again
                try:
                    await self._resume(u)
                except SynthesisError as exc:
                    await self.reject(exc.code, exc.message, exc.param, utterance=u)
                    return
            u.end()
            self._open.pop(context_id, None)

    async def cancel(
        self,
        *,
        context_id: str | None = None,
        every: bool = True,
        quiet: bool = False,
        reason: str = "cancelled",
    ) -> None:
        """Stop unfinished utterances now (every one, or only `context_id`'s): queued audio is dropped and generation
        aborted. `reason`: cancelled (asked), abandoned (closed before its input ended), interrupted (closed again)."""
        targets = [
            (u, task)
            for u, task in self._running.values()
            if not task.done() and (every or u.context_id == context_id)
        ]
        await self._stop(targets, reason)
        if quiet:
            return
        for u, _ in targets:
            await self._reply(self.wire.cancelled(u))
        if not targets:
            await self._reply(self.wire.cancelled(None))

    async def ping(self, message_id: Any = None) -> None:
        await self._reply(self.wire.pong(message_id))

    async def reject(
        self,
        code: str,
        message: str,
        param: str | None = None,
        *,
        utterance_id: str | None = None,
        utterance: Utterance | None = None,
        context_id: str | None = None,
    ) -> None:
        """An error answering a client message; the connection stays usable. On a dialect's socket a refusal about
        a context ends that context the way its clients understand: the error, then the context's end marker (a
        context still taking text is stopped first; one finishing what it was sent keeps going and ends itself)."""
        if utterance is None and utterance_id is not None:
            utterance = next((u for u, _ in self._running.values() if u.id == utterance_id), None)
        if utterance is not None:
            context_id = utterance.context_id
        ends: list[Payload] = []
        if context_id is not None and not self.serial:
            running = utterance if utterance is not None else self.unfinished(context_id)
            if (
                running is None or running.text_open
            ):  # the refusal ends the context, or keeps it from starting
                self.refused.remember(context_id)
            if running is None:
                ends = context_ended(self.wire, context_id)
            elif running.text_open:
                await self._stop(
                    [(running, task) for u, task in self._running.values() if u is running],
                    "refused",
                    SynthesisError(code, message, param),
                )
                ends = self.wire.ended(running)
        await self.outbox.reply(self.wire.error(code, message, param, utterance, context_id))  # type: ignore[arg-type]
        await self._reply(ends)

    async def close(self, *, by_server: bool = False, server_error: bool = False) -> None:
        """The socket is gone (or the client closed it): abort all synthesis (nothing more is sent). `by_server`:
        the client did not choose to stop (the server ended the socket for a stalled reader or a broken message
        rule, or the connection was lost); either way unfinished utterances are charged for the audio that reached
        the socket only (`Utterance.billable_characters`). `server_error`: our own failure ended the socket: they fail with INTERNAL_ERROR (a 5xx) and are
        charged nothing (docs/api/credits.md)."""
        self.closed = True
        if server_error:
            await self._stop(list(self._running.values()), "server_error", SERVER_ERROR)
        else:
            await self._stop(list(self._running.values()), "ended_by_server" if by_server else "disconnected")
        self._show_idle()

    # ------------------------------------------------------------------ slots only while generating
    async def _resume(self, u: Utterance) -> None:
        """Text was fed to an utterance whose slot went while it waited: take one again (a refusal raises)."""
        if u.paused:
            if hasattr(self.gate, "resume"):
                await self.gate.resume(u.id)
            u.paused = False
            self._show_idle()

    async def _release_when_idle(self, u: Utterance) -> None:
        """While the utterance takes text: once it has generated all it was fed, its concurrency slot goes back
        (an LLM between sentences, a context left open) until more text comes (`_resume`)."""
        stats = u.job.stats
        while u.text_open and not u.cancelled:
            await asyncio.sleep(IDLE_CHECK_S)
            if not u.paused and u.text_open and stats.text_chunks_done >= stats.text_chunks:
                u.paused = True
                if hasattr(self.gate, "pause"):
                    await self.gate.pause(u.id)
                self._show_idle()

    def _show_idle(self) -> None:
        """metrics.WS_IDLE: this socket's open contexts generating nothing, and the socket when none generates."""
        generating = idle = 0
        for u, task in self._running.values():
            if task.done():
                continue
            if u.admitted_at is not None and not u.paused and not u.cancelled:
                generating += 1
            elif u.text_open:
                idle += 1
        shown = (0, 0) if self.closed else (idle, int(generating == 0))
        for kind, before, now in (
            ("context", self._idle_shown[0], shown[0]),
            ("socket", self._idle_shown[1], shown[1]),
        ):
            if now != before:
                metrics.WS_IDLE.labels(self.dialect, kind).inc(now - before)
        self._idle_shown = shown

    # ------------------------------------------------------------------ internals
    async def _reply(self, payloads: list[Payload]) -> None:
        for payload in payloads:
            await self.outbox.reply(payload)  # type: ignore[arg-type]

    async def _send(self, payloads: list[Payload], u: Utterance, audio_to: float | None = None) -> None:
        """`audio_to`: the payloads carry the utterance's audio up to here (marked on the last one)."""
        for i, payload in enumerate(payloads):
            mark = audio_to if i == len(payloads) - 1 else None
            if isinstance(payload, bytes):
                await self.outbox.audio(payload, owner=u, audio_to=mark)
            else:
                await self.outbox.send(payload, owner=u, audio_to=mark)

    def _forget_closed(self) -> None:
        for cid, u in list(self._open.items()):
            if not u.text_open:
                del self._open[cid]

    async def _require_open(self, kind: str, context_id: str | None) -> Utterance | None:
        u = self.utterance(context_id)
        if u is None:
            if context_id is None:
                message = f"No open utterance for '{kind}'; send 'start' first."
            else:
                message = f"No open context '{context_id}' for '{kind}'; open it (send text) first."
            await self.reject("VALIDATION_ERROR", message, "type", context_id=context_id)
        return u

    async def supersede(self, context_id: str | None) -> None:
        """A context opens: earlier unfinished contexts whose client has been silent about them for
        `supersede_after_s` were barged in on (their isFinal/nothing goes out first, their queued audio never). The
        routes call it before admission, so the reply a turn interrupts never counts against it."""
        if context_id is None or self.supersede_after_s is None:
            return
        now = self._clock()
        targets = [
            (u, task)
            for u, task in self._running.values()
            if not task.done()
            and u.context_id != context_id
            and now - u.last_message_at >= self.supersede_after_s
        ]
        if targets:
            await self._stop(targets, "superseded")
            for u, _ in targets:
                await self._reply(self.wire.cancelled(u))

    async def _stop(
        self,
        targets: list[tuple[Utterance, asyncio.Task[None]]],
        reason: str,
        error: SynthesisError | None = None,
    ) -> None:
        """`error`: the code the stopped utterances' rows carry (a refusal's, or INTERNAL_ERROR)."""
        revealed = self.message_at if self.message_at is not None else self._clock()
        for u, task in targets:
            u.cancelled = True  # the writer drops what is still queued for it
            u.text_open = False
            if u.stop_reason is None:
                u.stop_reason, u.stop_error = reason, error
            task.cancel()
        if targets:
            await asyncio.wait([task for _, task in targets])
            for u, _ in targets:
                if u.status is None:  # cancelled before its task ever ran: settle it here (no report)
                    u.finish(u.stop_reason or "disconnected", None)
                    self.gate.settle(u.id, None)
            stop_ms = round((self._clock() - revealed) * 1000, 1)
            for u, _ in targets:
                logger.info(
                    "utterance_stopped",
                    extra={
                        "event": "utterance_stopped",
                        "utterance_id": u.id,
                        "context_id": u.context_id,
                        "reason": u.stop_reason,
                        "stop_ms": stop_ms,
                        "dialect": self.dialect,
                        "audio_seconds": round(u.audio_seconds, 3),
                        "audio_delivered_s": round(u.delivered_s, 3),
                    },
                )
        self._forget_closed()
        if self._tail is not None and self._tail.done():
            self._tail = None

    async def _run(self, u: Utterance, previous: asyncio.Task[None] | None) -> None:
        token = request_id_var.set(u.id)
        status, error = "refused", None
        watcher: asyncio.Task[None] | None = None
        try:
            if previous is not None:
                await asyncio.wait([previous])
            await u.has_work.wait()
            if (
                u.text_chunks == 0 and not self.serial
            ):  # emoji or punctuation only: a short silence, then the end
                status = "empty"
                await self._send([*self.wire.audio(u, u.silence()), *self.wire.done(u)], u)
                return
            if u.text_chunks == 0:
                raise SynthesisError(
                    "VALIDATION_ERROR",
                    "Invalid 'text': the utterance ended with nothing to speak; send 'text' before 'end'.",
                    "text",
                )
            await self.gate.admit(u.id)
            u.admit(self.gate)
            self._show_idle()
            if u.text_open:
                watcher = asyncio.create_task(self._release_when_idle(u), name=f"idle-{u.id}")
            status = "failed"
            assert u.accounting is not None
            u.accounting.started(
                text_length=u.characters, key_id=self.gate.key_id, connection_id=self.connection_id
            )
            await self._send(self.wire.started(u), u)
            try:
                await self._stream(u)
            finally:
                if watcher is not None:
                    watcher.cancel()
            status = "completed"
            u.finish(status, None)
            await self._send(self.wire.done(u), u)
        except SynthesisError as exc:
            error = exc
            await self._send(
                [self.wire.error(exc.code, exc.message, exc.param, u, u.context_id), *self.wire.ended(u)], u
            )
        except asyncio.CancelledError:
            status = _STOP_STATUS.get(u.stop_reason or "", u.stop_reason or "disconnected")
            error = u.stop_error if status == "failed" else None
            raise
        except Exception:  # noqa: BLE001 - one utterance's bug must not end the connection
            logger.exception("websocket utterance failed")
            error = SynthesisError("INTERNAL_ERROR", "An internal error occurred; it has been logged.")
            await self._send(
                [self.wire.error(error.code, error.message, None, u, u.context_id), *self.wire.ended(u)], u
            )
        finally:
            u.text_open = False  # text sent after the end (of any kind) gets "no open utterance"
            if watcher is not None:
                watcher.cancel()
            self._log_end(u, status)
            try:
                u.finish(status, error)  # an admitted utterance settles through its accounting
                if u.accounting is None:
                    self.gate.settle(u.id, None)
            except Exception:  # noqa: BLE001 - accounting must never break the connection
                logger.exception("utterance accounting failed")
            request_id_var.reset(token)

    def _log_end(self, u: Utterance, status: str) -> None:
        """One line per utterance: how it ended and how long its first audio took from its opening message."""
        first = None if u.first_audio_at is None else round((u.first_audio_at - u.opened_at) * 1000, 1)
        logger.info(
            "utterance_ended",
            extra={
                "event": "utterance_ended",
                "utterance_id": u.id,
                "context_id": u.context_id,
                "status": status,
                "first_audio_ms": first,
                "audio_seconds": round(u.audio_seconds, 3),
                "characters": u.characters,
                "dialect": self.dialect,
            },
        )

    async def _stream(self, u: Utterance) -> None:
        """The one place audio (and, with the aligner, timings) leaves the job for the wire format."""
        source = u.job.stream_events() if u.request.timestamps else u.job.stream_bytes()
        try:
            async for chunk in source:
                if not isinstance(
                    chunk, bytes
                ):  # timings follow the audio they describe, as the aligner settles them
                    await self._send(self.wire.timings(u, chunk), u)
                    continue
                if u.first_audio_at is None:
                    u.first_audio_at = self._clock()
                u.note_audio(chunk)
                await self._send(self.wire.audio(u, chunk), u, audio_to=u.last_audio_span[1])
                if u.chunks % self.progress_every == 0:
                    await self._send(self.wire.progress(u), u)
        finally:
            await source.aclose()  # cancels the producer, which aborts generation


def context_ended(wire: SessionWire, context_id: str) -> list[Payload]:
    """The end marker of a context that has no utterance (refused before it began), where the dialect has one."""
    marker = getattr(wire, "context_ended", None)
    return marker(context_id) if marker is not None else []
