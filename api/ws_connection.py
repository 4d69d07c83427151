"""The WebSocket side of a streaming connection, whatever its dialect: the handshake every dialect shares
(`admitted`), the WebSocket as the one connection loop's transport (api/sockets/loop.py: text frames in, the close
code each ending asks for) and the dialects' common meaning of its endings (`WebSocketDialect`).

Each dialect's route authenticates, builds a `WsSession` with its wire format and hands `serve_session` a `handle`
function that turns one text frame into session calls; `handle` returns "close" when the client asked to end the
connection (ElevenLabs `close_socket`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from api.deps import Services
from api.errors import ApiError
from api.socket_guard import CoolingDown, SocketGuard, SocketSlot, deny_cooling, refusal_error, stop_reading
from api.sockets.loop import Incoming, serve_connection
from services.access import AccessServices, ApiKeyRecord
from services.access.rate_limit import rate_refusal
from services.access.socket_limits import MessageLimiter, MessageRefusal
from services.errors import ServiceError
from services.sessions.entrance import SocketCaller
from services.sessions.ws_outbox import ClientStalled, Outbox
from services.sessions.ws_session import WsSession

logger = logging.getLogger("api.ws")

CLOSE_NORMAL, CLOSE_POLICY, CLOSE_ERROR = 1000, 1008, 1011
# Endings where the client did not choose to stop: the server ended the socket (a stalled reader, a broken message
# rule) or the connection was lost under it (keepalive included). Their unfinished utterances, like those of a socket
# the client closed, are charged for the audio that reached the socket, not for their whole text (docs/api/credits.md).
SERVER_ENDED = frozenset({"stalled", "over_budget", "lost", "send_failed"})
# The socket ended on our own failure (the reader or the writer raised on something that is not a dead connection):
# a 5xx, so its unfinished utterances fail with INTERNAL_ERROR and are charged nothing (README, "Credits").
SERVER_FAILED = frozenset({"server_error"})
Handler = Callable[[str], Awaitable["str | None"]]


class ContextError(ApiError):
    """A refusal about one context of a multi-context dialect (answered with that context's id). `closes`: the refused
    message ended its context, so the refusal leaves nothing to drop (a retry may use the same id)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        context_id: str | None,
        param: str | None = None,
        closes: bool = False,
    ) -> None:
        super().__init__(code, message, param=param)
        self.context_id = context_id
        self.closes = closes


# ---------------------------------------------------------------------------------------------- admission
async def _authenticate(websocket: WebSocket, access: AccessServices, query_key: str | None) -> ApiKeyRecord:
    headers = dict(websocket.headers.items())
    if query_key and not (headers.get("authorization") or headers.get("x-api-key")):
        headers["x-api-key"] = query_key
    try:
        return await access.authenticate(headers, websocket.client.host if websocket.client else None)
    except ServiceError as exc:
        raise ApiError.from_service(exc) from None


async def _check_connection_rate(access: AccessServices, key: ApiKeyRecord) -> bool:
    """Count the connection as one request; True when limits apply (the count then covers utterance 1)."""
    if access.authenticator is None:
        return False
    limit = key.rate_limit_per_minute or access.settings.access.rate_limit_per_minute
    decision = await access.limiter.check_rate(key.key_id, limit)
    if not decision.allowed:
        refusal = rate_refusal(decision)
        raise ApiError(refusal.code, refusal.message, headers=decision.headers())
    return True


Refuser = Callable[[WebSocket, ApiError], Awaitable[None]]


class Admitted(NamedTuple):
    """A socket past the handshake: its key, whether its rate was counted, and the connection id."""

    key: ApiKeyRecord
    counted: bool
    connection_id: str


@contextlib.asynccontextmanager
async def admitted(
    websocket: WebSocket,
    services: Services,
    *,
    query_key: str | None,
    refuse: Refuser,
    slot: SocketSlot | None = None,
) -> AsyncIterator[Admitted | None]:
    """The handshake every dialect shares: the per-address caps (api/socket_guard.py; `slot`: the place a route
    took itself before reading a first message), the key (headers, or `query_key` for clients that cannot set
    headers), the per-key connection cap and the per-connection rate check. Yields (key, rate counted, connection
    id), or None after `refuse` answered in the dialect's shape; the connection counts against its key while
    inside."""
    own_slot = None
    if slot is None:
        try:
            slot = own_slot = SocketGuard.of(websocket).enter(websocket)
        except ApiError as err:
            logger.info("websocket refused", extra={"error_code": err.code})
            await refuse(websocket, err)
            yield None
            return
    try:
        async with _admitted(websocket, services, query_key=query_key, refuse=refuse, slot=slot) as admission:
            yield admission
    finally:
        if own_slot is not None:
            own_slot.close()


