"""uvicorn's HTTP protocol with a deadline for the request head: `uvicorn --http api.http_protocol:HeadDeadline`.

uvicorn (0.54) arms its keep-alive timer only after a response, and cancels it on any byte received, so a client
that opens a connection and sends its request line and headers a byte at a time holds the connection (and a place
under `--limit-concurrency`) for as long as it likes. Here the head of each request (the first on a connection,
and each later one on a kept-alive connection) must be complete within TTS_HTTP_HEAD_TIMEOUT_S of the connection
opening or of the previous response ending; otherwise the connection is closed without an answer, as nginx does
at `client_header_timeout`. A head is also capped at MAX_HEAD_BYTES (h11 caps it at 16 KiB itself; httptools, the
default parser when installed, does not cap it at all). A request body has its own deadline in the app (TTS_BODY_TIMEOUT_S, 408), and a
WebSocket its own limits once upgraded (api/socket_guard.py).

Only for a direct exposure: behind Modal or a reverse proxy the edge reads the head before anything reaches us.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from shared.settings import get_settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # httptools is an optional extra of uvicorn
    _Base = H11Protocol  # type: ignore[assignment,misc]


class _HeadDeadlineMixin:
    """Closes the connection when no complete request head arrived in time. A new request is seen as a new
    `cycle` (uvicorn makes one once the head is parsed); an upgraded connection belongs to another protocol."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any
    head_timeout_s: float | None = None  # None: TTS_HTTP_HEAD_TIMEOUT_S
    MAX_HEAD_BYTES = 64 * 1024  # a request line and headers; browsers send a few KiB

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        if self._head_timer is not None and self.cycle is self._head_cycle:  # still waiting for this head
            self._head_bytes += len(data)
            if self._head_bytes > self.MAX_HEAD_BYTES and not self.transport.is_closing():
                self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        if self.transport.is_closing():
            return
        timeout = self.head_timeout_s if self.head_timeout_s is not None else get_settings().http_head_timeout_s
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
        if self.transport.get_protocol() is not self:
            return  # upgraded to a WebSocket
        self.transport.close()


class HeadDeadline(_HeadDeadlineMixin, _Base):  # type: ignore[misc,valid-type]
    """uvicorn's default HTTP protocol (httptools, else h11) with the head deadline."""


class H11HeadDeadline(_HeadDeadlineMixin, H11Protocol):
    """The same on h11 (`--http api.http_protocol:H11HeadDeadline`)."""
