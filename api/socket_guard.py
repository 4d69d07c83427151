"""What keeps one client's sockets from slowing the others, for every streaming dialect: a per-address
cap on sockets (those still without an accepted key, and optionally all), the deadline for a key that comes in the
first message, each connection's message budget (services/access/socket_limits.py), and a cool-down for a key
whose connection went over its budget: reconnecting must not buy a fresh burst (each closed socket also costs the
server the frames still in flight, which it reads and drops for up to uvicorn's 10 s close timeout).

The counts are per process (app.state), like the per-key connection cap: each server, each Modal container,
guards its own event loop. The address is the one TTS_TRUSTED_PROXIES lets through (uvicorn's proxy-headers
middleware rewrites the scope's client), else the TCP peer.

Close codes (README, "Limits on a connection"):
  1008 policy violation: no key in time, a refused key, a per-address cap, a message rate exceeded;
  1009 message too big: one message over TTS_WS_MAX_MESSAGE_BYTES.
Each follows an error message in the dialect's shape where the socket was accepted.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import parse_qsl

from fastapi import WebSocket
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketState

from api.errors import ApiError
from services.access.authenticator import Authenticator
from services.access.socket_limits import AddressSlots, KeyBuckets, MessageLimiter, MessageRefusal
from services.keys.records import anonymous_record, hash_key
from shared.metrics import RATE_LIMITED
from shared.settings import Settings

CLOSE_POLICY, CLOSE_TOO_BIG = 1008, 1009
# A key's connections together may send the burst of this many connections at once (several sockets starting an LLM
# reply each fit), then the rate of every connection its per-key cap allows: a key flooding on all its sockets, or
# reconnecting, buys no more than that, so the event loop's time for other keys stays bounded.
KEY_BURST_CONNECTIONS = 2
# With auth off every client is this one key: one flooder would lock everybody out, so it never cools down.
_SHARED_KEY_ID = anonymous_record().key_id


class CoolingDown(ApiError):
    """The key's new sockets are refused for a while after one of them flooded."""


def client_address(websocket: WebSocket) -> str:
    return websocket.client.host if websocket.client else "unknown"


