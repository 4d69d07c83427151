"""Credits: what a request costs and the one accounting model that moves them (docs/api/credits.md).

Unit: 1 credit = 1 character of the normalised text the model is asked to speak (`len(text)` in Unicode code
points). Audio seconds are recorded with the charge but not billed. A key whose `credit_balance` is None is unlimited.

reserve -> debit -> record -> settle:
  1. `reserve()` before the text is worked on. The request's intent row is in the durable spool first (the
     `journal` callback), then the store debits the credits and journals them under a fresh reservation id in one
     transaction (PostgreSQL/Supabase: tts_reserve_credits). A lost answer (dropped connection, restart, asyncpg's
     InternalClientError) is an unknown outcome: the same reservation id is asked again, and the journal says whether
     it committed. Short balance -> InsufficientCredits (INSUFFICIENT_CREDITS 403).
  2. The request ends: `charge()` says what it is charged by the billing rule (`settle_credits` below; 0 when it is
     refunded). The request's row carries that claim and its outage-allowance spend; when the row is first stored
     the database settles it in the same transaction: journaled credits beyond the claim are refunded, the outage
     spend is taken (tts_store_requests). A row stored twice settles once. A process that dies leaves the intent row,
     recovered as `interrupted` (claim 0): its whole reservation is refunded when that row is stored.
  3. A request that never started (refused after its reservation) is `release()`d by reservation id (idempotent);
     if the store cannot take the release, a row claiming 0 settles it instead.
A key store that is not the request log's database (static keys, in memory) settles live at the end instead
(`KeyStore.settle_credits`, the same rule).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from services.keys.records import ApiKeyRecord, KeyStoreUnavailable
from services.keys.stores import KeyStore
from services.usage.outage_credits import OutageAllowance

logger = logging.getLogger("services.usage.credits")

# The charge floor for audio (`audio_floor_credits`): a request may make this many times the audio its text is
# expected to take at an ordinary pace in its own script (core.guards.text_budget) at its character price; audio
# past it (SSML breaks, slow speed, pauses) costs at that rate, so 1 credit buys at most this many times the audio of
# plain speech.
AUDIO_RATIO = 1.5
# The least a charged request pays per second of audio it delivered, whatever its text (breaks around one letter).
# Below plain speech in every script (about 14 credits a second in English, 4.5 in Chinese): it binds only on markup.
MIN_CREDITS_PER_AUDIO_SECOND = 3.0

# Tries of one reservation id before its outcome counts as unknown (the retries are idempotent: journaled).
RESERVE_TRIES = 3
DOWN_HOLD_S = 1.0  # after every try failed: how long later reservations try the store once only


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
    """Credits held for one request: `credits` in all, `outage_credits` of them on the outage allowance (never
    debited live), the rest debited and journaled under `reservation_ids`."""

    key_id: str
    request_id: str
    credits: int
    balance_after: int | None  # None: unlimited key, credits disabled, or admitted on the outage allowance
    state: Literal["held", "charged", "released", "free"] = "held"
    audio_seconds: float | None = None
    reservation_ids: list[str] = field(default_factory=list)
    outage_credits: int = 0
    # True when a release could not reach the store: the credits are still journaled, and a row claiming 0 must be
    # stored to settle them (AccessServices writes it).
    release_owed: bool = False

    @property
    def debited(self) -> int:
        return self.credits - self.outage_credits


def merge_reservations(
    key_id: str, request_id: str, parts: list[CreditReservation]
) -> CreditReservation | None:
    """One reservation standing for several of one request (a WebSocket utterance reserves in blocks): every part
    that holds credits counts, whether debited or on the outage allowance."""
    held = [r for r in parts if r.state == "held"]
    if not held:
        return None
    return CreditReservation(
        key_id,
        request_id,
        sum(r.credits for r in held),
        held[-1].balance_after,
        reservation_ids=[i for r in held for i in r.reservation_ids],
        outage_credits=sum(r.outage_credits for r in held),
    )


class CreditLedger:
    """Reserve/charge/release against the key store. With `enabled` False every call is free and local.

    `row_settles`: the request log writes to the key store's own database, whose row insert settles each request
    (step 2 of the module doc); otherwise `charge()` settles live."""

    def __init__(
        self,
        store: KeyStore,
        enabled: bool = True,
        outage_allowance: int = 0,
        *,
        row_settles: bool = False,
        retry_delay_s: float = 0.1,
    ) -> None:
        self.store = store
        self.enabled = enabled
        self.row_settles = row_settles
        self.outage = OutageAllowance(outage_allowance)
        self.retry_delay_s = retry_delay_s
        self._unsettled: dict[
            str, tuple[CreditReservation, int]
        ] = {}  # live settlements the store did not take
        self._settling: asyncio.Task[int] | None = None
        self._down_until = 0.0  # loop time until which the store counts as down (one try, not RESERVE_TRIES)

    async def reserve(
        self,
        key: ApiKeyRecord,
        text_length: int,
        request_id: str,
        *,
        journal: Callable[[], Awaitable[None]] | None = None,
    ) -> CreditReservation:
        """Hold `text_length` credits for `request_id`. `journal`: makes the request's durable record exist before
        anything is debited (awaited first)."""
        cost = credits_for_text(text_length)
        if not self.enabled or cost == 0 or key.credit_balance is None:
            # Unlimited per the (possibly cached) record: no store round trip on the request path.
            return CreditReservation(key.key_id, request_id, 0, None, state="free")
        if journal is not None:
            await journal()
        reservation_id = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        # Right after the store failed every try, the next reservations go straight to the allowance for a moment
        # instead of each waiting out its own retries (a socket's next block must not stall on a known outage).
        tries = 1 if loop.time() < self._down_until else RESERVE_TRIES
        for attempt in range(tries):
            try:
                result = await self.store.reserve_credits(reservation_id, request_id, key.key_id, cost)
                break
            except KeyStoreUnavailable as exc:
                if attempt + 1 < tries:
                    await asyncio.sleep(self.retry_delay_s * (attempt + 1))
                    continue
                self._down_until = loop.time() + DOWN_HOLD_S
                logger.error("credit store unavailable", extra={"key_id": key.key_id, "error": str(exc)})
                # The outcome is unknown. Should it have committed, it is journaled under this request and the
                # request's row refunds it (the claim counts it once, on the allowance or not at all).
                if self.outage.admit(key, cost):
                    return CreditReservation(key.key_id, request_id, cost, None, outage_credits=cost)
                raise CreditError(
                    "SERVICE_UNAVAILABLE",
                    503,
                    "Credit balance cannot be checked right now; retry in a few seconds.",
                    retry_after=5,
                ) from None
        self.outage.store_answered()
        if self._unsettled and (self._settling is None or self._settling.done()):
            self._settling = asyncio.ensure_future(self.settle_pending())  # the store answers again
        if result.status == "settled":  # the request's row is already stored: nothing more is held for it
            return CreditReservation(key.key_id, request_id, 0, result.balance, state="released")
        if result.status != "held":
            logger.info("insufficient credits", extra={"key_id": key.key_id, "needed": cost})
            raise InsufficientCredits(cost, await self._current_balance(key, result.balance))
        return CreditReservation(
            key.key_id, request_id, cost, result.balance, reservation_ids=[reservation_id]
        )

    async def _current_balance(self, key: ApiKeyRecord, reported: int | None) -> int | None:
        """The balance to quote in a refusal: fresh from the store, not the cached record's."""
        if reported is not None:
            return reported
        try:
            fresh = await self.store.get_by_hash(key.key_hash)
        except Exception:
            return None
        return fresh.credit_balance if fresh is not None else None

    async def charge(
        self,
        reservation: CreditReservation,
        *,
        audio_seconds: float | None = None,
        undelivered: int = 0,
        refund: bool = False,
    ) -> int:
        """Settle a reservation as used (less `undelivered`: credits of text whose audio was cut by a generation
        guard) or, with `refund`, as refunded; returns the credits charged (RequestRecord.credits_charged). With
        `row_settles` this is the claim the request's row carries and the database settles; otherwise it is settled
        live now. Idempotent: a second call returns the first's answer."""
        if reservation.state == "charged":
            return reservation.credits
        if reservation.state != "held":
            return 0
        reservation.audio_seconds = audio_seconds
        claim = 0 if refund else max(0, reservation.credits - max(0, undelivered))
        if not self.row_settles:
            claim = await self._settle_live(reservation, claim)
        reservation.state = "charged"
        reservation.credits = claim
        logger.info(
            "credits charged",
            extra={"key_id": reservation.key_id, "credits": claim, "audio_seconds": audio_seconds},
        )
        return claim

    async def _settle_live(self, reservation: CreditReservation, claim: int) -> int:
        """Settle now; a store that cannot answer gets the settlement later (`settle_pending`, tried when a
        reservation succeeds again and at shutdown): with no row to carry it, it waits in memory."""
        try:
            settled = await self.store.settle_credits(
                reservation.request_id, reservation.key_id, claim, reservation.outage_credits
            )
            return settled.charged
        except KeyStoreUnavailable as exc:
            self._unsettled[reservation.request_id] = (reservation, claim)
            logger.error(
                "credits not settled yet: the store is unavailable",
                extra={"key_id": reservation.key_id, "credits": claim, "error": str(exc)},
            )
            return claim

    async def settle_pending(self) -> int:
        """Settle what the store could not take at the end of its requests; returns how many are still waiting."""
        for request_id, (reservation, claim) in list(self._unsettled.items()):
            try:
                await self.store.settle_credits(
                    request_id, reservation.key_id, claim, reservation.outage_credits
                )
            except KeyStoreUnavailable:
                break
            self._unsettled.pop(request_id, None)
        return len(self._unsettled)

    async def release(self, reservation: CreditReservation) -> None:
        """Give the held credits back (the request never started). Idempotent; a release the store cannot take
        leaves `release_owed` set (a row claiming 0 then settles it)."""
        if reservation.state != "held":
            return
        reservation.state = "released"
        if reservation.outage_credits:
            self.outage.give_back(reservation.key_id, reservation.outage_credits)
        for reservation_id in list(reservation.reservation_ids):
            for attempt in range(RESERVE_TRIES):
                try:
                    await self.store.release_credits(reservation_id)
                    reservation.reservation_ids.remove(reservation_id)
                    break
                except KeyStoreUnavailable as exc:
                    if attempt + 1 == RESERVE_TRIES:
                        reservation.release_owed = True
                        logger.error(
                            "credit release failed; settled by the request's row",
                            extra={"key_id": reservation.key_id, "error": str(exc)},
                        )
                        break
                    await asyncio.sleep(self.retry_delay_s * (attempt + 1))


