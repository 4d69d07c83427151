"""The stall guard measures progress: a slow but steady reader is served to the end, a stalled one is cut."""

from __future__ import annotations

import asyncio

from api.delivery import SEND_PIECE_BYTES, GuardedStreamingResponse


async def _body(items: list[bytes]):
    for item in items:
        yield item


def _run(bytes_per_s: float, stall_timeout_s: float, items: list[bytes]) -> tuple[int, bool]:
    received = 0
    finished = False

    async def receive():
        await asyncio.sleep(3600)

    async def send(message):
        nonlocal received, finished
        if message["type"] == "http.response.body":
            await asyncio.sleep(len(message.get("body", b"")) / bytes_per_s)  # the client drains this slowly
            received += len(message.get("body", b""))
            finished = finished or not message.get("more_body", False)

    async def main():
        response = GuardedStreamingResponse(_body(items), stall_timeout_s=stall_timeout_s)
        await response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)

    asyncio.run(main())
    return received, finished


def test_a_slow_but_steady_reader_gets_every_byte() -> None:
    # 10 pieces per item at 0.1 s a piece: 1.0 s per item, twice the 0.5 s stall timeout, yet steady progress.
    items = [b"x" * (10 * SEND_PIECE_BYTES)] * 3
    received, finished = _run(bytes_per_s=SEND_PIECE_BYTES / 0.1, stall_timeout_s=0.5, items=items)
    assert received == sum(map(len, items)) and finished


def test_a_stalled_reader_is_cut_off() -> None:
    received, finished = _run(bytes_per_s=10.0, stall_timeout_s=0.2, items=[b"y" * 100] * 3)
    assert received == 0 and not finished
