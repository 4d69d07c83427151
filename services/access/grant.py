"""What one request holds (`AccessGrant`) and the per-app services that grant and settle it (`AccessServices`).

`AccessServices.grant` authenticates the key, takes a concurrency slot and counts the request against the key's
per-minute rate. When the request ends, its accounting (services/usage/accounting.py) calls `AccessGrant.settle`, which
releases the slot, settles credits, feeds the audio-flow monitor and writes the request-log record. Nothing here
delays audio: the record goes to the durable spool or a bounded queue that a background task writes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.guards import speech_seconds
from services.access.authenticator import Authenticator, FailedAuthThrottle, build_authenticator
from services.access.rate_limit import (
    Limiter,
    LimitExceeded,
    RateDecision,
    StreamLease,
    build_limiter,
    rate_refusal,
)
from services.database import DatabaseClients
from services.errors import ServiceError, status_of
from services.keys.records import ApiKeyRecord, AuthError, anonymous_record
from services.usage.credits import (
    CreditError,
    CreditLedger,
    CreditReservation,
    audio_floor_credits,
    merge_reservations,
    settle_credits,
    undelivered_credits,
)
from services.usage.flow_monitor import AudioFlowMonitor
from services.usage.flow_monitor import Outcome as FlowOutcome
from services.usage.request_log import RequestLogger, RequestRecord, build_request_logger, utcnow
from services.usage.request_sinks import NullSink
from services.usage.shutdown import mark_shutting_down, watch_signals
from services.usage.shutdown import reset as reset_shutdown
from shared import metrics
from shared.settings import Settings

if TYPE_CHECKING:
    from services.usage.accounting import RequestAccounting, RequestReport

logger = logging.getLogger("services.access")


@dataclass(eq=False)  # hashed by identity: AccessServices.open_grants holds the admitted ones
class AccessGrant:
    """What one request holds: its key, a concurrency slot, a credit reservation and rate-limit headers."""

    key: ApiKeyRecord
    services: AccessServices | None = None
    lease: StreamLease | None = None
    reservation: CreditReservation | None = None
    headers: dict[str, str] = field(default_factory=dict)
    accounting: RequestAccounting | None = (
        None  # set once synthesis started: from then on it settles the grant
    )
    client_request_id: str | None = None  # the client's X-Request-ID, kept beside the server's id
    request_id: str | None = None  # the server's id, where the transport knew it when granting (HTTP)
    _finished: bool = False
    _intent: asyncio.Task[Any] | None = None  # the intent record's write: the final record waits for it
    _journaled: bool = False  # an intent row is spooled (before the first credit was reserved)
    _reserving: asyncio.Task[Any] | None = None  # the credit reservation in flight

    @property
    def key_id(self) -> str:
        return self.key.key_id

    def attach(self, accounting: RequestAccounting) -> None:
        self.accounting = accounting

    async def check_credits(self, characters: int) -> None:
        if self.services is not None:
            await self.services.reserve_credits(self, characters)

    async def check_balance(self) -> None:
        """Before costly work that precedes the reservation (decoding and encoding a per-request reference): a
        key with no credits left is refused now, not after the encoder ran. Uses the key record as authenticated
        (cached for at most the key cache's TTL); the reservation after planning stays the exact check."""
        if self.services is None or not self.services.ledger.enabled:
            return
        balance = self.key.credit_balance
        if balance is not None and balance <= 0:
            raise ServiceError(
                "INSUFFICIENT_CREDITS",
                "This key has no credits left; top it up before cloning a voice from reference audio.",
                status=403,
            )

    def begin(self, accounting: RequestAccounting) -> None:
        """The accounting's begin hook: synthesis was admitted, write the durable intent record before work."""
        if self.services is not None and not self._finished:
            self.services.open_grants.add(self)
            self._intent = self.services.spawn(
                self.services.request_logger.intend_async(self.services.intent_record(self, accounting))
            )
            logger_ = self.services.request_logger
            accounting.on_progress = lambda seconds, text: logger_.note_progress(
                accounting.request_id, audio_seconds=seconds, text=text
            )

    def settle(self, report: RequestReport) -> asyncio.Task[Any] | None:
        """The accounting's settle hook: called once when the request ends (any outcome). Returns the settlement's
        task (done once the record is spooled) so a response can wait for it."""
        if self._finished or self.services is None:
            return None
        self._finished = True
        return self.services.spawn(self.services.settle(self, report))

    async def abandon(self) -> None:
        """The request failed before any audio work started: release the slot and the credits."""
        if self._finished or self.services is None:
            return
        self._finished = True
        await self.services.release(self)


class AccessServices:
    """Authenticator, limiter, credit ledger, request logger and flow monitor of one app instance."""

    def __init__(
        self,
        settings: Settings,
        *,
        authenticator: Authenticator | None = None,
        limiter: Limiter | None = None,
        request_logger: RequestLogger | None = None,
        monitor: AudioFlowMonitor | None = None,
    ) -> None:
        self.settings = settings
        # One PostgreSQL pool / Supabase client for the key store and the request log (closed in close()).
        self.databases = DatabaseClients(settings)
        self._owns_authenticator = authenticator is None
        self.authenticator = authenticator or (
            build_authenticator(settings, databases=self.databases) if settings.access.auth_enabled else None
        )
        self.auth_throttle = FailedAuthThrottle(settings.access.auth_failures_per_minute)
        self.admin_throttle = FailedAuthThrottle(
            settings.access.auth_failures_per_minute
        )  # X-Admin-Key guesses
        self.limiter = limiter or build_limiter(settings)
        self.request_logger = request_logger or build_request_logger(settings, databases=self.databases)
        self.monitor = monitor or AudioFlowMonitor.from_settings(settings)
        store = self.authenticator.store if self.authenticator is not None else None
        sink = getattr(self.request_logger, "sink", None)
        # The request log writes to the key store's own database: each row's insert settles its request's credits.
        row_settles = (
            store is not None
            and sink is not None
            and not isinstance(sink, NullSink)
            and getattr(sink, "name", None) == store.name
            and store.name in ("postgres", "supabase")
        )
        self.ledger = CreditLedger(
            store,  # type: ignore[arg-type]  # None only with credits off, when the ledger never reads it
            enabled=settings.usage.credits_enabled and store is not None,
            outage_allowance=settings.usage.credits_outage_allowance,
            row_settles=row_settles,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self.open_grants: set[AccessGrant] = set()  # admitted, not yet settled: close() waits for them

    async def start(self) -> None:
        reset_shutdown()
        watch_signals()
        await self.limiter.start()
        await self.request_logger.start()

    async def close(self, timeout_s: float = 10.0) -> None:
        # Streams the server cut at shutdown settle (as `interrupted`, refunded) before the spool closes: wait for
        # every admitted request to settle, bounded; one still open after that is recovered from its intent record.
        mark_shutting_down()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while (self.open_grants or self._tasks) and asyncio.get_running_loop().time() < deadline:
            if self._tasks:
                await asyncio.wait(
                    set(self._tasks), timeout=max(0.0, deadline - asyncio.get_running_loop().time())
                )
            else:
                await asyncio.sleep(0.05)
        if self.ledger._unsettled:  # live settlements of an outage: one last try before they are lost
            try:
                left = await asyncio.wait_for(self.ledger.settle_pending(), timeout=timeout_s)
            except Exception:  # noqa: BLE001 - shutdown goes on; what is left is logged
                left = len(self.ledger._unsettled)
            if left:
                logger.error("credits not settled at shutdown", extra={"requests": left})
        lost = await self.request_logger.close(timeout_s)
        if lost:
            logger.error("request log records lost at shutdown", extra={"lost": lost})
        await self.limiter.close()
        if self._owns_authenticator and self.authenticator is not None:
            await self.authenticator.store.close()
        await self.databases.close()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ per request
    async def authenticate(self, headers: Any, client_address: str | None = None) -> ApiKeyRecord:
        if self.authenticator is None:
            return anonymous_record()
        address = client_address or "unknown"
        raw = Authenticator.extract_key(headers)
        throttled = self.auth_throttle.refusal(address, raw, known=self.authenticator.is_known)
        if throttled is not None:  # this address (or this key) keeps failing: refused without the key store
            metrics.RATE_LIMITED.labels("failed_auth").inc()
            raise throttled
        try:
            record = await self.authenticator.authenticate(raw)
            if raw:
                self.auth_throttle.succeeded(raw)
            return record
        except AuthError as exc:
            if exc.status == 401 and raw:
                self.auth_throttle.failed(address, raw)
            raise ServiceError(
                exc.code,
                exc.message,
                status=exc.status,
                headers={"WWW-Authenticate": "Bearer"} if exc.status == 401 else None,
            ) from None

    async def grant(
        self, headers: Any, client_address: str | None, client_request_id: str | None
    ) -> AccessGrant:
        """Authenticate, take a concurrency slot, count the request against the key's rate."""
        key = await self.authenticate(headers, client_address)
        grant = AccessGrant(key=key, services=self, client_request_id=client_request_id)
        if self.authenticator is None:
            return grant
        # The concurrency slot first: a request refused for concurrency must not use up a per-minute slot, and its
        # 429 carries only Retry-After (X-RateLimit-* always describe the per-minute limit).
        try:
            grant.lease = await self.limiter.acquire_stream(
                key.key_id, key.max_concurrent or self.settings.access.max_concurrent_streams
            )
        except LimitExceeded as exc:
            retry = exc.decision.headers().get("Retry-After", "1")
            raise ServiceError(exc.code, exc.message, headers={"Retry-After": retry}) from None
        rate_limit = key.rate_limit_per_minute or self.settings.access.rate_limit_per_minute
        decision: RateDecision = await self.limiter.check_rate(key.key_id, rate_limit)
        grant.headers.update({k: v for k, v in decision.headers().items() if k != "Retry-After"})
        if not decision.allowed:
            await grant.lease.release()
            grant.lease = None
            refusal = rate_refusal(decision)
            raise ServiceError(refusal.code, refusal.message, headers=decision.headers())
        return grant

    async def reserve_credits(self, grant: AccessGrant, characters: int) -> None:
        if grant.request_id is None:
            grant.request_id = f"req-{uuid.uuid4().hex}"

        async def reserve_and_keep() -> None:
            grant.reservation = await self.ledger.reserve(
                grant.key,
                characters,
                request_id=grant.request_id or "",
                journal=self._journal(grant.key, grant.request_id or "", grant.client_request_id, grant),
            )

        # Shielded: a client that leaves while the debit is in flight does not cut it from the grant, and the
        # release of an abandoned grant waits for it (`release`).
        grant._reserving = self.spawn(reserve_and_keep())
        try:
            await asyncio.shield(grant._reserving)
        except CreditError as exc:
            await self.release(grant)
            raise ServiceError(
                exc.code, exc.message, status=exc.status, retry_after=exc.retry_after
            ) from None

    async def reserve(
        self,
        key: ApiKeyRecord,
        characters: int,
        request_id: str,
        client_request_id: str | None,
        *,
        journaled: Any,
    ) -> CreditReservation:
        """Reserve for `request_id`, its intent row spooled first (once per request: `journaled._journaled`), so a
        process that dies after the debit leaves a row that settles it."""
        return await self.ledger.reserve(
            key,
            characters,
            request_id=request_id,
            journal=self._journal(key, request_id, client_request_id, journaled),
        )

    def _journal(
        self, key: ApiKeyRecord, request_id: str, client_request_id: str | None, holder: Any
    ) -> Callable[[], Awaitable[None]]:
        """Spool the request's intent row once (`holder._journaled`), before its first debit."""

        async def journal() -> None:
            if holder._journaled:
                return
            holder._journaled = True
            await self.request_logger.intend_async(
                RequestRecord(
                    request_id=request_id,
                    client_request_id=client_request_id,
                    speaker="",
                    text_length=0,
                    status="in_progress",
                    key_id=key.key_id,
                )
            )

        return journal

    async def release(self, grant: AccessGrant) -> None:
        if grant._reserving is not None and not grant._reserving.done():
            await asyncio.wait(
                [grant._reserving]
            )  # a debit in flight lands in the grant first, then is released
        if grant.reservation is not None:
            await self.ledger.release(grant.reservation)
        await self._release_journal(grant, grant.reservation, grant.request_id)
        if grant.lease is not None:
            await grant.lease.release()

    async def _release_journal(
        self, holder: Any, reservation: CreditReservation | None, request_id: str | None
    ) -> None:
        """A request that never started: its intent row goes once its credits are given back; when the store could
        not take them back, a row claiming nothing is stored instead, and its settlement gives them back."""
        if not getattr(holder, "_journaled", False) or request_id is None:
            return
        if reservation is None or not reservation.release_owed:
            await self.request_logger.forget_intent_async(request_id)
            return
        try:
            await self.request_logger.submit_async(
                RequestRecord(
                    request_id=request_id,
                    client_request_id=getattr(holder, "client_request_id", None),
                    speaker="",
                    text_length=0,
                    status="failed",
                    error_code="NOT_STARTED",
                    key_id=reservation.key_id,
                    credits_charged=0,
                    completed_at=utcnow(),
                )
            )
        except Exception:  # noqa: BLE001 - never breaks the refusal; the intent row still settles it
            logger.exception("release row not recorded", extra={"key_id": reservation.key_id})

    async def settle(self, grant: AccessGrant, outcome: RequestReport) -> None:
        """Settle a finished request: slot, credits, flow monitor, request-log record; never raises."""
        try:
            self.open_grants.discard(grant)
            if grant.lease is not None:
                await grant.lease.release()
            credits = 0
            if grant.reservation is not None:
                error_status = status_of(outcome.error_code) if outcome.error_code else None
                charged = settle_credits(outcome.status, error_status, outcome.audio_seconds)
                undelivered = undelivered_credits(
                    grant.reservation.credits, outcome.job.stats.chars_cut, len(outcome.job.plan.text)
                )
                if charged:
                    undelivered = await self._audio_floor(grant, outcome, undelivered)
                credits = await self.ledger.charge(
                    grant.reservation,
                    audio_seconds=outcome.audio_seconds,
                    refund=not charged,
                    undelivered=undelivered,
                )
            job = outcome.job
            # The flow monitor knows completed/failed/disconnected; a client's cancel is a stop by the client.
            flow_status: FlowOutcome = (
                "completed"
                if outcome.status == "completed"
                else "failed"
                if outcome.status == "failed"
                else "disconnected"
            )
            self.monitor.record(
                outcome.request_id,
                job.stats,
                flow_status,
                outcome.error_code,
                sr_applied=job.sr_applied,
                output_rate=job.request.sample_rate,
                cadence=outcome.cadence,
            )
            if grant._intent is not None:  # the final record replaces the intent, never the other way round
                await asyncio.wait([grant._intent])
            await self.request_logger.submit_async(self._record(grant, outcome, credits))
        except Exception:  # noqa: BLE001 - accounting must never break the server
            logger.exception("request accounting failed")

    async def _audio_floor(self, grant: AccessGrant, outcome: RequestReport, undelivered: int) -> int:
        """The charge floor for the audio a charged request delivered (`audio_floor_credits`): when its text's
        price (less `undelivered`) is under it, the difference is reserved from the balance while it covers it, and
        settled by the row like any debit. Returns the `undelivered` credits to charge the reservation with."""
        reservation = grant.reservation
        if reservation is None or reservation.state != "held":
            return undelivered
        job = outcome.job
        delivered_s = min(outcome.audio_seconds, job.stats.sent_samples / float(job.request.sample_rate))
        text = job.plan.text
        floor = audio_floor_credits(delivered_s, len(text), speech_seconds(text))
        if floor <= reservation.credits - max(0, undelivered):
            return undelivered
        if floor > reservation.credits:
            try:
                extra = await self.ledger.reserve(
                    grant.key, floor - reservation.credits, request_id=reservation.request_id
                )
                grant.reservation = reservation = (
                    merge_reservations(reservation.key_id, reservation.request_id, [reservation, extra])
                    or reservation
                )
            except CreditError:
                pass  # the balance cannot cover the floor: what is held is charged
        logger.info(
            "audio charge floor",
            extra={
                "key_id": reservation.key_id,
                "credits": min(floor, reservation.credits),
                "audio_seconds": round(delivered_s, 3),
            },
        )
        return max(0, reservation.credits - floor)

    def intent_record(self, grant: AccessGrant, accounting: RequestAccounting) -> RequestRecord:
        """What is known when synthesis is admitted: recovered as `interrupted` if the process dies before the end."""
        request = accounting.job.request
        return RequestRecord(
            request_id=accounting.request_id,
            client_request_id=grant.client_request_id,
            speaker=request.voice.id,
            text_length=len(request.text),
            status="in_progress",
            key_id=grant.key_id,
            stream=request.stream,
            format=request.audio_format,
            sample_rate=request.sample_rate,
            text=request.text if self.settings.usage.log_request_text else None,
            # Recovered as `interrupted` (the process died): claims nothing, so its settlement refunds everything
            # journaled for it.
            transport=accounting.transport,
        )

    def _record(self, grant: AccessGrant, outcome: RequestReport, credits: int) -> RequestRecord:
        job = outcome.job
        request = job.request
        sampling = request.sampling
        return RequestRecord(
            request_id=outcome.request_id,
            client_request_id=grant.client_request_id,
            speaker=request.voice.id,
            text_length=len(request.text),
            status={"disconnected": "cancelled"}.get(outcome.status, outcome.status),
            key_id=grant.key_id,
            stream=request.stream,
            format=request.audio_format,
            sample_rate=request.sample_rate,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            repetition_penalty=sampling.repetition_penalty,
            seed=sampling.seed,
            text=request.text if self.settings.usage.log_request_text else None,
            text_chunked=outcome.job.plan.chunked,
            error_code=outcome.error_code,
            ttfb_ms=outcome.ttfb_ms,
            rtf=outcome.rtf,
            audio_duration_seconds=outcome.audio_seconds,
            credits_charged=credits,
            completed_at=utcnow(),
            chunks_retried=job.stats.chunks_retried,
            chunks_cut=job.stats.chunks_cut,
            guard_trips=",".join(job.stats.guard_events) or None,
            # What the request spent on the outage allowance: taken when the row is stored, at most the charge.
            outage_credits=grant.reservation.outage_credits if grant.reservation is not None else 0,
            transport=outcome.transport,
        )