def settle_credits(status: str, error_status: int | None, audio_seconds: float) -> bool:
    """The billing rule: True charges the reservation, False refunds it.

    Completed requests and client hang-ups are charged (the client chose to stop); a request that produced no
    audio, or that ended on a server-side error (5xx: generation failure or timeout, GPU fault, a stream cut by
    the server, including `interrupted`: cut by the server's shutdown or left by a process that died) is refunded in
    full, even when some audio was delivered before the failure."""
    if (
        audio_seconds <= 0 or status == "interrupted"
    ):  # interrupted: cut by the server (shutdown, a dead process)
        return False
    if status == "failed" and (error_status is None or error_status >= 500):
        return False
    return True


def audio_floor_credits(
    audio_seconds: float,
    characters: int,
    expected_seconds: float,
    *,
    ratio: float = AUDIO_RATIO,
    min_per_second: float = MIN_CREDITS_PER_AUDIO_SECOND,
) -> int:
    """The least a charged request pays for `audio_seconds` of delivered audio (docs/api/credits.md, "One price
    for audio"): at its text's own rate (`characters` over `ratio` x the `expected_seconds` its text takes at an
    ordinary pace), never below `min_per_second`. Plain speech stays under its character price; audio that markup
    stretched (breaks, slow speed, pauses) pays for the time it takes."""
    if audio_seconds <= 0:
        return 0
    text_rate = characters / (ratio * expected_seconds) if characters > 0 and expected_seconds > 0 else 0.0
    return math.ceil(audio_seconds * max(min_per_second, text_rate) - 1e-9)


def undelivered_credits(reserved: int, chars_cut: int, chars_total: int) -> int:
    """The share of a reservation for text whose audio was cut short by a generation guard (not charged)."""
    if reserved <= 0 or chars_cut <= 0 or chars_total <= 0:
        return 0
    return min(reserved, round(reserved * chars_cut / chars_total))
