"""Document readers shared fairly (issue 98): one key's four uploads held both readers for the whole read timeout,
and every other key's job, JSON text included, waited behind them. Each key now holds at most its share of a lane's
slots, its further reads queue behind each other, and a freed slot goes to the waiting key that holds the fewest."""

from __future__ import annotations

import asyncio

import pytest

from services.jobs.documents.reader_slots import FairSlots, reader_slots


def test_one_keys_uploads_never_take_every_slot() -> None:
    async def main() -> list[str]:
        slots = FairSlots(capacity=2, per_key=1)
        order: list[str] = []
        release = asyncio.Event()

        async def read(key: str, name: str) -> None:
            async with slots.slot(key):
                order.append(name)
                await release.wait()

        attack = [asyncio.create_task(read("A", f"A{i}")) for i in range(4)]
        await asyncio.sleep(0.01)
        assert order == ["A0"] and slots.held("A") == 1  # its other three queue behind its first
        other = asyncio.create_task(read("B", "B0"))
        await asyncio.sleep(0.01)
        assert order == ["A0", "B0"]  # another key reads at once, beside the attack
        release.set()
        await asyncio.gather(*attack, other)
        return order

    assert asyncio.run(main()) == ["A0", "B0", "A1", "A2", "A3"]


def test_a_freed_slot_goes_to_the_waiting_key_holding_the_fewest() -> None:
    async def main() -> list[str]:
        slots = FairSlots(capacity=2, per_key=2)
        order: list[str] = []
        gates = {name: asyncio.Event() for name in ("A0", "A1", "A2", "B0", "C0")}

        async def read(key: str, name: str) -> None:
            async with slots.slot(key):
                order.append(name)
                await gates[name].wait()

        tasks = [asyncio.create_task(read("A", name)) for name in ("A0", "A1", "A2")]
        await asyncio.sleep(0.01)
        tasks += [asyncio.create_task(read("B", "B0")), asyncio.create_task(read("C", "C0"))]
        await asyncio.sleep(0.01)
        assert order == ["A0", "A1"]
        gates["A0"].set()  # A still holds one; B and C hold none: B (waiting longer than C) goes first
        await asyncio.sleep(0.01)
        gates["A1"].set()
        await asyncio.sleep(0.01)
        for gate in gates.values():
            gate.set()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(main())[:4] == ["A0", "A1", "B0", "C0"]


def test_a_reader_that_gives_up_waiting_leaves_no_slot_behind() -> None:
    async def main() -> None:
        slots = FairSlots(capacity=1, per_key=1)
        held = asyncio.Event()

        async def hold() -> None:
            async with slots.slot("A"):
                await held.wait()

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                async with slots.slot("B"):
                    pass
        held.set()
        await holder
        assert slots.in_use == 0
        async with asyncio.timeout(1):
            async with slots.slot("B"):
                assert slots.held("B") == 1

    asyncio.run(main())


def test_json_text_reads_in_a_lane_of_its_own() -> None:
    async def main() -> None:
        uploads = reader_slots("upload", 2, 1)
        assert reader_slots("text", 2, 1) is not uploads and reader_slots("upload", 2, 1) is uploads

    asyncio.run(main())
