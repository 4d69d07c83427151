"""Limits and settlement for a WebSocket connection's utterances (the `UtteranceGate` of services.sessions.ws_session)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from services.access.grant import AccessGrant, AccessServices
from services.access.rate_limit import LimitExceeded, rate_refusal
from services.errors import SynthesisError
from services.keys.records import ApiKeyRecord
from services.usage.credits import CreditError, CreditReservation, InsufficientCredits, merge_reservations

if TYPE_CHECKING:
    from services.usage.accounting import RequestAccounting, RequestReport


@dataclass
class _Held:
    """Credits one utterance holds: text accepted (`used`) is always covered by what its blocks hold (`covered`)."""

    used: int = 0
    covered: int = 0
    parts: list[CreditReservation] = field(default_factory=list)
    pending: set[asyncio.Task[Any]] = field(default_factory=set)  # blocks being reserved
    _journaled: bool = False  # its intent row is spooled (AccessServices.reserve)


class AccessGate:
    """Limits and accounting for one connection's utterances, on the app's AccessServices.

    Opening the connection counts one request against the key's per-minute rate, and that count covers the
    first utterance; every later utterance counts one more. Each utterance holds a concurrency slot while it
    generates: one that caught up with its text gives it back (`pause`) and takes one again when more comes
    (`resume`). Credits (when enabled) are reserved in blocks of at least `credits_reserve_ahead` characters: a text
    frame the held block covers costs no database write (O(1) here); the next block is reserved when the text
    outgrows it, exactly the missing characters when the balance cannot cover a whole block. Settled once per
    utterance: what it did not use is refunded (docs/api/credits.md).
    """

    def __init__(
        self,
        access: AccessServices | None,
        key: ApiKeyRecord,
        *,
        connection_counted: bool,
        client_request_id: str | None = None,
    ) -> None:
        self.access = access
        self.key = key
        self.key_id: str | None = key.key_id
        self.client_request_id = client_request_id  # the handshake's X-Request-ID, kept beside server ids
        self._covered = connection_counted
        self._grants: dict[str, AccessGrant] = {}
        self._held: dict[str, _Held] = {}
        self._settled: set[str] = set()  # utterances already accounted: text arriving late is never charged

    @property
    def limits_apply(self) -> bool:
        return self.access is not None and self.access.authenticator is not None

    async def charge_text(self, utterance_id: str, characters: int) -> None:
        if self.access is None or characters <= 0 or utterance_id in self._settled:
            return
        if not self.access.ledger.enabled or self.key.credit_balance is None:
            return  # free: nothing to hold
        held = self._held.setdefault(utterance_id, _Held())
        if held.used + characters <= held.covered:
            held.used += characters
            return
        missing = held.used + characters - held.covered
        block = max(missing, self.access.settings.usage.credits_reserve_ahead)
        try:
            try:
                part = await self._reserve(utterance_id, held, block)
            except InsufficientCredits:
                if block == missing:
                    raise
                part = await self._reserve(utterance_id, held, missing)  # the last credits of the key
        except CreditError as exc:
            raise SynthesisError(exc.code, exc.message, "text") from None
        if part.state == "held" and utterance_id not in self._settled:
            held.covered += part.credits
            held.used += characters

    async def _reserve(self, utterance_id: str, held: _Held, credits: int) -> CreditReservation:
        """One block, in a task of its own: should the socket's task be cancelled meanwhile (client gone, server
        ended the socket), the block still lands in the utterance's parts, or, after its settlement, is released."""
        assert self.access is not None
        access = self.access

        async def reserve_and_keep() -> CreditReservation:
            part = await access.reserve(
                self.key, credits, utterance_id, self.client_request_id, journaled=held
            )
            if utterance_id in self._settled:  # settled while the block was being reserved: give it back
                await access.ledger.release(part)
                return CreditReservation(part.key_id, part.request_id, 0, None, state="released")
            held.parts.append(part)
            return part

        task = access.spawn(reserve_and_keep())
        held.pending.add(task)
        task.add_done_callback(held.pending.discard)
        return await asyncio.shield(task)

    async def admit(self, utterance_id: str) -> None:
        grant = AccessGrant(
            key=self.key,
            services=self.access,
            client_request_id=self.client_request_id,
            request_id=utterance_id,
        )
        if self.limits_apply:
            assert self.access is not None
            settings = self.access.settings
            if self._covered:
                self._covered = False
            else:
                limit = self.key.rate_limit_per_minute or settings.access.rate_limit_per_minute
                decision = await self.access.limiter.check_rate(self.key.key_id, limit)
                if not decision.allowed:
                    refusal = rate_refusal(decision)
                    raise SynthesisError(refusal.code, refusal.message)
            try:
                grant.lease = await self.access.limiter.acquire_stream(
                    self.key.key_id, self.key.max_concurrent or settings.access.max_concurrent_streams
                )
            except LimitExceeded as exc:
                raise SynthesisError(exc.code, exc.message) from None
        self._grants[utterance_id] = grant

    async def pause(self, utterance_id: str) -> None:
        """The utterance generated everything it was sent and waits for more text: its concurrency slot goes back."""
        grant = self._grants.get(utterance_id)
        if grant is not None and grant.lease is not None:
            lease, grant.lease = grant.lease, None
            await lease.release()

    async def resume(self, utterance_id: str) -> None:
        """More text came for a paused utterance: take a slot again (refused like a new stream when none is free)."""
        grant = self._grants.get(utterance_id)
        if grant is None or grant.lease is not None or not self.limits_apply:
            return
        assert self.access is not None
        try:
            grant.lease = await self.access.limiter.acquire_stream(
                self.key.key_id, self.key.max_concurrent or self.access.settings.access.max_concurrent_streams
            )
        except LimitExceeded as exc:
            raise SynthesisError(exc.code, exc.message) from None

    def begin_hook(self, utterance_id: str) -> Callable[[RequestAccounting], None] | None:
        """The accounting's begin hook for this utterance: its grant writes the intent record when synthesis is
        admitted."""
        grant = self._grants.get(utterance_id)
        return None if grant is None else grant.begin

    def settle(self, utterance_id: str, report: RequestReport | None, billable_characters: int = 0) -> None:
        self._settled.add(utterance_id)
        held = self._held.pop(utterance_id, _Held())
        grant = self._grants.pop(utterance_id, None) or AccessGrant(
            key=self.key,
            services=self.access,
            client_request_id=self.client_request_id,
            request_id=utterance_id,
        )
        grant._journaled = grant._journaled or held._journaled
        grant.reservation = merge_reservations(self.key.key_id, utterance_id, held.parts)
        if self.access is None:
            return
        if report is None:  # no synthesis happened: give the credits back, write no record
            self.access.spawn(self._abandon(grant, held))
            return
        total = grant.reservation.credits if grant.reservation is not None else 0
        if grant.reservation is None or billable_characters <= total:
            if grant.reservation is not None:
                # Charged the normalised length (what HTTP charges for the same text); the rest of the blocks is
                # refunded by the settlement.
                grant.reservation.credits = billable_characters
                grant.reservation.outage_credits = min(grant.reservation.outage_credits, billable_characters)
            grant.settle(report)
        else:
            self.access.spawn(self._true_up(grant, report, billable_characters))

    @staticmethod
    async def _abandon(grant: AccessGrant, held: _Held) -> None:
        """Blocks still being reserved land (and are released) before the intent row goes."""
        if held.pending:
            await asyncio.wait(set(held.pending))
        await grant.abandon()

    async def _true_up(self, grant: AccessGrant, report: RequestReport, billable: int) -> None:
        """Text that normalisation lengthens ("1,000" -> "one thousand") takes the difference from the balance before
        settling, when the balance still covers it (else the raw length held is charged)."""
        assert self.access is not None and grant.reservation is not None
        held = grant.reservation
        try:
            extra = await self.access.ledger.reserve(
                self.key, billable - held.credits, request_id=held.request_id
            )
            merged = merge_reservations(held.key_id, held.request_id, [held, extra])
            grant.reservation = merged or held
        except CreditError:
            pass  # the balance ran out meanwhile: the raw length already held is charged
        finally:
            grant.settle(report)