@contextlib.asynccontextmanager
async def _admitted(
    websocket: WebSocket, services: Services, *, query_key: str | None, refuse: Refuser, slot: SocketSlot
) -> AsyncIterator[Admitted | None]:
    state = websocket.app.state
    settings, access = services.settings, services.access
    connection_id = websocket.scope.get("state", {}).get("request_id") or f"ws{id(websocket):x}"
    open_per_key: dict[str, int] | None = getattr(state, "ws_open_per_key", None)
    if open_per_key is None:
        open_per_key = state.ws_open_per_key = {}
    key_id: str | None = None  # set once this connection holds a place under the per-key cap
    try:
        key = await _authenticate(websocket, access, query_key)
        slot.authenticated()
        websocket.state.key_hash = (
            key.key_hash
        )  # should this connection flood: CoolingGate refuses its reconnects
        SocketGuard.of(websocket).check_key(key.key_id)  # a key cooling down after a flood
        cap = settings.websocket.ws_max_connections_per_key
        # Check and take the place with no await in between: concurrent handshakes of one key (100 at once) must
        # not all see the same count while another await (the rate check) is pending.
        if cap and open_per_key.get(key.key_id, 0) >= cap:
            raise ApiError(
                "TOO_MANY_CONCURRENT_REQUESTS",
                f"At most {cap} WebSocket connections per API key are "
                "open at once on this server; close one or reuse it (it carries any number of "
                "utterances).",
                headers={"Retry-After": "5"},
            )
        key_id = key.key_id
        open_per_key[key_id] = open_per_key.get(key_id, 0) + 1
        counted = await _check_connection_rate(access, key)
    except ApiError as err:
        _leave(open_per_key, key_id)
        logger.info("websocket refused", extra={"error_code": err.code})
        if not (isinstance(err, CoolingDown) and await deny_cooling(websocket, err)):
            await refuse(websocket, err)
        yield None
        return
    except BaseException:
        _leave(open_per_key, key_id)
        raise
    try:
        yield Admitted(key, counted, connection_id)
    finally:
        _leave(open_per_key, key_id)


def _leave(open_per_key: dict[str, int], key_id: str | None) -> None:
    if key_id is None:
        return
    left = open_per_key.get(key_id, 1) - 1
    if left > 0:
        open_per_key[key_id] = left
    else:
        open_per_key.pop(key_id, None)


# ---------------------------------------------------------------------------------------------- connection
class WebSocketTransport:
    """A WebSocket as the connection loop's transport (api/sockets/loop.py): text frames in, the close code its
    ending asks for."""

    def __init__(self, websocket: WebSocket, limiter: MessageLimiter) -> None:
        self.websocket = websocket
        self.limiter = limiter

    @property
    def peer(self) -> str | None:
        return self.websocket.client.host if self.websocket.client else None

    async def receive(self) -> Incoming | str:
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            return "lost" if connection_lost(message) else "disconnect"
        text = message.get("text")
        return Incoming(text, len(text) if text is not None else len(message.get("bytes") or b""))

    async def send(self, payload: Any) -> None:
        await self.websocket.send_json(payload)

    async def close(self, ending: str) -> None:
        websocket = self.websocket
        if ending in ("idle", "close"):
            await close_quietly(websocket, CLOSE_NORMAL, "idle timeout" if ending == "idle" else "closed")
        elif ending == "over_budget":
            close_code = (
                refusal_error(self.limiter.refused)[1] if self.limiter.refused is not None else CLOSE_POLICY
            )
            await close_quietly(
                websocket,
                close_code,
                "message too big" if close_code != CLOSE_POLICY else "message rate limit exceeded",
            )
            stop_reading(websocket)
        elif ending == "stalled":
            await close_quietly(websocket, CLOSE_POLICY, "client stopped reading")
        elif ending == "server_error":
            await close_quietly(websocket, CLOSE_ERROR, "internal error")


