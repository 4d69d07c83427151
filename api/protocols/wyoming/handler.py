"""One Wyoming TCP connection: its events in, the session's audio out.

Each `synthesize` (one-shot) or `synthesize-start` ... `synthesize-stop` (text streamed as an LLM writes it) is one
utterance of a `services.sessions.ws_session.WsSession`, as on the WebSocket dialects: text cut at sentence ends,
one incremental job, admission, limits, credits, accounting and the request-log record per utterance
(`services.access.AccessGate`), and audio streamed as it is made. The connection runs as the server's one key
(`WyomingServer.key`). Home Assistant also sends a plain `synthesize` with the whole text inside a stream, for
servers that cannot stream; it is ignored while a stream is open. A client that hangs up stops the work: its
utterances are cancelled, their slots released and their records written, as for a closed socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from wyoming.event import Event
from wyoming.info import Describe
from wyoming.server import AsyncEventHandler
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeVoice

from api.errors import ApiError
from api.protocols.common import synthesis_request
from api.protocols.wyoming.responses import (
    CLOSE,
    STOPPED,
    EventTooLarge,
    EventWriter,
    WyomingWire,
    error_payload,
    event_payload,
    read_event,
)
from api.sockets.loop import Incoming, serve_connection
from services.access.socket_limits import MessageLimiter, MessageRefusal
from services.pipeline.synthesis import SynthesisRequest
from services.sessions.entrance import SessionShape, SocketCaller
from services.sessions.utterance import Utterance
from services.sessions.ws_outbox import ClientStalled, Outbox
from services.sessions.ws_session import WsSession

if TYPE_CHECKING:
    from wyoming.info import Info

    from api.deps import Services
    from services.keys.records import ApiKeyRecord

logger = logging.getLogger("api.wyoming")  # the name logs have always carried
_Parsed = TypeVar("_Parsed", Synthesize, SynthesizeStart, SynthesizeChunk)
_connections = itertools.count(1)
# How long a connection told why it ends may still send (discarded) before it is closed (`_linger`).
LINGER_S = 0.5
# Endings the client is told of (an error event) before the connection closes.
SAID_ENDINGS = ("idle", "too_large", "flooded")
# While something is synthesised a silent client is not idle: how soon to look again.
IDLE_RECHECK_S = 0.5


def client_group(address: str) -> str:
    """What a client's share is counted by: its IPv4 address, or its IPv6 /64 (a host is usually given a whole /64,
    so counting single IPv6 addresses would give one client as many shares as it likes)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Host(Protocol):
    """What a connection asks of its server (api.protocols.wyoming.server.WyomingServer)."""

    services: Services
    rate: int
    connections: set[asyncio.Task[Any]]

    async def key(self, address: str | None) -> ApiKeyRecord: ...

    contended_idle_s: float
    pressure: asyncio.Event

    async def admit(self, task: asyncio.Task[Any], address: str | None) -> ApiError | None: ...

    def release(self, task: asyncio.Task[Any], address: str | None) -> None: ...

    @property
    def contended(self) -> bool: ...

    def cool(self, address: str | None) -> None: ...

    def message_limiter(self, address: str | None = None) -> MessageLimiter: ...

    def info(self) -> Info: ...