class SocketSlot:
    """One socket's places under the per-address caps: the unauthenticated one (`pending`: held only by a socket
    whose key is still to come) is given back as soon as its key is accepted (`authenticated`), the other when the
    socket ends (`close`). Both are idempotent."""

    def __init__(self, guard: SocketGuard, address: str, *, pending: bool = True) -> None:
        self.guard, self.address = guard, address
        self._pending, self._open = pending, True

    def authenticated(self) -> None:
        if self._pending:
            self._pending = False
            self.guard.unauthenticated.leave(self.address)

    def close(self) -> None:
        self.authenticated()
        if self._open:
            self._open = False
            self.guard.connections.leave(self.address)

    def __enter__(self) -> SocketSlot:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class SocketGuard:
    """The app's socket limits (one per app: `SocketGuard.of(websocket)`)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.unauthenticated = AddressSlots(settings.websocket.ws_max_unauthenticated_per_address)
        self.connections = AddressSlots(settings.websocket.ws_max_connections_per_address)
        self.key_messages = KeyBuckets(
            settings.websocket.ws_messages_per_s * max(1, settings.websocket.ws_max_connections_per_key),
            settings.websocket.ws_message_burst * KEY_BURST_CONNECTIONS,
            clock=clock,
        )
        self._cooling: dict[str, float] = {}  # key id -> until when its new sockets are refused
        # The same, by the hash of the key a flooding connection presented in its handshake: `CoolingGate` refuses
        # its reconnects before any routing, parsing or authentication (a flooder reconnects many times a second).
        self._cooling_credentials: dict[str, float] = {}

    def penalise(self, key_id: str | None, credential: str | None = None) -> None:
        """A connection of this key went over its message budget: refuse the key's new sockets for a while.
        `credential`: the hash of the key its handshake carried (`handshake_credential`), if any."""
        if key_id not in (None, _SHARED_KEY_ID) and self.settings.websocket.ws_flood_penalty_s > 0:
            now = self.clock()
            for cooling in (self._cooling, self._cooling_credentials):  # entries only a lookup would clear
                for stale in [k for k, until in cooling.items() if until <= now]:
                    del cooling[stale]
            until = now + self.settings.websocket.ws_flood_penalty_s
            self._cooling[key_id] = until
            if credential is not None:
                self._cooling_credentials[credential] = until

    def credential_cooling(self, scope: Scope) -> CoolingDown | None:
        """The refusal for a handshake that carries a cooling key, judged from the raw scope alone; None (the
        route decides) otherwise. O(1) while no key cools down."""
        if not self._cooling_credentials:
            return None
        credential = handshake_credential(scope)
        if credential is None:
            return None
        until = self._cooling_credentials.get(credential)
        if until is None:
            return None
        left = until - self.clock()
        if left <= 0:
            del self._cooling_credentials[credential]
            return None
        return _cooling_error(left)

    def check_key(self, key_id: str) -> None:
        """ApiError (429 with Retry-After) while the key cools down after a flood."""
        until = self._cooling.get(key_id)
        if until is None:
            return
        left = until - self.clock()
        if left <= 0:
            del self._cooling[key_id]
            return
        raise _cooling_error(left)

    @classmethod
    def of(cls, websocket: WebSocket) -> SocketGuard:
        state = websocket.app.state
        guard = getattr(state, "socket_guard", None)
        if guard is None:
            guard = state.socket_guard = cls(state.services.settings)
        return guard

    def enter(self, websocket: WebSocket) -> SocketSlot:
        """A place for a new socket under both caps; ApiError (429) when its address holds too many. No await:
        concurrent handshakes cannot all pass the check before one counts. A socket whose handshake carries a key
        (header or query) takes no unauthenticated place: its key is checked before the socket is accepted (a wrong
        one is refused, under the failed-key throttle), so keyless sockets waiting on a shared address (a NAT, a
        proxy that names no client) never lock out a keyed client."""
        address = client_address(websocket)
        keyed = handshake_credential(websocket.scope) is not None
        if not self.connections.enter(address):
            raise _too_many(
                f"{self.connections.cap} WebSocket connections from this address are open on this "
                "server; close one first."
            )
        if not keyed and not self.unauthenticated.enter(address):
            self.connections.leave(address)
            raise _too_many(
                f"{self.unauthenticated.cap} WebSocket connections from this address are waiting for "
                "their API key to be accepted; send the key with the handshake (header or query)."
            )
        return SocketSlot(self, address, pending=not keyed)

    def auth_wait_s(self, client_timeout_s: float) -> float:
        """How long a socket may wait for a key sent in its first message: the client's own inactivity timeout,
        but never longer than TTS_WS_AUTH_DEADLINE_S."""
        return min(client_timeout_s, self.settings.websocket.ws_auth_deadline_s)

    def message_limiter(self, key_id: str | None = None) -> MessageLimiter:
        """One connection's budget; with `key_id`, also its key's bucket shared by all the key's connections (not
        with auth off, where every client is one key)."""
        s = self.settings
        shared = (
            self.key_messages.of(key_id)
            if key_id not in (None, _SHARED_KEY_ID) and s.websocket.ws_messages_per_s > 0
            else None
        )
        return MessageLimiter(
            messages_per_s=s.websocket.ws_messages_per_s,
            message_burst=s.websocket.ws_message_burst,
            chars_per_s=s.websocket.ws_message_chars_per_s,
            max_chars=s.websocket.ws_max_message_bytes,
            clock=self.clock,
            key_bucket=shared,
        )


def _cooling_error(left_s: float) -> CoolingDown:
    return CoolingDown(
        "RATE_LIMIT_EXCEEDED",
        f"A WebSocket connection of this API key went over its message budget; "
        f"new connections are refused for {math.ceil(left_s)} s.",
        headers={"Retry-After": str(math.ceil(left_s))},
    )


def handshake_credential(scope: Scope) -> str | None:
    """The hash of the API key a WebSocket handshake carries: the headers' key as the authenticator reads it, else
    a key query parameter (`api_key`, or the ElevenLabs dialect's `xi_api_key`). A handshake whose any one of these
    is a cooling key's comes from that key's holder, so refusing it on a match is always right."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        if name in (b"authorization", b"x-api-key", b"xi-api-key"):
            headers[name.decode("latin-1")] = value.decode("latin-1")
    raw = Authenticator.extract_key(headers) if headers else None
    if raw is None:
        query = scope.get("query_string") or b""
        if b"api_key=" in query:
            params = dict(parse_qsl(query.decode("latin-1")))
            raw = (params.get("api_key") or params.get("xi_api_key") or "").strip() or None
    return hash_key(raw) if raw is not None else None


class CoolingGate:
    """Pure ASGI, outside every other layer: a WebSocket handshake that carries the key of a connection that just
    flooded is answered 429 (Retry-After) at once, before routing, query validation, authentication and the
    middlewares. A flooding client reconnects as fast as it is refused; on the route each refusal cost about
    twice as much server CPU (bench/bench_flood_cost.py). Anything else passes through untouched; a key the gate
    cannot see (one sent in the first message) is refused by the route.

    On the paths `state.socket_auth_paths` names (routes that refuse a handshake with an HTTP status, the same
    envelope) it also answers the failed-auth throttle's 429 (services/access/authenticator.py FailedAuthThrottle)
    to a handshake from an address that keeps presenting wrong keys, deciding as the route would (a real key
    passes a throttled address). `handshake_refusal` is the whole decision; api/http_protocol.py makes it too,
    before the upgrade, where the server runs that protocol."""

    def __init__(self, app: ASGIApp, state: object) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            err = handshake_refusal(self.state, scope)
            if err is not None:
                await _deny(scope, receive, send, err)
                return
        await self.app(scope, receive, send)


def handshake_refusal(state: object, scope: Scope) -> ApiError | None:
    """The 429 for a WebSocket handshake refused before the route (see CoolingGate), judged from the raw scope
    (path, headers, query string, client) without an await; None: the route decides."""
    guard: SocketGuard | None = getattr(state, "socket_guard", None)
    err = guard.credential_cooling(scope) if guard is not None else None
    if err is not None or scope.get("path") not in getattr(state, "socket_auth_paths", ()):
        return err
    access = getattr(getattr(state, "services", None), "access", None)
    if access is None or access.authenticator is None:
        return None
    client = scope.get("client")
    address = str(client[0]) if client else "unknown"
    refusal = access.auth_throttle.refusal(address, presented_key(scope), known=access.authenticator.is_known)
    if refusal is None:
        return None
    RATE_LIMITED.labels("failed_auth").inc()
    return ApiError.from_service(refusal)


def http_refusal(err: ApiError) -> bytes:
    """`err` as a whole HTTP/1.1 response that closes the connection: the same status, headers and body as the
    routes' denial response, for a protocol that answers before any ASGI app runs."""
    status, headers, body = _rendered(err.code, err.message, err.status, tuple(sorted(err.headers.items())))
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
    head += [name + b": " + value + b"\r\n" for name, value in headers]
    return b"".join(head) + b"connection: close\r\n\r\n" + body


def presented_key(scope: Scope) -> str | None:
    """The key a WebSocket handshake presents, as the route reads it (api/ws_connection.py): the headers, with the
    `api_key` query parameter standing in for `X-API-Key` when neither `Authorization` nor `X-API-Key` is set."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        if name in (b"authorization", b"x-api-key", b"xi-api-key"):
            headers[name.decode("latin-1")] = value.decode("latin-1")
    query = scope.get("query_string") or b""
    if b"api_key=" in query and not (headers.get("authorization") or headers.get("x-api-key")):
        query_key = dict(parse_qsl(query.decode("latin-1"))).get("api_key")
        if query_key:
            headers["x-api-key"] = query_key
    return Authenticator.extract_key(headers) if headers else None


@functools.lru_cache(maxsize=256)
def _rendered(
    code: str, message: str, status: int, headers: tuple[tuple[str, str], ...]
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A handshake refusal (status, headers, body) exactly as the routes' JSONResponse has it, rendered once per
    distinct refusal (the seconds to wait are the only thing that varies)."""
    err = ApiError(code, message, status=status, headers=dict(headers))
    response = JSONResponse(err.envelope(), err.status, headers=err.headers)
    return response.status_code, response.raw_headers, bytes(response.body)


async def _deny(scope: Scope, receive: Receive, send: Send, err: ApiError) -> None:
    """The handshake refusal `deny_cooling` sends, on the bare ASGI interface."""
    if "websocket.http.response" in scope.get("extensions", {}):
        status, headers, body = _rendered(
            err.code, err.message, err.status, tuple(sorted(err.headers.items()))
        )
        await send({"type": "websocket.http.response.start", "status": status, "headers": list(headers)})
        await send({"type": "websocket.http.response.body", "body": body})
        denial_sent(receive)
    else:
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": CLOSE_POLICY, "reason": err.code})


async def deny_cooling(websocket: WebSocket, err: ApiError) -> bool:
    """Refuse a cooling key's socket in the handshake (HTTP 429, or 403 where the server cannot send a status), even
    on a dialect that answers other refusals in-band: an accepted socket would be read, frame by frame, until
    uvicorn's close timeout, and a flooding client keeps writing. False when the socket was already accepted (a key
    read from the first message): the dialect answers in-band."""
    if websocket.client_state != WebSocketState.CONNECTING:
        return False
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(err.envelope(), err.status, headers=err.headers))
        denial_sent(websocket._receive)  # noqa: SLF001 - uvicorn's protocol, as in stop_reading
    else:
        await websocket.close(CLOSE_POLICY, err.code)
    return True


