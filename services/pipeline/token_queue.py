"""The queue between one generation try and its decoder: parsed deltas (lists of semantic ids) and the try's end
(`_END`, a `Trip` or an exception), bounded in items like any `asyncio.Queue`.

What it adds: the decoder can wait until the queue holds as many ids as its planner needs for the next window
(`wait_for_ids`), or the try has ended, or the queue is full. Most engine deltas only add to the planner's buffer,
so a decoder woken for each one would do nothing but a task switch; woken at the threshold it takes the same ids,
in the same order, and plans the same windows at the same moment.
"""

from __future__ import annotations

import asyncio
from typing import Any


class TokenQueue(asyncio.Queue[Any]):
    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.ids = 0  # semantic ids in the queued deltas
        self._ends = 0  # queued items that are not deltas (the end of the try)
        self._want = 0
        self._waiter: asyncio.Future[None] | None = None

    # asyncio.Queue's storage hooks: every put and get goes through them.
    def _put(self, item: Any) -> None:
        super()._put(item)
        if type(item) is list:
            self.ids += len(item)
        else:
            self._ends += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done() and self._ready(self._want):
            waiter.set_result(None)

    def _get(self) -> Any:
        item = super()._get()
        if type(item) is list:
            self.ids -= len(item)
        else:
            self._ends -= 1
        return item

    def _ready(self, count: int) -> bool:
        return self.ids >= count or self._ends > 0 or self.full()

    async def wait_for_ids(self, count: int) -> None:
        """Return once the queue holds `count` ids, or an end, or is full (at once if it already does)."""
        if self._ready(count):
            return
        self._want = count
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
