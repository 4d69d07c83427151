"""Document readers shared fairly between keys (services/jobs/documents/isolated.py takes its turns here).

A server process runs at most a few reader children at once. One key's uploads must never hold them all: four
uploads that each took a reader for the whole read timeout made every other key's job, JSON text included, wait
54-61 s. So each key holds at most `per_key` slots of a lane, its further reads queue behind each other, and a freed
slot goes to the waiting key that holds the fewest (the longest-waiting such key first). JSON text jobs read in a
lane of their own and never wait behind an upload.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class FairSlots:
    """`capacity` slots, at most `per_key` held by one key; freed slots go to the waiting key holding the fewest."""

    def __init__(self, capacity: int, per_key: int) -> None:
        self.capacity = capacity
        self.per_key = max(1, min(per_key, capacity))
        self._held: dict[str, int] = {}
        # Keys with reads waiting, the oldest waiting first.
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._granted: dict[str, int] = {}  # key -> when it last got a slot (a count), for ties
        self._grants = 0

    @property
    def in_use(self) -> int:
        return sum(self._held.values())

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        await self._acquire(key)
        try:
            yield
        finally:
            self._release(key)

    async def _acquire(self, key: str) -> None:
        if not self._waiting and self.in_use < self.capacity and self.held(key) < self.per_key:
            self._grant(key)
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append(turn)
        self._hand_out()
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._release(key)  # granted as it was cancelled: give the slot on
            else:
                queue = self._waiting.get(key)
                if queue is not None and turn in queue:
                    queue.remove(turn)
                    if not queue:
                        del self._waiting[key]
            raise

    def _release(self, key: str) -> None:
        left = self.held(key) - 1
        if left > 0:
            self._held[key] = left
        else:
            self._held.pop(key, None)
        self._hand_out()

    def _hand_out(self) -> None:
        while self.in_use < self.capacity:
            ready = [k for k in self._waiting if self.held(k) < self.per_key]
            if not ready:
                return
            # Fewest held; ties: the key served least recently, then the one waiting longest (dict order).
            key = min(ready, key=lambda k: (self.held(k), self._granted.get(k, -1)))
            queue = self._waiting[key]
            turn = queue.popleft()
            if not queue:
                del self._waiting[key]
            if turn.cancelled():
                continue  # its reader gave up waiting (the read timeout)
            self._grant(key)
            turn.set_result(None)

    def _grant(self, key: str) -> None:
        self._held[key] = self.held(key) + 1
        self._grants += 1
        self._granted[key] = self._grants
        if len(self._granted) > 256:  # forget keys neither reading nor waiting (the map stays small)
            self._granted = {k: n for k, n in self._granted.items() if k in self._held or k in self._waiting}


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, FairSlots]] = (
    weakref.WeakKeyDictionary()
)


def reader_slots(lane: str, capacity: int, per_key: int) -> FairSlots:
    """This event loop's slots for `lane` ("upload" or "text")."""
    lanes = _pools.setdefault(asyncio.get_running_loop(), {})
    if lane not in lanes:
        lanes[lane] = FairSlots(capacity, per_key)
    return lanes[lane]
