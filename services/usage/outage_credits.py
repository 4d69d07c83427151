"""Metered keys during a key-store outage: a bounded allowance instead of 503 for everyone.

When the store cannot take a debit (`KeyStoreUnavailable`) and the key's record is known (authenticated from the
cache, so its balance is known), `CreditLedger.reserve` admits the request against this container's outage
allowance for that key: at most min(the cached balance, `TTS_CREDITS_OUTAGE_ALLOWANCE`) credits per key per
container per outage. What is spent is kept here as debts (`record_outage_debit`) and debited from the store once it
answers again (`drain`), so the balance ends up reflecting the outage spend. The worst case is bounded: N containers
can each overspend a key by its allowance (its cached balance may also be stale by the key cache's TTL); what the
balance cannot cover when the debt is drained is taken down to zero and logged as written off.

The debts live in memory: a container that dies during the outage loses them (the spend is then free, still within
the bound). A durable version records each debt with the request's durable record (the request spool) and drains
from there; the interface is the two calls below.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from services.access.keys import ApiKeyRecord, KeyStoreUnavailable
from services.access.stores import KeyStore

logger = logging.getLogger("services.usage.outage_credits")


@dataclass
class _Debt:
    key_id: str
    key_hash: str
    credits: int


class OutageDebts:
    """Per-key outage allowances and the debts run up under them. Touched only from the event loop thread."""

    def __init__(self, allowance: int) -> None:
        self.allowance = allowance
        self._debts: dict[str, _Debt] = {}  # debt id (one per reservation) -> credits not yet debited
        self._spent: dict[str, int] = {}  # key id -> credits spent in this outage, drained or not
        self._drain_lock = asyncio.Lock()
        self.written_off = 0  # credits the balance could not cover when drained (tests, logs)

    def admit(self, key: ApiKeyRecord, credits: int) -> bool:
        """True when `credits` fit in what is left of `key`'s allowance (its record must carry a balance)."""
        if key.credit_balance is None:
            return False
        bound = min(key.credit_balance, self.allowance)
        return self._spent.get(key.key_id, 0) + credits <= bound

    def record_outage_debit(self, key: ApiKeyRecord, debt_id: str, credits: int) -> None:
        """Count `credits` against the key's allowance and owe them to the store, under `debt_id` (recording the
        same id again replaces that debt: a retried record is not owed twice)."""
        previous = self._debts.get(debt_id)
        if previous is not None:
            self._spent[previous.key_id] -= previous.credits
        self._debts[debt_id] = _Debt(key.key_id, key.key_hash, credits)
        self._spent[key.key_id] = self._spent.get(key.key_id, 0) + credits

    def reduce(self, debt_id: str | None, credits: int) -> int:
        """Owe `credits` less on a debt (a refund, by the billing rule); returns what is left of it."""
        debt = self._debts.get(debt_id or "")
        if debt is None:
            return 0
        taken = min(credits, debt.credits)
        debt.credits -= taken
        self._spent[debt.key_id] = self._spent.get(debt.key_id, 0) - taken
        if debt.credits <= 0:
            del self._debts[debt_id or ""]
        return debt.credits

    def owed(self, debt_id: str | None) -> int:
        debt = self._debts.get(debt_id or "")
        return debt.credits if debt is not None else 0

    @property
    def pending(self) -> int:
        return sum(debt.credits for debt in self._debts.values())

    async def drain(self, store: KeyStore) -> int:
        """Debit what is owed, request by request; returns the credits debited. Safe to call again and from several
        tasks (one drains at a time); on KeyStoreUnavailable the debt in hand and the rest stay owed.
        With nothing owed any more the allowances start afresh for the next outage."""
        async with self._drain_lock:
            debited = 0
            for debt_id in list(self._debts):
                # Taken out first: while its debit is in flight the request's settlement treats it as debited
                # (a refund then goes to the store), so nothing is both refunded here and debited there.
                debt = self._debts.pop(debt_id, None)
                if debt is None:
                    continue
                try:
                    debited += await self._debit(store, debt)
                except KeyStoreUnavailable:
                    self._debts[debt_id] = debt
                    return debited  # still down: try again later
            if not self._debts:
                self._spent.clear()
            return debited

    async def _debit(self, store: KeyStore, debt: _Debt) -> int:
        if debt.credits <= 0:
            return 0
        result = await store.debit_credits(debt.key_id, debt.credits)
        if result.ok:
            logger.info("outage credits debited", extra={"key_id": debt.key_id, "credits": debt.credits})
            return debt.credits
        # The balance no longer covers the debt (spent elsewhere meanwhile): take what is left, write off the rest.
        fresh = await store.get_by_hash(debt.key_hash)
        left = fresh.credit_balance if fresh is not None and fresh.credit_balance is not None else 0
        taken = 0
        if left > 0 and (await store.debit_credits(debt.key_id, min(left, debt.credits))).ok:
            taken = min(left, debt.credits)
        self.written_off += debt.credits - taken
        logger.error("outage credits written off", extra={"key_id": debt.key_id, "credits": debt.credits - taken})
        return taken
