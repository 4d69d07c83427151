"""uvicorn's HTTP protocol with a deadline for the request head: `uvicorn --http api.http_protocol:HeadDeadline`.

uvicorn (0.54) arms its keep-alive timer only after a response, and cancels it on any byte received, so a client
that opens a connection and sends its request line and headers a byte at a time holds the connection (and a place
under `--limit-concurrency`) for as long as it likes. Here the head of each request (the first on a connection,
and each later one on a kept-alive connection) must be complete within TTS_HTTP_HEAD_TIMEOUT_S of the connection
opening or of the previous response ending; otherwise the connection is closed without an answer, as nginx does
at `client_header_timeout`. A head is also capped at MAX_HEAD_BYTES (h11 caps it at 16 KiB itself; httptools, the
default parser when installed, does not cap it at all). A request body has its own deadline in the app (TTS_BODY_TIMEOUT_S, 408), and a
WebSocket its own limits once upgraded (api/socket_guard.py).

One client address may also hold at most MAX_CONNECTIONS_PER_ADDRESS connections at once (a further one is closed
as it opens, before it takes a place under `--limit-concurrency`), so one address cannot take the process's whole
connection ceiling with slow heads; the addresses TTS_TRUSTED_PROXIES names (a proxy carries many clients) are not
capped, and `*` turns the cap off.

A WebSocket upgrade that the app's first layer would refuse anyway (api/socket_guard.py CoolingGate: a key cooling
down after a flood, an address throttled for wrong keys) is answered here with the same 429, after REFUSAL_HOLD_S,
and closed, before a WebSocket protocol, an ASGI task or any middleware exists for it: a wrong-key flood costs the
event loop the parse of its request head and this check (bench/bench_flood_cost.py), and a client that retries as
soon as it is refused waits for each answer.

Only for a direct exposure: behind Modal or a reverse proxy the edge reads the head before anything reaches us.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from typing import Any, cast
from urllib.parse import unquote

from uvicorn.protocols.http.h11_impl import H11Protocol

from api.socket_guard import handshake_refusal, http_refusal
from shared.settings import get_settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # httptools is an optional extra of uvicorn
    _Base = H11Protocol  # type: ignore[assignment,misc]


# How long an upgrade refused before the app (a cooling key, an address throttled for wrong keys) waits for its 429.
# Each answer says to retry in a second or more anyway; a flooder's next attempt waits as long.
REFUSAL_HOLD_S = 1.0
# Connections one client address may hold open on this process (a browser opens 6 per host; a NAT many more).
MAX_CONNECTIONS_PER_ADDRESS = 256
_open_per_address: dict[
    str, int
] = {}  # this process's connections by peer address (the event loop's thread only)


@functools.lru_cache(maxsize=8)
def _trusted(proxies: str) -> tuple[bool, tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]]:
    """(trust every address, the networks named) of a TTS_TRUSTED_PROXIES value."""
    names = [name.strip() for name in proxies.split(",") if name.strip()]
    networks = []
    for name in names:
        try:
            networks.append(ipaddress.ip_network(name, strict=False))
        except ValueError:
            continue  # a host name: uvicorn's own matching applies to it, not this cap
    return "*" in names, tuple(networks)


def _app_state(app: Any) -> Any:
    """The service app's `state` behind uvicorn's wrappers (its proxy headers layer, its trace logger), else None."""
    for _ in range(4):
        state = getattr(app, "state", None)
        if state is not None and hasattr(state, "services"):
            return state
        app = getattr(app, "app", None)
    return None


def _capped(address: str) -> bool:
    everyone, networks = _trusted(get_settings().access.trusted_proxies)
    if everyone:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True
    return not any(ip in network for network in networks)


class _HeadDeadlineMixin:
    """Closes the connection when no complete request head arrived in time. A new request is seen as a new
    `cycle` (uvicorn makes one once the head is parsed); an upgraded connection belongs to another protocol."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any
    head_timeout_s: float | None = None  # None: TTS_HTTP_HEAD_TIMEOUT_S
    max_connections_per_address: int | None = None  # None: MAX_CONNECTIONS_PER_ADDRESS
    refusal_hold_s: float | None = None  # None: REFUSAL_HOLD_S
    MAX_HEAD_BYTES = 64 * 1024  # a request line and headers; browsers send a few KiB

    def data_received(self, data: bytes) -> None:
        if self._refusing:
            return  # an upgrade refused here: whatever else the client sends is dropped unread
        super().data_received(data)  # type: ignore[misc]
        if self._head_timer is not None and self.cycle is self._head_cycle:  # still waiting for this head
            self._head_bytes += len(data)
            if self._head_bytes > self.MAX_HEAD_BYTES and not self.transport.is_closing():
                self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._head_timer: asyncio.TimerHandle | None = None
        self._address: str | None = None
        self._refusing = False
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else None
        cap = (
            self.max_connections_per_address
            if self.max_connections_per_address is not None
            else MAX_CONNECTIONS_PER_ADDRESS
        )
        if address is not None and cap > 0 and _capped(address):
            if _open_per_address.get(address, 0) >= cap:
                transport.close()  # this address holds its share of the process's connections
                return
            _open_per_address[address] = _open_per_address.get(address, 0) + 1
            self._address = address
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        self._leave_address()
        super().connection_lost(exc)  # type: ignore[misc]

    def handle_websocket_upgrade(self, *args: Any) -> None:
        if self._refused_upgrade(*args):
            return  # held, then answered and closed: it keeps its place under the per-address cap meanwhile
        # The transport goes to the WebSocket protocol, whose end this one never hears of: its place is given back
        # now (a socket has its own per-address caps, api/socket_guard.py).
        self._leave_address()
        super().handle_websocket_upgrade(*args)  # type: ignore[misc]

    def _refused_upgrade(self, *args: Any) -> bool:
        """Answer an upgrade the app's CoolingGate would refuse (a cooling key, a wrong-key flood's throttled
        address) here, from the parsed head: no WebSocket protocol, ASGI task or middleware runs for it. The answer
        is held for REFUSAL_HOLD_S first, so a client that reconnects as soon as it is refused makes
        (its connections at a time) / REFUSAL_HOLD_S attempts a second, not as many as the event loop can answer.
        A request that names a forwarded client is left to the app (its proxy layers decide whose address it is)."""
        state = _app_state(getattr(self, "app", None))
        if state is None:
            return False
        if args:  # h11 passes its request event
            target, headers = args[0].target, list(args[0].headers)
        else:  # httptools: the protocol's own parse
            target, headers = getattr(self, "url", b""), getattr(self, "headers", None) or []
        if any(name == b"x-forwarded-for" for name, _ in headers):
            return False
        path, _, query = bytes(target).partition(b"?")
        peer = self.transport.get_extra_info("peername")
        scope = {
            "type": "websocket",
            "path": unquote(path.decode("latin-1")),
            "headers": headers,
            "query_string": query,
            "client": (str(peer[0]), peer[1]) if isinstance(peer, tuple) and len(peer) >= 2 else None,
        }
        err = handshake_refusal(state, scope)
        if err is None:
            return False
        self._refusing = True
        self._cancel_head_deadline()
        hold = self.refusal_hold_s if self.refusal_hold_s is not None else REFUSAL_HOLD_S
        self.loop.call_later(hold, self._refuse, http_refusal(err))
        return True

    def _refuse(self, response: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()

    def _leave_address(self) -> None:
        address, self._address = getattr(self, "_address", None), None
        if address is not None:
            left = _open_per_address.get(address, 0) - 1
            if left > 0:
                _open_per_address[address] = left
            else:
                _open_per_address.pop(address, None)

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        if self.transport.is_closing():
            return
        timeout = (
            self.head_timeout_s
            if self.head_timeout_s is not None
            else get_settings().limits.http_head_timeout_s
        )
        self._head_cycle, self._head_bytes = self.cycle, 0
        if timeout > 0:
            self._head_timer = self.loop.call_later(timeout, self._head_late, self.cycle)

    def _cancel_head_deadline(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_late(self, cycle_before: Any) -> None:
        self._head_timer = None
        if self.cycle is not cycle_before or self.transport.is_closing():
            return  # a request arrived (or the connection is already ending)
        if self.transport.get_protocol() is not cast(asyncio.BaseProtocol, self):
            return  # upgraded to a WebSocket
        self.transport.close()


class HeadDeadline(_HeadDeadlineMixin, _Base):
    """uvicorn's default HTTP protocol (httptools, else h11) with the head deadline."""


class H11HeadDeadline(_HeadDeadlineMixin, H11Protocol):
    """The same on h11 (`--http api.http_protocol:H11HeadDeadline`)."""
