"""One socket connection, whatever carries it (a WebSocket, a Wyoming TCP stream): the read loop with the message
budget and the inactivity timeout, the writer beside it, why the connection ended, and the orderly end (unfinished
utterances aborted and settled, the client told why, the transport closed).

A transport moves messages (`SocketTransport`); a dialect says what they mean (`SocketDialect`): it parses and
dispatches one message, maps a refusal to its wire's error, and names the endings its failures stand for. Endings are
plain words: "disconnect" (the client closed), "lost" (the connection went under us), "close" (the client asked),
"idle", "stalled" (the client stopped reading), "server_error", and the transport's or dialect's own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from api.errors import ApiError
from services.access.socket_limits import MessageLimiter, MessageRefusal
from services.sessions.ws_outbox import Outbox
from services.sessions.ws_session import WsSession

INTERNAL_ERROR = "An internal error occurred; it has been logged."


@dataclass(frozen=True, slots=True)
class Incoming:
    """One client message: what the dialect parses (`payload`) and what the message budget counts (`size`)."""

    payload: Any
    size: int


class SocketTransport(Protocol):
    """A connection's wire as the loop sees it. Sending goes through the session's outbox, whose writer the
    transport supplies; `send` is for what is said before any session (a refusal)."""

    @property
    def peer(self) -> str | None: ...

    async def receive(self) -> Incoming | str:
        """The next message, or the word for why the client's side ended. Cancelled by the idle deadline, it loses
        nothing: a message half read is finished by the next call."""
        ...

    async def send(self, payload: Any) -> None: ...

    async def close(self, ending: str) -> None:
        """Close the connection the way `ending` asks (a close code, a linger for a said ending)."""
        ...


class SocketDialect(Protocol):
    """What one protocol supplies the loop: its meaning of a message and of each ending."""

    logger: logging.Logger
    what: str  # one message, as log lines name it ("websocket message", "wyoming event")
    idle_s: float
    # While something is synthesised a silent client is not idle: how soon to look again (None: idle_s).
    idle_recheck_s: float | None
    # The longest wait before `idle_s` is read again, for a dialect whose idle_s can shorten (None: no such need).
    idle_wake_s: float | None
    # Endings the client did not choose (charged for the audio that reached it) / our own failure (charged nothing).
    server_ended: frozenset[str]
    server_failed: frozenset[str]

    async def dispatch(self, message: Incoming) -> str | None:
        """Handle one message; "close" when the client asked to end the connection."""
        ...

    async def refuse(self, err: ApiError) -> None:
        """Answer a refused message in the wire's error shape (the connection goes on, or the dialect ends it)."""
        ...

    async def over_budget(self, refused: MessageRefusal) -> str:
        """The client went over its message budget (checked before the message is parsed): the ending."""
        ...

    async def ended_by_client_side(self, ending: str) -> None:
        """The transport ended the reading with `ending` (other than a plain disconnect): anything to say first."""
        ...

    def reader_failed(self, failure: BaseException, writer_failure: BaseException | None) -> str:
        """The read loop raised `failure` (`writer_failure`: why the writer had stopped, if it had): the ending."""
        ...

    def writer_stopped(self, failure: BaseException | None) -> str:
        """The writer stopped first: the ending."""
        ...

    async def farewell(self, ending: str) -> bool:
        """After the session closed: tell the client why (through the outbox); True when something was said, so it
        is drained before the connection closes."""
        ...

    def opened(self) -> None: ...

    def closed(self, ending: str) -> None: ...


async def serve_connection(
    transport: SocketTransport,
    dialect: SocketDialect,
    session: WsSession,
    outbox: Outbox,
    limiter: MessageLimiter,
    *,
    first: Incoming | None = None,
    reader_name: str = "socket-reader",
) -> str:
    """Run the connection to its end; returns why it ended. Every unfinished utterance is aborted and settled before
    this returns. `first`: a message read before the session began (handled first)."""
    writer = outbox.start()
    reader = asyncio.create_task(
        _read_loop(transport, dialect, session, outbox, limiter, first), name=reader_name
    )
    dialect.opened()
    ending = "disconnect"
    try:
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        if reader.done() and not reader.cancelled():
            failure = reader.exception()
            if failure is not None:
                ending = dialect.reader_failed(failure, outbox.failure if writer.done() else None)
            else:
                ending = reader.result()
        elif writer.done():
            ending = dialect.writer_stopped(outbox.failure)
    finally:
        # The cleanup runs whole even when the task serving the connection is cancelled meanwhile (a server shutting
        # down, a test client leaving): otherwise an await in it takes the cancellation, unfinished utterances are
        # not settled and the cancellation reaches the caller twice. Bounded: every step below has its own limit.
        with anyio.CancelScope(shield=True):
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await session.close(
                by_server=ending in dialect.server_ended, server_error=ending in dialect.server_failed
            )
            if await dialect.farewell(ending):
                await outbox.drain(timeout_s=2.0)
            await outbox.close()
            await transport.close(ending)
            dialect.closed(ending)
    return ending


async def _read_loop(
    transport: SocketTransport,
    dialect: SocketDialect,
    session: WsSession,
    outbox: Outbox,
    limiter: MessageLimiter,
    first: Incoming | None,
) -> str:
    """Handle client messages until the transport says the client's side ended, the client asks to close ("close"),
    stays silent too long while nothing is being synthesised ("idle") or goes over its message budget (the dialect
    names that ending)."""
    while True:
        message: Incoming | str
        if first is not None:
            message, first = first, None
        else:
            idle_s = dialect.idle_s  # read each time: Wyoming's shortens while a connection waits for a slot
            silent = time.monotonic() - outbox.last_activity
            if silent >= idle_s and not session.working:
                return "idle"
            wait = idle_s - silent if silent < idle_s else (dialect.idle_recheck_s or idle_s)
            if dialect.idle_wake_s is not None:
                wait = min(wait, dialect.idle_wake_s)
            try:
                # A deadline on this task, not wait_for's task per message: a message already queued (a client
                # writing many at once) is then taken without a turn of the event loop and a task of its own.
                async with asyncio.timeout(wait):
                    message = await transport.receive()
            except TimeoutError:
                continue
            session.note_message(time.monotonic())  # a stop this message causes is timed from here
            if isinstance(message, str):
                if message != "disconnect":
                    await dialect.ended_by_client_side(message)
                return message
            outbox.touch()
        refused = limiter.check(message.size)
        if refused is not None:
            return await dialect.over_budget(refused)
        try:
            if await dialect.dispatch(message) == "close":
                return "close"
        except ApiError as err:
            await dialect.refuse(err)
        except Exception:  # noqa: BLE001 - a bug handling one message must not end the connection unsaid
            dialect.logger.exception("%s handling failed", dialect.what)
            await dialect.refuse(ApiError("INTERNAL_ERROR", INTERNAL_ERROR))
        session.note_message(None)
        # One message per turn of the event loop: queued messages are received without suspending, so without this
        # a flooding connection would handle its whole queue while every other connection waits.
        await asyncio.sleep(0)
