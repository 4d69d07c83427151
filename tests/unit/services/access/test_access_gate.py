"""The WebSocket gate's credits: text reserved in blocks, not per frame; a block in flight when the
socket's task is cancelled still lands in the utterance's accounting; nothing is held after settlement."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from services.access import AccessGate, StaticKeyStore
from services.errors import SynthesisError
from services.usage.credits import CreditLedger


class CountingStore(StaticKeyStore):
    def __init__(self) -> None:
        super().__init__()
        self.reserves = 0
        self.gate: asyncio.Event | None = None  # when set: reserves wait for it (a database answering late)

    async def reserve_credits(self, reservation_id: str, request_id: str, key_id: str, amount: int):
        self.reserves += 1
        result = await super().reserve_credits(reservation_id, request_id, key_id, amount)
        if self.gate is not None:
            await self.gate.wait()  # committed; the answer is late
        return result


class Access:
    """The parts of AccessServices the gate uses."""

    authenticator = None

    def __init__(self, store: StaticKeyStore, block: int) -> None:
        self.ledger = CreditLedger(store, enabled=True)
        self.settings = SimpleNamespace(usage=SimpleNamespace(credits_reserve_ahead=block))
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        return task

    async def reserve(self, key, characters, request_id, client_request_id, *, journaled):
        return await self.ledger.reserve(key, characters, request_id=request_id)

    async def release(self, grant) -> None:
        if grant.reservation is not None:
            await self.ledger.release(grant.reservation)


async def setup(balance: int = 100, block: int = 8):
    store = CountingStore()
    store.add_plain_key("paid", key_id="p", credit_balance=balance)
    key = await store.get_by_hash(store._hash_by_id["p"])
    access = Access(store, block)
    return store, key, access, AccessGate(access, key, connection_counted=True)  # type: ignore[arg-type]


async def balance(store: StaticKeyStore) -> int:
    return (await store.get_by_hash(store._hash_by_id["p"])).credit_balance


async def test_one_character_frames_reserve_one_block_per_block_size() -> None:
    store, _, _, gate = await setup(block=8)
    for _ in range(20):
        await gate.charge_text("u1", 1)
    assert store.reserves == 3 and await balance(store) == 100 - 24


async def test_the_last_credits_are_reserved_exactly_then_text_is_refused() -> None:
    store, _, _, gate = await setup(balance=10, block=8)
    for _ in range(10):
        await gate.charge_text("u1", 1)  # a block of 8, then the last 2 exactly
    assert await balance(store) == 0
    with pytest.raises(SynthesisError) as refused:
        await gate.charge_text("u1", 1)
    assert refused.value.code == "INSUFFICIENT_CREDITS"


async def test_text_after_settlement_reserves_nothing() -> None:
    store, _, access, gate = await setup()
    gate.settle("u1", None)
    await gate.charge_text("u1", 30)
    await asyncio.gather(*access.tasks)
    assert store.reserves == 0 and await balance(store) == 100


async def test_a_block_in_flight_when_the_socket_task_is_cancelled_is_given_back_at_settlement() -> None:
    """The client left (or the server ended the socket) while the database was answering: the debit commits, the
    socket's task is cancelled, the utterance settles (never started): the late block is released, not lost."""
    store, _, access, gate = await setup()
    store.gate = asyncio.Event()
    frame = asyncio.ensure_future(gate.charge_text("u1", 5))
    while store.reserves == 0:
        await asyncio.sleep(0)
    frame.cancel()
    with pytest.raises(asyncio.CancelledError):
        await frame
    gate.settle("u1", None)
    assert await balance(store) == 92  # committed, answer still in flight
    store.gate.set()
    while access.tasks and not all(t.done() for t in access.tasks):
        await asyncio.sleep(0.01)
    assert await balance(store) == 100