class WebSocketDialect:
    """The WebSocket dialects' side of the loop: a JSON text frame to `handle`, a refusal as the session's `error`
    (with its context's id), and the close code of each ending."""

    logger = logger
    what = "websocket message"
    idle_recheck_s: float | None = None
    idle_wake_s: float | None = None
    server_ended = SERVER_ENDED
    server_failed = SERVER_FAILED

    def __init__(
        self,
        websocket: WebSocket,
        session: WsSession,
        limiter: MessageLimiter,
        handle: Handler,
        *,
        idle_s: float,
        dialect: str,
    ) -> None:
        self.websocket, self.session, self.limiter, self.handle = websocket, session, limiter, handle
        self.idle_s = idle_s
        self.dialect = dialect

    async def dispatch(self, message: Incoming) -> str | None:
        if message.payload is None:
            raise ApiError(
                "VALIDATION_ERROR", "Binary messages are not accepted; send JSON text frames.", param="type"
            )
        return await self.handle(message.payload)

    async def refuse(self, err: ApiError) -> None:
        context_id = err.context_id if isinstance(err, ContextError) else None
        await self.session.reject(err.code, err.message, err.param, context_id=context_id)
        if isinstance(err, ContextError) and err.closes:
            self.session.refused.forget(context_id)

    async def over_budget(self, refused: MessageRefusal) -> str:
        return "over_budget"  # said after the session closed (`farewell`), then closed 1008 (rate) or 1009 (size)

    async def ended_by_client_side(self, ending: str) -> None:
        return None

    def reader_failed(self, failure: BaseException, writer_failure: BaseException | None) -> str:
        ending = reader_failure_ending(failure, writer_failure)
        logger.log(
            logging.ERROR if ending == "server_error" else logging.WARNING,
            "websocket reader failed",
            exc_info=failure,
            extra={"reason": ending},
        )
        return ending

    def writer_stopped(self, failure: BaseException | None) -> str:
        return writer_ending(failure)

    async def farewell(self, ending: str) -> bool:
        if ending == "idle":
            await self.session.reject(
                "IDLE_TIMEOUT", f"No messages for {self.idle_s:g} s; closing the connection."
            )
            return True
        if ending == "over_budget" and self.limiter.refused is not None:
            if self.limiter.refused.kind == "rate":
                key_hash = getattr(self.websocket.state, "key_hash", None)
                SocketGuard.of(self.websocket).penalise(self.session.gate.key_id, key_hash)
            err, _ = refusal_error(self.limiter.refused)
            await self.session.reject(err.code, err.message, err.param)
            return True
        return False

    def opened(self) -> None:
        logger.info(
            "websocket_opened",
            extra={"event": "websocket_opened", "key_id": self.session.gate.key_id, "dialect": self.dialect},
        )

    def closed(self, ending: str) -> None:
        logger.info(
            "websocket_closed",
            extra={
                "event": "websocket_closed",
                "reason": ending,
                "dialect": self.dialect,
                "utterances": self.session.utterance_count,
            },
        )


def connection_lost(message: Mapping[str, Any]) -> bool:
    """A `websocket.disconnect` without the client's close frame: the network went, the client vanished, or the
    server's own keepalive gave up on it (its 1011 looks the same from here). uvicorn's websockets-sansio protocol
    says so with 1005 and no `reason` (a received close frame always has one, even without a code, as browsers send
    it); its legacy websockets protocol with 1006."""
    code = message.get("code")
    return code == 1006 or (code == 1005 and "reason" not in message)


def writer_ending(failure: BaseException | None) -> str:
    """Why the writer stopped: the client stopped reading ("stalled"), a send found the connection dead
    ("send_failed": the ASGI server's disconnect, an OS error, or Starlette refusing to send on a closed socket), or
    our own bug ("server_error": a payload that cannot be encoded, anything else)."""
    if isinstance(failure, ClientStalled):
        return "stalled"
    if failure is None or isinstance(failure, (WebSocketDisconnect, OSError, RuntimeError)):
        return "send_failed"
    return "server_error"


def reader_failure_ending(failure: BaseException, writer_failure: BaseException | None) -> str:
    """The read loop raised. Our failure ("server_error": refunded) unless the connection was dead under it ("lost")
    or the writer had already stopped for a reason of the client's (that ending): a client must not be able to turn
    its own stall or hang-up into a refund."""
    if writer_failure is not None and writer_ending(writer_failure) != "server_error":
        return writer_ending(writer_failure)
    if isinstance(failure, (WebSocketDisconnect, OSError)):
        return "lost"
    return "server_error"


async def close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await asyncio.wait_for(websocket.close(code, reason), timeout=2.0)
    except Exception:  # noqa: BLE001 - the socket may already be gone
        pass


async def serve_session(
    websocket: WebSocket,
    session: WsSession,
    outbox: Outbox,
    *,
    idle_s: float,
    handle: Handler,
    dialect: str = "native",
    first: str | None = None,
) -> str:
    """Run the connection to its end through the one connection loop (api/sockets/loop.py); returns why it ended
    (disconnect, lost, close, idle, over_budget, stalled, send_failed, server_error). Every unfinished utterance is
    aborted and settled before this returns. `first`: a client message the route read before the session began (it
    is handled first)."""
    limiter = SocketGuard.of(websocket).message_limiter(session.gate.key_id)
    return await serve_connection(
        WebSocketTransport(websocket, limiter),
        WebSocketDialect(websocket, session, limiter, handle, idle_s=idle_s, dialect=dialect),
        session,
        outbox,
        limiter,
        first=Incoming(first, len(first)) if first is not None else None,
        reader_name="ws-reader",
    )


def socket_caller(websocket: WebSocket, key: ApiKeyRecord, counted: bool, connection_id: str) -> SocketCaller:
    """The caller of an admitted WebSocket, with the client's own request id when it sent one."""
    client_request_id = websocket.scope.get("state", {}).get("client_request_id")
    return SocketCaller(key, connection_id, counted=counted, client_request_id=client_request_id)
