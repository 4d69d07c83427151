"""One writer per WebSocket: every JSON event and audio frame goes out through a bounded queue and one task,
so sends never interleave, a cancelled utterance's waiting frames are dropped, and a stalled client is cut off."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from shared import metrics

logger = logging.getLogger("services.sessions.ws_outbox")


class Transport(Protocol):
    async def send_text(self, data: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...


class Owner(Protocol):
    """What an outgoing item may belong to; once `cancelled`, its items still waiting are dropped."""

    cancelled: bool

    def delivered(self, size: int) -> None:
        """One of its audio frames (`size` bytes) went out."""

    def reached(self, seconds: float) -> None:
        """Its audio up to `seconds` is on the socket (what a stream the server ends early is charged for)."""


class ClientStalled(Exception):
    """The client accepted nothing for longer than the send timeout."""


@dataclass(frozen=True)
class _Item:
    payload: dict[str, Any] | bytes
    owner: Owner | None
    audio_to: float | None = None  # the owner's audio is on the socket up to here once this item is sent


class Outbox:
    """The connection's only writer: one task drains two bounded queues, so sends never interleave.

    The stream lane carries an utterance's `started`, audio, `progress`, `done` and its own `error`, in order;
    it is bounded, so a slow reader pauses synthesis (backpressure). The reply lane (pong, acks, errors about a
    client message) goes first, so a `cancel` is answered without waiting behind queued audio. Items of a
    cancelled owner are skipped. A send that does not finish within `send_timeout_s` ends the writer with
    `ClientStalled`; any send error ends it too (see `failure`).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        max_items: int = 16,
        send_timeout_s: float = 30.0,
        reply_items: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.send_timeout_s = send_timeout_s
        self._stream: asyncio.Queue[_Item] = asyncio.Queue(max(1, max_items))
        self._replies: asyncio.Queue[_Item] = asyncio.Queue(max(1, reply_items))
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._clock = clock
        self.last_activity = clock()
        self.task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None
        self.closed = False
        self.frames_sent = 0
        self.skipped = 0

    def start(self) -> asyncio.Task[None]:
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name="ws-writer")
        return self.task

    def touch(self) -> None:
        """Something happened on the connection (a client message): the idle clock restarts."""
        self.last_activity = self._clock()

    async def send(
        self, payload: dict[str, Any], *, owner: Owner | None = None, audio_to: float | None = None
    ) -> None:
        """A JSON event in stream order (after the audio already queued); `audio_to`: see `_Item`."""
        await self._put(self._stream, _Item(payload, owner, audio_to))

    async def audio(self, data: bytes, *, owner: Owner | None = None, audio_to: float | None = None) -> None:
        await self._put(self._stream, _Item(data, owner, audio_to))

    async def reply(self, payload: dict[str, Any]) -> None:
        """A JSON answer to a client message; overtakes queued stream items."""
        await self._put(self._replies, _Item(payload, None))

    async def drain(self, timeout_s: float) -> bool:
        """Wait until everything queued has been sent; False on timeout or when the writer is gone."""
        deadline = self._clock() + timeout_s
        while not self.closed:
            if self._stream.empty() and self._replies.empty() and self._idle.is_set():
                return True
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(0.01, remaining))
        return False

    async def close(self) -> None:
        self.closed = True
        if self.task is not None:
            if not self.task.done():
                self.task.cancel()
            await asyncio.gather(
                self.task, return_exceptions=True
            )  # also retrieves a failure (kept in .failure)

    async def _put(self, queue: asyncio.Queue[_Item], item: _Item) -> None:
        if self.closed:
            return
        await queue.put(item)
        self._wake.set()

    def _next(self) -> _Item | None:
        for queue in (self._replies, self._stream):
            if not queue.empty():
                return queue.get_nowait()
        return None

    async def _run(self) -> None:
        try:
            while True:
                item = self._next()
                if item is None:
                    self._wake.clear()  # no await since _next(): a put cannot slip in between
                    await self._wake.wait()
                    continue
                if item.owner is not None and item.owner.cancelled:
                    self.skipped += 1
                    continue
                self._idle.clear()
                try:
                    await asyncio.wait_for(self._send(item.payload), self.send_timeout_s)
                except TimeoutError:
                    metrics.STALLED_CLIENTS.inc()
                    logger.warning(
                        "websocket client stalled; closing", extra={"send_timeout_s": self.send_timeout_s}
                    )
                    raise ClientStalled from None
                finally:
                    self._idle.set()
                self.last_activity = self._clock()
                if item.owner is not None and isinstance(item.payload, bytes):
                    item.owner.delivered(len(item.payload))
                if item.owner is not None and item.audio_to is not None:
                    item.owner.reached(item.audio_to)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.failure = exc
            self.closed = True
            raise

    async def _send(self, payload: dict[str, Any] | bytes) -> None:
        if isinstance(payload, bytes):
            await self.transport.send_bytes(payload)
            self.frames_sent += 1
        else:
            await self.transport.send_text(json.dumps(payload, separators=(",", ":")))
