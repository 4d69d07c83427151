"""Credits: 1 credit per character, refused before work when short, settled once."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.access import StaticKeyStore
from services.usage.credits import CreditLedger, InsufficientCredits, credits_for_text


async def make(balance: int | None) -> tuple[CreditLedger, StaticKeyStore]:
    store = StaticKeyStore()
    store.add_plain_key("paid-key", key_id="paid", credit_balance=balance)
    return CreditLedger(store, enabled=True), store


async def balance(store: StaticKeyStore) -> int | None:
    record = await store.get_by_hash(store._hash_by_id["paid"])
    return record.credit_balance


async def test_reserve_takes_the_cost_and_refuses_what_the_balance_cannot_cover() -> None:
    ledger, store = await make(100)
    key = await store.get_by_hash(store._hash_by_id["paid"])
    assert credits_for_text(30) == 30
    held = await ledger.reserve(key, 30, "r1")
    assert (held.credits, held.balance_after, await balance(store)) == (30, 70, 70)
    with pytest.raises(InsufficientCredits) as info:
        await ledger.reserve(key, 71, "r2")
    err = info.value
    assert (err.code, err.status, err.needed, err.balance) == ("INSUFFICIENT_CREDITS", 403, 71, 70)
    assert "71 credits" in err.message
    assert await balance(store) == 70  # a refusal takes nothing


async def test_charge_is_final_and_release_refunds_once() -> None:
    ledger, store = await make(100)
    key = await store.get_by_hash(store._hash_by_id["paid"])
    used = await ledger.reserve(key, 10, "r1")
    assert await ledger.charge(used, audio_seconds=1.2) == 10
    assert await ledger.charge(used) == 10
    await ledger.release(used)  # already charged: no refund
    failed = await ledger.reserve(key, 20, "r2")
    await ledger.release(failed)
    await ledger.release(failed)
    assert await ledger.charge(failed) == 0
    assert await balance(store) == 90


async def test_concurrent_reservations_never_overspend() -> None:
    ledger, store = await make(50)
    key = await store.get_by_hash(store._hash_by_id["paid"])
    results = await asyncio.gather(
        *(ledger.reserve(key, 10, f"r{i}") for i in range(8)), return_exceptions=True
    )
    assert sum(not isinstance(r, Exception) for r in results) == 5
    assert await balance(store) == 0


async def test_unlimited_keys_and_disabled_credits_are_free() -> None:
    ledger, store = await make(None)
    key = await store.get_by_hash(store._hash_by_id["paid"])
    res = await ledger.reserve(key, 10_000, "r1")
    assert res.state == "free" and await ledger.charge(res) == 0
    limited_ledger, limited_store = await make(5)
    limited = await limited_store.get_by_hash(limited_store._hash_by_id["paid"])
    off = CreditLedger(limited_store, enabled=False)
    assert (await off.reserve(limited, 10_000, "r2")).state == "free"
    assert await balance(limited_store) == 5


def test_the_billing_rule_refunds_server_failures_and_charges_what_the_client_chose() -> None:
    from services.usage.credits import settle_credits

    assert settle_credits("completed", None, 3.0)
    assert settle_credits("disconnected", None, 1.0)  # the client hung up: audio was delivered
    assert not settle_credits("failed", 504, 2.0)  # a stream cut by the server's own timeout: refunded
    assert not settle_credits("failed", 500, 2.0)
    assert not settle_credits("failed", 503, 0.5)  # GPU fault mid-stream
    assert settle_credits("failed", 413, 1.0)  # a client error after audio (e.g. buffer cap) is the client's
    assert not settle_credits("completed", None, 0.0)  # no audio, no charge


def test_a_stream_the_server_cut_at_shutdown_is_interrupted_and_refunded() -> None:
    """Uvicorn's cut past the graceful window looked like a client hang-up and was charged."""
    from types import SimpleNamespace

    from services.usage import shutdown
    from services.usage.accounting import RequestAccounting
    from services.usage.credits import settle_credits

    request = SimpleNamespace(
        request_id="r1",
        stream=False,
        audio_format="wav",
        sample_rate=16000,
        voice=SimpleNamespace(id="v", metric_label="v"),
    )
    job = SimpleNamespace(
        request=request,
        stats=SimpleNamespace(output_samples=16000, sent_chunks=1, sent_bytes=10, text_chunks=1),
    )
    settled = []
    try:
        shutdown.mark_shutting_down()
        report = RequestAccounting(job, transport="http", clock_origin=0.0, settle=settled.append).finish(
            "disconnected"
        )
    finally:
        shutdown.reset()
    assert report is not None and report.status == "interrupted" and settled == [report]
    assert settle_credits("interrupted", None, 1.0) is False  # refunded although audio was delivered
    assert settle_credits("disconnected", None, 1.0) is True  # a real hang-up is still charged


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.integers(0, 40), max_size=4), st.integers(0, 40), st.integers(-5, 200)),
        max_size=8,
    ),
    st.integers(0, 300),
)
def test_the_books_balance_whatever_is_reserved_claimed_or_spent_on_the_allowance(requests, initial) -> None:
    """The settlement rule (the in-memory journal's copy of tts_settle_credits): for any reservations, outage spend
    and claims, initial - balance == the sum of what the requests were charged, and nothing stays journaled."""
    from services.access import StaticKeyStore

    async def run() -> None:
        store = StaticKeyStore()
        store.add_plain_key("k", key_id="k", credit_balance=initial)
        charged = 0
        for n, (parts, outage, claim) in enumerate(requests):
            for i, amount in enumerate(parts):
                await store.reserve_credits(f"{n}-{i}", f"r{n}", "k", amount)
            charged += (await store.settle_credits(f"r{n}", "k", claim, outage)).charged
            assert (await store.reserve_credits(f"{n}-late", f"r{n}", "k", 1)).status == "settled"
        record = await store.get_by_hash(store._hash_by_id["k"])
        assert initial - record.credit_balance == charged and record.credit_balance >= 0
        assert store._journal() == {}

    asyncio.run(run())
