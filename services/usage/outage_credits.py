"""Metered keys during a key-store outage: a bounded allowance instead of 503 for everyone.

When the store cannot take a reservation (`KeyStoreUnavailable`, after the journaled retry) and the key's record is
known (authenticated from the cache, so its balance is known), `CreditLedger.reserve` admits the text against this
container's outage allowance for that key: at most min(the cached balance, `TTS_CREDITS_OUTAGE_ALLOWANCE`) credits
per key per container per outage. Nothing is owed in memory: the request's row carries what it spent on the allowance
(`outage_credits`) and the row's settlement takes it from the balance when the row is stored, at most what the
request is charged and never below zero (deploy/sql/010_credit_reservations.sql). A refunded request is charged
nothing, so nothing of its allowance is taken. The row is spooled durably, so a container that dies during the
outage does not make the spend free. The worst case is bounded: N containers can each let a key spend its allowance
beyond the balance (its cached balance may also be stale by the key cache's TTL); what the balance cannot cover when
the row is stored is not charged (the row says what was).
"""

from __future__ import annotations

from services.keys.records import ApiKeyRecord


class OutageAllowance:
    """Per-key credits spent on the allowance in this outage. Touched only from the event loop thread."""

    def __init__(self, allowance: int) -> None:
        self.allowance = allowance
        self._spent: dict[str, int] = {}  # key id -> credits admitted on the allowance in this outage

    def admit(self, key: ApiKeyRecord, credits: int) -> bool:
        """Count `credits` against `key`'s allowance when they fit (its record must carry a balance)."""
        if key.credit_balance is None or credits <= 0:
            return False
        bound = min(key.credit_balance, self.allowance)
        spent = self._spent.get(key.key_id, 0)
        if spent + credits > bound:
            return False
        self._spent[key.key_id] = spent + credits
        return True

    def give_back(self, key_id: str, credits: int) -> None:
        """A reservation on the allowance was released (its request never started): it no longer counts."""
        left = self._spent.get(key_id, 0) - credits
        if left > 0:
            self._spent[key_id] = left
        else:
            self._spent.pop(key_id, None)

    def store_answered(self) -> None:
        """The store took a reservation again: the outage is over, the next one starts afresh."""
        self._spent.clear()

    def spent(self, key_id: str) -> int:
        return self._spent.get(key_id, 0)
