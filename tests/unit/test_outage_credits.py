"""Metered keys during a key-store outage (issue 27 item 7): served within a bounded allowance, and what they spent
is debited once the store answers. A real StaticKeyStore that can be switched off stands in for the database here;
tests/integration/test_credits_outage.py stops real PostgreSQL under a real server."""

from __future__ import annotations

import pytest

from services.access import StaticKeyStore
from services.access.keys import KeyStoreUnavailable
from services.usage.credits import CreditError, CreditLedger


class SwitchableStore(StaticKeyStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def debit_credits(self, key_id: str, amount: int):
        if self.down:
            raise KeyStoreUnavailable("down")
        return await super().debit_credits(key_id, amount)

    async def refund_credits(self, key_id: str, amount: int):
        if self.down:
            raise KeyStoreUnavailable("down")
        return await super().refund_credits(key_id, amount)


def setup(balance: int = 1000, allowance: int = 25):
    store = SwitchableStore()
    key = store.add_plain_key("metered", key_id="metered", credit_balance=balance)
    return store, key, CreditLedger(store, outage_allowance=allowance)


async def balance(store: StaticKeyStore, key) -> int:
    return (await store.get_by_hash(key.key_hash)).credit_balance


async def test_served_up_to_the_allowance_then_503_with_retry_after_and_debited_after() -> None:
    store, key, ledger = setup()
    store.down = True
    held = [await ledger.reserve(key, 10, f"r{i}") for i in range(2)]  # 20 of the 25 allowed
    with pytest.raises(CreditError) as refused:
        await ledger.reserve(key, 10, "r2")  # 30 > 25
    assert (refused.value.code, refused.value.status, refused.value.retry_after) == ("SERVICE_UNAVAILABLE", 503, 5)
    assert await ledger.charge(held[0]) == 10  # completed: charged (owed)
    await ledger.release(held[1])  # failed before audio: nothing owed for it
    assert ledger.outage.pending == 10
    store.down = False
    assert await ledger.outage.drain(store) == 10
    assert await balance(store, key) == 990 and ledger.outage.pending == 0
    assert await ledger.outage.drain(store) == 0  # again: nothing is debited twice


async def test_the_allowance_is_bounded_by_the_cached_balance() -> None:
    store, key, ledger = setup(balance=15, allowance=2000)
    store.down = True
    await ledger.reserve(key, 10, "a")
    with pytest.raises(CreditError):
        await ledger.reserve(key, 10, "b")  # 20 > the 15 the key had


async def test_a_debt_the_balance_no_longer_covers_is_taken_to_zero_and_written_off() -> None:
    store, key, ledger = setup(balance=30, allowance=25)
    store.down = True
    await ledger.charge(await ledger.reserve(key, 20, "a"))
    store.down = False
    await ledger.reserve(key, 25, "elsewhere")  # spent meanwhile (another container): 5 left
    await ledger.outage.drain(store)
    assert await balance(store, key) == 0 and ledger.outage.written_off == 15


async def test_the_next_successful_debit_drains_in_the_background() -> None:
    store, key, ledger = setup()
    store.down = True
    await ledger.charge(await ledger.reserve(key, 10, "a"))
    store.down = False
    await ledger.charge(await ledger.reserve(key, 5, "b"))
    await ledger._drain  # noqa: SLF001 - the drain it started
    assert await balance(store, key) == 985


async def test_no_allowance_keeps_the_old_answer() -> None:
    store, key, ledger = setup(allowance=0)
    store.down = True
    with pytest.raises(CreditError) as refused:
        await ledger.reserve(key, 1, "a")
    assert refused.value.status == 503


async def test_a_request_id_reserving_twice_owes_both_and_a_shrunk_hold_owes_less() -> None:
    """A WebSocket utterance reserves under one id more than once, and its true-up releases part of a hold
    (services/access/gate.py): each reservation is its own debt, and releasing part of one owes that much less."""
    from services.usage.credits import CreditReservation

    store, key, ledger = setup()
    store.down = True
    first = await ledger.reserve(key, 10, "utterance")
    second = await ledger.reserve(key, 3, "utterance")
    assert ledger.outage.pending == 13
    rest = CreditReservation(key.key_id, "utterance", 4, None, state=first.state, debt_id=first.debt_id)
    await ledger.release(rest)
    assert await ledger.charge(first) == 6 and await ledger.charge(second) == 3
    store.down = False
    await ledger.outage.drain(store)
    assert await balance(store, key) == 991
