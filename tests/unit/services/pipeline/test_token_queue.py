"""TokenQueue: the decoder waits until the queued deltas hold the ids it needs, the try ended, or the queue is full."""

from __future__ import annotations

import asyncio

from services.pipeline.token_queue import TokenQueue


async def _woken_after(queue: TokenQueue, want: int, items: list[object]) -> int | None:
    """How many of `items` were put (one per loop pass) before wait_for_ids(want) returned; None: never."""
    waiter = asyncio.ensure_future(queue.wait_for_ids(want))
    await asyncio.sleep(0)
    for count, item in enumerate(items, 1):
        await queue.put(item)
        await asyncio.sleep(0)
        if waiter.done():
            return count
    waiter.cancel()
    return None


def test_wakes_only_once_enough_ids_are_queued() -> None:
    queue = TokenQueue(maxsize=64)
    assert asyncio.run(_woken_after(queue, 10, [[1, 2, 3, 4]] * 5)) == 3
    assert queue.ids == 12 and queue.qsize() == 3
    assert [queue.get_nowait() for _ in range(3)] == [[1, 2, 3, 4]] * 3 and queue.ids == 0


def test_wakes_at_the_end_of_the_try_or_when_full() -> None:
    end = object()
    assert asyncio.run(_woken_after(TokenQueue(maxsize=64), 100, [[1], [2], end])) == 3
    assert asyncio.run(_woken_after(TokenQueue(maxsize=64), 100, [[1], ValueError("x")])) == 2
    assert asyncio.run(_woken_after(TokenQueue(maxsize=3), 100, [[1], [2], [3]])) == 3
    assert asyncio.run(_woken_after(TokenQueue(maxsize=64), 100, [[1], [2]])) is None


def test_returns_at_once_when_already_ready() -> None:
    async def body() -> None:
        queue = TokenQueue()
        await queue.put([1, 2, 3])
        await asyncio.wait_for(queue.wait_for_ids(3), 1)
        await asyncio.wait_for(queue.wait_for_ids(0), 1)
        assert queue.get_nowait() == [1, 2, 3]
        assert queue.ids == 0

    asyncio.run(body())