class WyomingHandler(AsyncEventHandler):
    """Serves one connection (`run`); `handle_event` turns one client event into session calls."""

    def __init__(self, server: Host, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.server = server
        peer = writer.get_extra_info("peername")
        # The client's address as its share counts it (an IPv6 client by its /64).
        self.address: str | None = client_group(str(peer[0])) if isinstance(peer, tuple) and peer else None
        self.connection_id = f"wy{next(_connections)}"
        self.wire = WyomingWire(server.rate)
        self.outbox: Outbox | None = None
        self.session: WsSession | None = None
        self.streaming = False  # between synthesize-start and synthesize-stop
        self.stream_refused = False  # the open stream was refused at its start: its text is dropped
        self.stream_text = False  # the open stream has had text that is not only whitespace

    async def run(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        refusal = await self.server.admit(task, self.address)  # counted, and waited for at shutdown
        if (
            refusal is not None
        ):  # over a share or the cap, or a flooder back too soon: said and closed, never held
            logger.info("wyoming connection refused", extra={"error_code": refusal.code})
            await self._refuse(refusal)
            return
        try:
            await self._serve()
        finally:
            self.server.release(task, self.address)

    async def _serve(self) -> None:
        services = self.server.services
        try:
            key = await self.server.key(self.address)
        except ApiError as err:
            logger.info("wyoming connection refused", extra={"error_code": err.code})
            await self._refuse(err)
            return
        self.key = key
        session = self.session = services.sessions.open(
            EventWriter(self.writer, self.server.rate),
            SocketCaller(key, self.connection_id),
            SessionShape(dialect="wyoming", transport="wyoming", wire=self.wire),
        )
        self.outbox = session.outbox
        # The longest text a request may have, escaped in JSON (6 bytes a character at worst), and its fields.
        self.max_bytes = services.settings.limits.max_text_chars * 6 + 65536
        self._idle_s = float(services.settings.websocket.ws_idle_timeout_s)
        # Idle connections must notice within a few seconds that another connection waits for a slot.
        self.idle_wake_s = self.server.contended_idle_s / 2
        transport = EventTransport(self.reader, self.writer, self.address, self.server.rate, self.max_bytes)
        await serve_connection(
            transport,
            self,
            session,
            session.outbox,
            self.server.message_limiter(self.address),
            reader_name=f"wyoming-reader-{self.connection_id}",
        )

    # ------------------------------------------------------------------ the connection loop's dialect
    # (api/sockets/loop.py): what a Wyoming event and each ending mean.
    logger = logger
    what = "wyoming event"
    idle_recheck_s: float | None = IDLE_RECHECK_S
    idle_wake_s: float | None = None

    @property
    def idle_s(self) -> float:
        """The sockets' idle timeout, or the contended one while another connection waits for a slot (the loop reads
        it before each wait)."""
        if self.server.contended:
            return min(self._idle_s, self.server.contended_idle_s)
        return self._idle_s

    @idle_s.setter
    def idle_s(self, value: float) -> None:
        self._idle_s = value

    server_ended = frozenset({"lost", "stalled", "idle", "too_large", "flooded"})
    server_failed = frozenset({"server_error"})

    async def dispatch(self, message: Incoming) -> str | None:
        await self.handle_event(message.payload)
        return None

    async def refuse(self, err: ApiError) -> None:
        await self._fail(err, streamed=self.streaming)

    async def over_budget(self, refused: MessageRefusal) -> str:
        logger.info(
            "wyoming connection over its event budget",
            extra={"connection_id": self.connection_id, "reason": refused.kind},
        )
        error = ApiError("RATE_LIMIT_EXCEEDED", refused.message)
        await self._fail(error, streamed=self.streaming, close=False)  # closed after the linger
        if refused.kind == "rate":  # a flooder that reconnects at once gets no fresh burst
            self.server.cool(self.address)
        return "flooded"

    async def ended_by_client_side(self, ending: str) -> None:
        if ending == "too_large":
            error = ApiError("PAYLOAD_TOO_LARGE", f"An event's data may be at most {self.max_bytes} bytes.")
            await self._fail(error, streamed=self.streaming, close=False)  # closed after the linger

    def reader_failed(self, failure: BaseException, writer_failure: BaseException | None) -> str:
        if isinstance(failure, (ConnectionError, OSError, asyncio.IncompleteReadError)):
            return "lost"
        logger.error("wyoming reader failed", exc_info=failure)
        return "server_error"

    def writer_stopped(self, failure: BaseException | None) -> str:
        return "stalled" if isinstance(failure, ClientStalled) else "lost"

    async def farewell(self, ending: str) -> bool:
        assert self.outbox is not None
        if ending == "idle":
            await self.outbox.reply(error_payload("IDLE_TIMEOUT", "No events while idle; closing."))
        return ending in SAID_ENDINGS  # their error goes out before the connection closes

    def opened(self) -> None:
        logger.info(
            "wyoming_connected",
            extra={
                "event": "wyoming_connected",
                "key_id": self.key.key_id,
                "connection_id": self.connection_id,
            },
        )

    def closed(self, ending: str) -> None:
        assert self.session is not None
        logger.info(
            "wyoming_disconnected",
            extra={
                "event": "wyoming_disconnected",
                "reason": ending,
                "connection_id": self.connection_id,
                "utterances": self.session.utterance_count,
            },
        )

    async def handle_event(self, event: Event) -> bool:
        assert self.session is not None and self.outbox is not None
        session, outbox = self.session, self.outbox
        if Describe.is_type(event.type):
            await outbox.reply(event_payload(self.server.info().event()))
        elif Synthesize.is_type(event.type):
            if self.streaming:
                return True  # Home Assistant's copy of the streamed text, for servers that cannot stream
            synthesize = _parsed(Synthesize, event)
            if not synthesize.text.strip():
                raise ApiError("VALIDATION_ERROR", "Nothing to speak: the synthesize text is empty.")
            request = await self._request(synthesize.voice)
            u = await session.start(request, text=synthesize.text, end=True)
            await self._end_if_refused(u, streamed=False)
        elif SynthesizeStart.is_type(event.type):
            await self._start_stream(_parsed(SynthesizeStart, event).voice)
        elif SynthesizeChunk.is_type(event.type):
            if not self.streaming:
                raise ApiError(
                    "VALIDATION_ERROR", "synthesize-chunk outside a stream; send synthesize-start first."
                )
            text = _parsed(SynthesizeChunk, event).text
            if not self.stream_refused and text:
                self.stream_text = self.stream_text or bool(text.strip())
                await session.text(text)
                if await self._end_if_refused(session.utterance(), streamed=True):
                    self.stream_refused = True
        elif SynthesizeStop.is_type(event.type):
            await self._stop_stream()
        return True

    async def _start_stream(self, voice: SynthesizeVoice | None) -> None:
        assert self.session is not None
        if self.streaming:
            raise ApiError("VALIDATION_ERROR", "A stream is already open; send synthesize-stop first.")
        self.streaming, self.stream_refused, self.stream_text = True, False, False
        try:
            request = await self._request(voice)
        except ApiError as err:
            # Answered (and the connection closed) now; the rest of the stream is dropped.
            self.stream_refused = True
            await self._fail(err, streamed=True)
            return
        u = await self.session.start(request)
        if u is None:
            self.stream_refused = True
        else:
            self.wire.streamed.add(u.id)

    async def _stop_stream(self) -> None:
        assert self.session is not None and self.outbox is not None
        if not self.streaming:
            raise ApiError(
                "VALIDATION_ERROR", "synthesize-stop outside a stream; send synthesize-start first."
            )
        self.streaming = False
        if self.stream_refused:
            return
        if not self.stream_text:
            await self.session.cancel(quiet=True, reason="abandoned")
            await self._fail(
                ApiError("VALIDATION_ERROR", "Nothing to speak: the stream had no text."), streamed=True
            )
            return
        await self.session.end()

    async def _request(self, voice: SynthesizeVoice | None) -> SynthesisRequest:
        name = voice.name if voice is not None else None
        return await synthesis_request(
            self.server.services,
            self.key,
            voice=name or "",
            audio_format="pcm",
            sample_rate=self.server.rate,
            voice_field="voice.name",
        )

    async def _end_if_refused(self, u: Utterance | None, *, streamed: bool) -> bool:
        """A piece of the request's text was refused (out of credits, too long; its `error` is out). On the sockets
        the utterance goes on with the text it had, but a Wyoming client cannot hear about a gap in the middle of its
        answer: the request stops and the connection ends."""
        assert self.session is not None and self.outbox is not None
        if u is None or u.id not in self.wire.refused:
            return False
        await self.session.cancel(quiet=True, reason="abandoned")
        if streamed:
            await self.outbox.reply(STOPPED)
        await self.outbox.reply(CLOSE)
        return True

    async def _fail(self, err: ApiError, *, streamed: bool, close: bool = True) -> None:
        """A refusal of the request in hand: `error`, `synthesize-stopped` for a stream, then the connection closes
        (`close=False`: the caller ends the connection, which closes it after `_linger`)."""
        assert self.outbox is not None
        await self.outbox.reply(error_payload(err.code, err.message))
        if streamed:
            await self.outbox.reply(STOPPED)
        if close:
            await self.outbox.reply(CLOSE)

    async def _refuse(self, err: ApiError) -> None:
        """Before any session: the refusal, then the connection closes."""
        writer = EventWriter(self.writer, self.server.rate)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.send_item(error_payload(err.code, err.message)), timeout=5)
        self.writer.close()


class EventTransport:
    """A Wyoming TCP stream as the connection loop's transport: events in, and the close after an ending the client
    was told of (`_linger`)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str | None,
        rate: int,
        max_bytes: int,
    ) -> None:
        self.reader, self.writer, self._peer, self.rate, self.max_bytes = (
            reader,
            writer,
            peer,
            rate,
            max_bytes,
        )
        # The event being read: the loop's idle deadline may cancel a receive, never a read halfway (an event half
        # read would be lost), so the read goes on and the next receive takes it.
        self._reading: asyncio.Task[Event | None] | None = None

    @property
    def peer(self) -> str | None:
        return self._peer

    async def receive(self) -> Incoming | str:
        if self._reading is None:
            self._reading = asyncio.ensure_future(read_event(self.reader, self.max_bytes))
        reading = self._reading
        try:
            event = await asyncio.shield(reading)
        except EventTooLarge:
            return "too_large"
        finally:
            if reading.done():
                self._reading = None
        if event is None:
            return "disconnect"
        return Incoming(event, _text_size(event))

    async def send(self, payload: Any) -> None:
        await EventWriter(self.writer, self.rate).send_item(payload)

    async def close(self, ending: str) -> None:
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
            self._reading = None
        if ending in SAID_ENDINGS:
            await self._linger()
        self.writer.close()

    async def _linger(self) -> None:
        """After an ending the client was told of: half-close, then discard what it still sends for up to LINGER_S.
        Closing with its events unread would reset the connection, and a reset can drop the error before the client
        reads it; a client that keeps sending is cut at LINGER_S."""
        with contextlib.suppress(Exception):
            if self.writer.can_write_eof():
                self.writer.write_eof()
            async with asyncio.timeout(LINGER_S):
                while await self.reader.read(65536):
                    pass


def _text_size(event: Event) -> int:
    """The characters of text an event carries (what the budget's characters count)."""
    text = event.data.get("text") if isinstance(event.data, dict) else None
    return len(text) if isinstance(text, str) else 0


def _parsed(kind: type[_Parsed], event: Event) -> _Parsed:
    """The event as `kind`; a malformed one (a field missing or of the wrong type) is the client's mistake."""
    try:
        parsed = kind.from_event(event)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ApiError("VALIDATION_ERROR", f"Malformed {event.type} event.") from None
    if not isinstance(getattr(parsed, "text", ""), str):
        raise ApiError("VALIDATION_ERROR", f"Malformed {event.type} event: 'text' must be a string.")
    # The library takes fields as sent: a `voice.name` that is a number, list or object reached the voice lookup
    # (an INTERNAL_ERROR and an ERROR log line before).
    voice = getattr(parsed, "voice", None)
    sent = event.data.get("voice") if isinstance(event.data, dict) else None
    if (sent is not None and not isinstance(sent, dict)) or (
        voice is not None and not isinstance(voice, SynthesizeVoice)
    ):
        raise ApiError(
            "VALIDATION_ERROR", f"Malformed {event.type} event: 'voice' must be an object.", param="voice"
        )
    for name in ("name", "language", "speaker"):
        value = getattr(voice, name, None)
        if value is not None and not isinstance(value, str):
            raise ApiError(
                "VALIDATION_ERROR",
                f"Malformed {event.type} event: 'voice.{name}' must be a string.",
                param=f"voice.{name}",
            )
    text_format = getattr(parsed, "text_format", None)
    if text_format is not None and not isinstance(text_format, str):
        raise ApiError("VALIDATION_ERROR", f"Malformed {event.type} event: 'text_format' must be a string.")
    context = getattr(parsed, "context", None)
    if context is not None and not isinstance(context, dict):
        raise ApiError("VALIDATION_ERROR", f"Malformed {event.type} event: 'context' must be an object.")
    return parsed
