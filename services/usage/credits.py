"""Credits: what a request costs and taking it from the key's balance.

Unit: 1 credit = 1 character of the request text as the client sent it (before normalisation, so a
client can predict the price; `len(text)` in Unicode code points). Audio seconds are recorded with the
charge but not billed. A key whose `credit_balance` is None is unlimited.

Flow (credits enabled):
  1. `reserve()` before any GPU work: atomically takes the cost from the balance only if it covers it
     (PostgreSQL: one conditional UPDATE; Supabase: the SQL function tts_debit_credits; static: in
     memory). Short balance -> InsufficientCredits (INSUFFICIENT_CREDITS 403). Taking the credits up
     front means concurrent requests of one key cannot overspend it.
  2. After the request: `charge()` when audio was produced (also when the client disconnected midway:
     the work was done), `release()` to give the credits back when it failed before any audio.
     Both are idempotent. A refund the store cannot take (an outage) is owed through the request log: the row's
     `refund_credits`, applied when the row is first stored (services/usage/request_sinks.py). A process that dies
     leaves an intent row carrying its whole reservation, recovered as `interrupted` and refunded the same way.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Literal

from services.access.keys import ApiKeyRecord, KeyStoreUnavailable
from services.access.stores import KeyStore
from services.usage.outage_credits import OutageDebts

logger = logging.getLogger("services.usage.credits")


class CreditError(Exception):
    def __init__(self, code: str, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.retry_after = retry_after


class InsufficientCredits(CreditError):
    def __init__(self, needed: int, balance: int | None) -> None:
        have = "unknown" if balance is None else str(balance)
        super().__init__(
            "INSUFFICIENT_CREDITS",
            403,
            f"This request costs {needed} credits (1 credit per character of text) and the key has {have}; "
            "shorten the text or top up the key.",
        )
        self.needed = needed
        self.balance = balance


def credits_for_text(text_length: int) -> int:
    """Cost of a text of `text_length` characters."""
    return max(0, int(text_length))


@dataclass
class CreditReservation:
    key_id: str
    request_id: str
    credits: int
    balance_after: int | None  # None: unlimited key or credits disabled
    # "outage": admitted against the outage allowance (services/usage/outage_credits.py), owed to the store
    state: Literal["held", "charged", "released", "free", "outage"] = "held"
    audio_seconds: float | None = None
    debt_id: str | None = None  # an "outage" reservation's debt in `CreditLedger.outage`
    # Credits the key store could not give back live (an outage): the request-log row carries them and its first store
    # gives them back (RequestRecord.refund_credits, services/usage/request_sinks.py), so no refund is lost.
    refund_owed: int = 0


class CreditLedger:
    """Reserve/charge/release against the key store. With `enabled` False every call is free and local."""

    def __init__(self, store: KeyStore, enabled: bool = True, outage_allowance: int = 0) -> None:
        self.store = store
        self.enabled = enabled
        self.outage = OutageDebts(outage_allowance)
        self._drain: asyncio.Task | None = None

    async def reserve(self, key: ApiKeyRecord, text_length: int, request_id: str) -> CreditReservation:
        cost = credits_for_text(text_length)
        if not self.enabled or cost == 0 or key.credit_balance is None:
            # Unlimited per the (possibly cached) record: no store round trip on the request path.
            return CreditReservation(key.key_id, request_id, 0, None, state="free")
        try:
            result = await self.store.debit_credits(key.key_id, cost)
        except KeyStoreUnavailable as exc:
            logger.error("credit store unavailable", extra={"key_id": key.key_id, "error": str(exc)})
            if self.outage.admit(key, cost):  # within this key's outage allowance: served, owed to the store
                debt_id = uuid.uuid4().hex  # one per reservation (a request id may reserve more than once)
                self.outage.record_outage_debit(key, debt_id, cost)
                return CreditReservation(key.key_id, request_id, cost, None, state="outage", debt_id=debt_id)
            raise CreditError(
                "SERVICE_UNAVAILABLE",
                503,
                "Credit balance cannot be checked right now; retry in a few seconds.",
                retry_after=5,
            ) from None
        if self.outage.pending and (self._drain is None or self._drain.done()):
            # The store answers again: debit what was spent during the outage (in the background).
            self._drain = asyncio.ensure_future(self.outage.drain(self.store))
        if not result.ok:
            logger.info("insufficient credits", extra={"key_id": key.key_id, "needed": cost})
            raise InsufficientCredits(cost, await self._current_balance(key, result.balance))
        return CreditReservation(key.key_id, request_id, cost, result.balance)

    async def _current_balance(self, key: ApiKeyRecord, reported: int | None) -> int | None:
        """The balance to quote in a refusal: fresh from the store, not the cached record's."""
        if reported is not None:
            return reported
        try:
            fresh = await self.store.get_by_hash(key.key_hash)
        except Exception:
            return None
        return fresh.credit_balance if fresh is not None else None

    async def charge(self, reservation: CreditReservation, *, audio_seconds: float | None = None,
                     undelivered: int = 0) -> int:
        """Settle a reservation as used; returns the credits charged (for RequestRecord.credits_charged).
        `undelivered`: credits of text whose audio was not delivered (a streamed chunk cut by a generation guard),
        given back."""
        reservation.audio_seconds = audio_seconds
        if reservation.state == "outage":
            if self.outage.owed(reservation.debt_id):  # not taken from the store yet: owe less, not refund
                reservation.credits = self.outage.reduce(reservation.debt_id, max(0, undelivered))
                reservation.state = "charged"
            else:  # already debited by a drain: settle as any reservation
                reservation.state = "held"
        if reservation.state == "held":
            refund = min(max(0, undelivered), reservation.credits)
            if refund:
                try:
                    await self.store.refund_credits(reservation.key_id, refund)
                except Exception as exc:  # noqa: BLE001 - owed: the request-log row gives it back when stored
                    reservation.refund_owed += refund
                    logger.error("credit refund failed; owed through the request log", extra={
                        "key_id": reservation.key_id, "credits": refund, "error_class": type(exc).__name__})
                reservation.credits -= refund
            reservation.state = "charged"
            logger.info(
                "credits charged",
                extra={
                    "key_id": reservation.key_id,
                    "credits": reservation.credits,
                    "audio_seconds": audio_seconds,
                },
            )
        return reservation.credits if reservation.state == "charged" else 0

    async def release(self, reservation: CreditReservation) -> None:
        """Give the held credits back (the request failed before producing audio)."""
        if reservation.state == "outage":
            if self.outage.owed(reservation.debt_id):  # never taken from the store: nothing is owed for it
                self.outage.reduce(reservation.debt_id, reservation.credits)
                reservation.state = "released"
                return
            reservation.state = "held"  # already debited by a drain: refunded as any reservation
        if reservation.state != "held":
            return
        reservation.state = "released"
        try:
            await self.store.refund_credits(reservation.key_id, reservation.credits)
        except Exception as exc:  # noqa: BLE001 - owed: the request-log row gives it back when stored
            reservation.refund_owed += reservation.credits
            logger.error("credit refund failed; owed through the request log", extra={
                "key_id": reservation.key_id, "credits": reservation.credits, "error_class": type(exc).__name__})


def settle_credits(status: str, error_status: int | None, audio_seconds: float) -> bool:
    """The billing rule: True charges the reservation, False refunds it.

    Completed requests and client hang-ups are charged (the client chose to stop); a request that produced no
    audio, or that ended on a server-side error (5xx: generation failure or timeout, GPU fault, a stream cut by
    the server, including `interrupted`: cut by the server's shutdown or left by a process that died) is refunded in
    full, even when some audio was delivered before the failure."""
    if audio_seconds <= 0 or status == "interrupted":  # interrupted: cut by the server (shutdown, a dead process)
        return False
    if status == "failed" and (error_status is None or error_status >= 500):
        return False
    return True


def undelivered_credits(reserved: int, chars_cut: int, chars_total: int) -> int:
    """The share of a reservation for text whose audio was cut short by a generation guard (not charged)."""
    if reserved <= 0 or chars_cut <= 0 or chars_total <= 0:
        return 0
    return min(reserved, round(reserved * chars_cut / chars_total))