def denial_sent(receive: Receive) -> None:
    """After a handshake refused with an HTTP response: tell uvicorn's websockets-sansio protocol the handshake is
    over. It leaves it open, and then logs "ASGI callable returned without completing handshake" at ERROR for every
    such refusal (uvicorn 0.54; its wsproto protocol marks it complete; Kludex/uvicorn PR 3138): a false alarm per
    refused reconnect of a flooding client, and a log record that cost more CPU than the rest of the refusal. Only
    when the response is out (`close_sent` with an `initial_response`); nothing on any other server."""
    protocol = getattr(receive, "__self__", None)
    if (
        protocol is not None
        and getattr(protocol, "initial_response", None) is not None
        and getattr(protocol, "close_sent", False)
        and getattr(protocol, "handshake_complete", True) is False
    ):
        protocol.handshake_complete = True


def stop_reading(websocket: WebSocket) -> bool:
    """After the close frame of a flooding connection: close its TCP connection now instead of reading (and
    dropping) whatever the client still writes until the close handshake ends or uvicorn's 10 s close timeout. The
    close frame already written is still flushed. Reaches uvicorn's protocol through the ASGI receive callable (it
    is its bound method unless a middleware wraps it); False, and nothing done, on any other server."""
    protocol = getattr(websocket._receive, "__self__", None)  # noqa: SLF001 - the one way to the transport
    transport = getattr(protocol, "transport", None)
    if transport is None or not hasattr(transport, "is_closing") or transport.is_closing():
        return False
    transport.close()
    return True


def refusal_error(refusal: MessageRefusal) -> tuple[ApiError, int]:
    """The error a client is told and the close code that follows."""
    if refusal.kind == "size":
        return ApiError("PAYLOAD_TOO_LARGE", refusal.message, param="text"), CLOSE_TOO_BIG
    return ApiError("RATE_LIMIT_EXCEEDED", refusal.message), CLOSE_POLICY


def too_big(size: int, limit: int) -> ApiError | None:
    """A first message read before the session (the ElevenLabs key): refused unparsed when over the limit."""
    if size <= limit:
        return None
    return ApiError(
        "PAYLOAD_TOO_LARGE", f"A message may hold at most {limit} characters; this one held {size}."
    )


def _too_many(message: str) -> ApiError:
    return ApiError("TOO_MANY_CONCURRENT_REQUESTS", message, headers={"Retry-After": "5"})
