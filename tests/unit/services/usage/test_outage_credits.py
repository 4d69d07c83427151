"""Metered keys during a key-store outage: served within a bounded allowance; what they
spent on it is taken when the request settles, at most what it is charged, and nothing when it is refunded. A real
StaticKeyStore that can be switched off stands in for the database here (it settles live, by the same rule as
tts_settle_credits); tests/integration/test_money_faults.py runs the same against real PostgreSQL behind a proxy."""

from __future__ import annotations

import pytest

from services.access import StaticKeyStore
from services.keys.records import KeyStoreUnavailable
from services.usage.credits import CreditError, CreditLedger, merge_reservations


class SwitchableStore(StaticKeyStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.lose_answers = 0  # commit, then lose the answer (a dropped connection): the outcome is unknown

    async def debit_credits(self, key_id: str, amount: int):
        if self.down:
            raise KeyStoreUnavailable("down")
        return await super().debit_credits(key_id, amount)

    async def refund_credits(self, key_id: str, amount: int):
        if self.down:
            raise KeyStoreUnavailable("down")
        return await super().refund_credits(key_id, amount)

    async def reserve_credits(self, reservation_id: str, request_id: str, key_id: str, amount: int):
        result = await super().reserve_credits(reservation_id, request_id, key_id, amount)
        if self.lose_answers:
            self.lose_answers -= 1
            raise KeyStoreUnavailable("answer lost")
        return result


def setup(balance: int = 1000, allowance: int = 25):
    store = SwitchableStore()
    key = store.add_plain_key("metered", key_id="metered", credit_balance=balance)
    return store, key, CreditLedger(store, outage_allowance=allowance, retry_delay_s=0)


async def balance(store: StaticKeyStore, key) -> int:
    return (await store.get_by_hash(key.key_hash)).credit_balance


async def test_served_up_to_the_allowance_then_503_and_taken_when_settled() -> None:
    store, key, ledger = setup()
    store.down = True
    held = [await ledger.reserve(key, 10, f"r{i}") for i in range(2)]  # 20 of the 25 allowed
    assert [h.outage_credits for h in held] == [10, 10]
    with pytest.raises(CreditError) as refused:
        await ledger.reserve(key, 10, "r2")  # 30 > 25
    assert (refused.value.code, refused.value.status, refused.value.retry_after) == (
        "SERVICE_UNAVAILABLE",
        503,
        5,
    )
    await ledger.release(held[1])  # never started: nothing owed, its allowance is free again
    assert ledger.outage.spent("metered") == 10
    store.down = False
    assert await ledger.charge(held[0]) == 10  # completed: the outage spend is taken now
    assert await balance(store, key) == 990
    assert await ledger.charge(held[0]) == 10 and await balance(store, key) == 990  # once


async def test_a_refunded_request_on_the_allowance_takes_nothing() -> None:
    store, key, ledger = setup()
    store.down = True
    held = await ledger.reserve(key, 10, "r")
    store.down = False
    assert await ledger.charge(held, refund=True) == 0
    assert await balance(store, key) == 1000


async def test_the_allowance_is_bounded_by_the_cached_balance() -> None:
    store, key, ledger = setup(balance=15, allowance=2000)
    store.down = True
    await ledger.reserve(key, 10, "a")
    with pytest.raises(CreditError):
        await ledger.reserve(key, 10, "b")  # 20 > the 15 the key had


async def test_an_outage_spend_the_balance_no_longer_covers_is_taken_to_zero_and_charged_as_taken() -> None:
    store, key, ledger = setup(balance=30, allowance=25)
    store.down = True
    held = await ledger.reserve(key, 20, "a")
    store.down = False
    await ledger.reserve(key, 25, "elsewhere")  # spent meanwhile (another container): 5 left
    assert await ledger.charge(held) == 5  # what the balance could still give: the row says so
    assert await balance(store, key) == 0


async def test_no_allowance_keeps_the_old_answer() -> None:
    store, key, ledger = setup(allowance=0)
    store.down = True
    with pytest.raises(CreditError) as refused:
        await ledger.reserve(key, 1, "a")
    assert refused.value.status == 503


async def test_a_lost_answer_is_asked_again_under_the_same_id_and_debited_once() -> None:
    store, key, ledger = setup()
    store.lose_answers = 2  # two tries lose their answer; the third finds the journaled reservation
    held = await ledger.reserve(key, 10, "r")
    assert held.state == "held" and held.outage_credits == 0
    assert await balance(store, key) == 990
    assert await ledger.charge(held) == 10 and await balance(store, key) == 990


async def test_an_unknown_outcome_on_the_allowance_is_charged_once() -> None:
    """Every try lost its answer but the debit committed: admitted on the allowance, and the settlement counts the
    committed debit and the allowance once (the claim bounds both)."""
    store, key, ledger = setup()
    store.lose_answers = 3
    held = await ledger.reserve(key, 10, "r")
    assert held.outage_credits == 10 and await balance(store, key) == 990
    assert await ledger.charge(held) == 10 and await balance(store, key) == 990


async def test_blocks_of_one_request_merge_and_are_charged_what_was_used() -> None:
    """A WebSocket utterance reserves blocks, some on the allowance: its claim is what it used, and the settlement
    takes the outage part only beyond what was debited."""
    store, key, ledger = setup()
    live = await ledger.reserve(key, 10, "u")
    store.down = True
    on_allowance = await ledger.reserve(key, 10, "u")
    store.down = False
    merged = merge_reservations("metered", "u", [live, on_allowance])
    assert merged is not None and (merged.credits, merged.outage_credits) == (20, 10)
    merged.credits = 14  # what the utterance used
    assert await ledger.charge(merged) == 14
    assert await balance(store, key) == 986


async def test_a_live_settlement_the_store_cannot_take_waits_and_is_applied_once_it_answers() -> None:
    """No request-log row to carry it (a key store that is not the log's database): it waits in memory."""
    store, key, ledger = setup()
    store.down = True
    held = await ledger.reserve(key, 10, "a")
    assert await ledger.charge(held) == 10 and await balance(store, key) == 1000
    store.down = False
    await ledger.reserve(key, 5, "b")  # the store answers again: the waiting settlement goes in
    await ledger._settling  # noqa: SLF001 - the task it started
    assert await balance(store, key) == 1000 - 10 - 5
    assert await ledger.settle_pending() == 0 and await balance(store, key) == 985
