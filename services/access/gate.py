"""Limits and settlement for a WebSocket connection's utterances (the `UtteranceGate` of services.sessions.ws_session)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.access.grant import AccessGrant, AccessServices
from services.access.keys import ApiKeyRecord
from services.access.rate_limit import LimitExceeded, rate_refusal
from services.errors import SynthesisError
from services.usage.credits import CreditError, CreditReservation

if TYPE_CHECKING:
    from services.usage.accounting import RequestReport


class AccessGate:
    """Limits and accounting for one connection's utterances, on the app's AccessServices.

    Opening the connection counts one request against the key's per-minute rate, and that count covers the
    first utterance; every later utterance counts one more. Each utterance holds a concurrency slot while it
    generates: one that caught up with its text gives it back (`pause`) and takes one again when more comes
    (`resume`). Credits (when enabled) are reserved per text piece and settled once per utterance.
    """

    def __init__(self, access: AccessServices | None, key: ApiKeyRecord, *, connection_counted: bool,
                 client_request_id: str | None = None) -> None:
        self.access = access
        self.key = key
        self.key_id: str | None = key.key_id
        self.client_request_id = client_request_id  # the handshake's X-Request-ID, kept beside server ids
        self._covered = connection_counted
        self._grants: dict[str, AccessGrant] = {}
        self._reservations: dict[str, list[CreditReservation]] = {}
        self._settled: set[str] = set()  # utterances already accounted: text arriving late is never charged

    @property
    def limits_apply(self) -> bool:
        return self.access is not None and self.access.authenticator is not None

    async def charge_text(self, utterance_id: str, characters: int) -> None:
        if self.access is None or characters <= 0 or utterance_id in self._settled:
            return
        try:
            reservation = await self.access.ledger.reserve(self.key, characters, request_id=utterance_id)
        except CreditError as exc:
            raise SynthesisError(exc.code, exc.message, "text") from None
        if utterance_id in self._settled:  # settled while the reservation was being made: give it back
            await self.access.ledger.release(reservation)
            return
        self._reservations.setdefault(utterance_id, []).append(reservation)

    async def admit(self, utterance_id: str) -> None:
        grant = AccessGrant(key=self.key, services=self.access, client_request_id=self.client_request_id)
        if self.limits_apply:
            assert self.access is not None
            settings = self.access.settings
            if self._covered:
                self._covered = False
            else:
                limit = self.key.rate_limit_per_minute or settings.rate_limit_per_minute
                decision = await self.access.limiter.check_rate(self.key.key_id, limit)
                if not decision.allowed:
                    refusal = rate_refusal(decision)
                    raise SynthesisError(refusal.code, refusal.message)
            try:
                grant.lease = await self.access.limiter.acquire_stream(
                    self.key.key_id, self.key.max_concurrent or settings.max_concurrent_streams
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
                self.key.key_id, self.key.max_concurrent or self.access.settings.max_concurrent_streams)
        except LimitExceeded as exc:
            raise SynthesisError(exc.code, exc.message) from None

    def begin_hook(self, utterance_id: str):  # noqa: ANN201 - the accounting's begin hook for this utterance
        """The utterance's intent record is written by its grant when synthesis is admitted."""
        grant = self._grants.get(utterance_id)
        return None if grant is None else grant.begin

    def settle(self, utterance_id: str, report: RequestReport | None, billable_characters: int = 0) -> None:
        self._settled.add(utterance_id)
        grant = self._grants.pop(utterance_id, None) or AccessGrant(key=self.key, services=self.access,
                                                                    client_request_id=self.client_request_id)
        grant.reservation = _merge(self._reservations.pop(utterance_id, []))
        if self.access is None:
            return
        if report is None:  # no synthesis happened: give the credits back, write no record
            self.access.spawn(grant.abandon())
            return
        held = grant.reservation.credits if grant.reservation is not None else 0
        if grant.reservation is None or billable_characters == held:
            grant.settle(report)
        else:
            self.access.spawn(self._true_up(grant, report, billable_characters))

    async def _true_up(self, grant: AccessGrant, report: RequestReport, billable: int) -> None:
        """Hold exactly the normalised length (what HTTP charges for the same text) before settling: text that
        normalisation lengthens ("1,000" -> "one thousand") takes the difference from the balance, when the balance
        still covers it; text it shortens gives the difference back."""
        assert self.access is not None and grant.reservation is not None
        ledger, held = self.access.ledger, grant.reservation
        try:
            if billable < held.credits:
                rest = CreditReservation(held.key_id, held.request_id, held.credits - billable, None,
                                         state=held.state, debt_id=held.debt_id)  # an outage debt shrinks instead
                held.credits = billable
                await ledger.release(rest)
            elif held.state != "outage":  # admitted on the outage allowance: the raw length held is what is owed
                extra = await ledger.reserve(self.key, billable - held.credits, request_id=held.request_id)
                grant.reservation = _merge([held, extra])
        except CreditError:
            pass  # the balance ran out meanwhile: the raw length already held is charged
        finally:
            grant.settle(report)


def _merge(reservations: list[CreditReservation]) -> CreditReservation | None:
    """One reservation standing for several (the ledger settles by key and amount)."""
    held = [r for r in reservations if r.state == "held"]
    if not held:
        return None
    last = held[-1]
    return CreditReservation(last.key_id, last.request_id, sum(r.credits for r in held), last.balance_after)
