"""The request log: one row per request in `tts_requests`, written off the hot path.

With a spool directory (TTS_REQUEST_LOG_SPOOL_DIR, the default whenever a database sink is configured),
`submit()` writes the record to the durable on-disk spool (services/usage/request_spool.py) before it returns, and the
writer deletes it there only after the database confirmed the batch: nothing is dropped for a full queue and
nothing is lost at shutdown or in a crash; the next start writes what is left. Without a spool (below),
`submit()` puts a record on a bounded in-memory queue and returns at once; it never blocks
and never raises. A background task writes batches to a sink. While the sink is down the batch is
retried with capped exponential backoff and every record stays queued; only when the queue is full is
the oldest queued record dropped (REQUEST_LOG_DROPPED counts it). A record the database rejects as
invalid (SQLSTATE class 22/23) can never be written and is dropped and counted too, so one bad row
cannot block the log. Retried writes are idempotent: request_id is unique and inserts skip duplicates.

Memory is bounded by queue_size + batch_size records (the batch in flight is held beside the queue).
The request text is stored only when the logger is built with store_text=True (TTS_LOG_REQUEST_TEXT);
log lines never carry text, keys or hashes, only request ids, counts and error classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from services.database import DatabaseClients
from services.usage.request_record import COLUMNS, RequestRecord, utcnow
from services.usage.request_sinks import (
    NullSink,
    PostgresSink,
    RequestSink,
    SinkError,
    SupabaseSink,
    build_request_sink,
)
from services.usage.request_spool import RequestSpool, record_from_payload, record_payload
from shared.metrics import (
    REQUEST_LOG_DROPPED,
    REQUEST_LOG_ERRORS,
    REQUEST_LOG_QUEUE,
    REQUEST_LOG_SPOOL_BYTES,
    REQUEST_LOG_SPOOL_OLDEST,
    REQUEST_LOG_SPOOL_RECORDS,
    REQUEST_LOG_WRITTEN,
)
from shared.settings import Settings

logger = logging.getLogger("services.usage.request_log")

# Re-exported: the request log's public names live in services/usage/request_record.py and services/usage/request_sinks.py.
__all__ = [
    "COLUMNS",
    "Backoff",
    "NullSink",
    "PostgresSink",
    "RequestLogger",
    "RequestRecord",
    "RequestSink",
    "SinkError",
    "SupabaseSink",
    "build_request_logger",
    "build_request_sink",
    "utcnow",
]


@dataclass
class Backoff:
    """Exponential delay between retries, capped; `jitter` spreads containers that failed together."""

    initial_s: float = 0.5
    max_s: float = 10.0
    factor: float = 2.0
    jitter: float = 0.1
    attempts: int = 0

    def next_delay(self) -> float:
        delay = min(self.max_s, self.initial_s * self.factor**self.attempts)
        self.attempts += 1
        if self.jitter:
            delay *= 1 + random.uniform(-self.jitter, self.jitter)
        return min(self.max_s, delay)

    def reset(self) -> None:
        self.attempts = 0


class RequestLogger:
    """Bounded queue + background batch writer. See the module doc for the guarantees."""

    def __init__(
        self,
        sink: RequestSink,
        queue_size: int = 10_000,
        batch_size: int = 100,
        flush_s: float = 1.0,
        *,
        store_text: bool = False,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        spool: RequestSpool | None = None,
    ) -> None:
        self.sink = sink
        # With a spool, records live on disk (never dropped, never lost at shutdown) instead of in `_queue`.
        self.spool = spool
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_s = flush_s
        self.store_text = store_text
        self.backoff = backoff or Backoff()
        self._sleep = sleep
        self._queue: deque[RequestRecord] = deque()
        # With a spool: records the spool could not take (a full or failing disk), written directly from memory
        # rather than lost; bounded by queue_size like the queue without a spool.
        self._overflow: deque[RequestRecord] = deque()
        self._inflight: list[RequestRecord] = []
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.dropped = 0
        self.written = 0
        self.write_failures = 0
        self._last_drop_log = -math.inf
        # Progress notes (note_progress): the latest note per request not yet written, and the requests whose note
        # is being written (one write in flight per request; a newer note replaces one still waiting).
        self._progress: dict[str, dict[str, Any]] = {}
        self._progress_writers: dict[str, asyncio.Task[None]] = {}

    @property
    def pending(self) -> int:
        """Records not yet written (queued + in flight)."""
        if self.spool is not None:
            return self._spool_depth() + len(self._overflow)
        return len(self._queue) + len(self._inflight)

    def _queued(self) -> int:
        return self._spool_depth() + len(self._overflow) if self.spool is not None else len(self._queue)

    def _spool_depth(self) -> int:
        assert self.spool is not None
        return 0 if self.spool.closed else self.spool.depth()

    def _update_gauge(self) -> None:
        REQUEST_LOG_QUEUE.set(self.pending)

    def refresh_gauges(self) -> None:
        """Spool depth, oldest age and bytes: set when metrics are scraped, not on every record."""
        if self.spool is not None:
            REQUEST_LOG_SPOOL_RECORDS.set(self.spool.depth())
            REQUEST_LOG_SPOOL_OLDEST.set(self.spool.oldest_age_s())
            REQUEST_LOG_SPOOL_BYTES.set(self.spool.size_bytes())

    async def intend_async(self, record: RequestRecord) -> None:
        """Spool a request's intent (status in_progress) before credits are reserved and before work starts; its final
        record replaces it. Without a spool there is nothing durable to write it to. Never raises."""
        if self.spool is None:
            return
        if not self.store_text and record.text is not None:
            record = replace(record, text=None)
        try:
            await asyncio.to_thread(self.spool.intend, record.request_id, record_payload(record))
        except Exception:  # noqa: BLE001 - the intent must never fail a request; its final record still comes
            REQUEST_LOG_ERRORS.labels("spool").inc()
            logger.exception("request log intent append failed", extra={"request_id": record.request_id})

    def note_progress(self, request_id: str, *, audio_seconds: float, text: str) -> None:
        """What a running request has delivered so far (the audio seconds, the text that audio covers), noted on
        its intent row so a row recovered as `interrupted` says what the client heard. Call on the event loop; the
        write runs in a worker thread, one at a time per request. Never raises."""
        if self.spool is None:
            return
        note: dict[str, Any] = {"audio_duration_seconds": round(audio_seconds, 3), "text_length": len(text)}
        if self.store_text:
            note["text"] = text
        self._progress[request_id] = note
        if request_id not in self._progress_writers:
            self._progress_writers[request_id] = asyncio.get_running_loop().create_task(
                self._write_progress(request_id)
            )

    async def _write_progress(self, request_id: str) -> None:
        assert self.spool is not None
        try:
            while (note := self._progress.pop(request_id, None)) is not None:
                await asyncio.to_thread(self.spool.progress, request_id, note)
        except Exception:  # noqa: BLE001 - a lost note leaves the row as the intent said; the final row is whole
            REQUEST_LOG_ERRORS.labels("spool").inc()
            logger.exception("request progress note failed", extra={"request_id": request_id})
        finally:
            self._progress.pop(request_id, None)
            self._progress_writers.pop(request_id, None)

    async def forget_intent_async(self, request_id: str) -> None:
        """Drop a request's intent row (it never started and holds no credits). Never raises."""
        if self.spool is None:
            return
        try:
            await asyncio.to_thread(self.spool.forget_intent, request_id)
        except Exception:  # noqa: BLE001 - a left intent is recovered as `interrupted`, settling nothing
            REQUEST_LOG_ERRORS.labels("spool").inc()
            logger.exception("request log intent removal failed", extra={"request_id": request_id})

    async def submit_async(self, record: RequestRecord) -> bool:
        """`submit` for callers on the event loop: the spool's fsync'd append (~1 ms) runs in a worker thread."""
        if self.spool is None:
            return self.submit(record)
        return await asyncio.to_thread(self.submit, record)

    def submit(self, record: RequestRecord) -> bool:
        """Queue a record. Returns False when the queue was full and the oldest queued record was dropped."""
        try:
            if not self.store_text and record.text is not None:
                record = replace(record, text=None)
            if self.spool is not None:
                try:
                    self.spool.append(record.request_id, record_payload(record))  # on disk before we return
                except Exception:  # noqa: BLE001 - a full or unwritable spool: written directly, counted, logged
                    REQUEST_LOG_ERRORS.labels("spool").inc()
                    logger.exception(
                        "request log spool append failed; writing the record directly",
                        extra={"request_id": record.request_id},
                    )
                    kept = len(self._overflow) < self.queue_size
                    if not kept:
                        self._count_dropped(1)
                        self._overflow.popleft()
                    self._overflow.append(record)
                    self._notify()
                    return kept
                self._update_gauge()
                self._notify()
                return True
            kept_all = True
            if len(self._queue) >= self.queue_size:
                oldest = self._queue.popleft()
                self._count_dropped(1)
                kept_all = False
                now = time.monotonic()
                if now - self._last_drop_log >= 10.0:  # one line per 10 s, not one per request
                    self._last_drop_log = now
                    logger.warning(
                        "request log queue full; dropping oldest records",
                        extra={"dropped_id": oldest.request_id, "dropped_total": self.dropped},
                    )
            self._queue.append(record)
            self._update_gauge()
            if len(self._queue) == 1 or len(self._queue) >= self.batch_size:
                self._notify()
            return kept_all
        except Exception:  # the log must never fail a request
            logger.exception("request log submit failed")
            return False

    def _count_dropped(self, n: int) -> None:
        self.dropped += n
        REQUEST_LOG_DROPPED.inc(n)

    def _notify(self) -> None:
        if self._wake is None or self._loop is None:
            return  # not started: records wait for start()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._wake.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="request-log-writer")
        if self._queued():
            self._wake.set()

    async def _wait_for_batch(self) -> None:
        """Return when a full batch is queued, `flush_s` passed since the first queued record, or closing."""
        assert self._wake is not None and self._loop is not None
        deadline: float | None = None
        while not self._closing and self._queued() < self.batch_size:
            if self._queued() and deadline is None:
                deadline = self._loop.time() + self.flush_s
            timeout = None if deadline is None else deadline - self._loop.time()
            if timeout is not None and timeout <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return

    async def _run(self) -> None:
        while True:
            if not self._inflight:
                if not self._queued() and self._closing:
                    return
                await self._wait_for_batch()
                if not self._queued():
                    continue
                if self._overflow:  # records the spool could not take: from memory, removed once written
                    self._inflight = list(self._overflow)[: self.batch_size]
                elif self.spool is not None:  # stays on disk until the database confirmed it
                    self._inflight = [
                        record_from_payload(RequestRecord, payload)
                        for _, payload in self.spool.oldest(self.batch_size)
                    ]
                else:
                    count = min(self.batch_size, len(self._queue))
                    self._inflight = [self._queue.popleft() for _ in range(count)]
            try:
                done = list(self._inflight)
                await self._write(self._inflight)
            except Exception as exc:
                self.write_failures += 1
                REQUEST_LOG_ERRORS.labels(sink=self.sink.name).inc()
                delay = self.backoff.next_delay()
                logger.warning(
                    "request log write failed; will retry",
                    extra={
                        "sink": self.sink.name,
                        # SinkError messages are built to be safe; anything else: its class only.
                        "error": str(exc) if isinstance(exc, SinkError) else type(exc).__name__,
                        "pending": self.pending,
                        "retry_in_s": round(delay, 2),
                    },
                )
                await self._sleep(delay)
                if self.spool is not None:
                    self._inflight = []  # re-read from the spool: a closing logger leaves them there
                    if self._closing:
                        return
                continue
            self.backoff.reset()
            if self._overflow and done and self._overflow[0] is done[0]:
                for _ in done:
                    self._overflow.popleft()
            elif self.spool is not None:
                self.spool.remove([r.request_id for r in done])
            self._inflight = []
            self._update_gauge()

    async def _write(self, batch: list[RequestRecord]) -> None:
        """Write a batch; on a permanent error, write its rows one by one and drop only the bad ones."""
        try:
            await self.sink.write(batch)
            self._written(len(batch))
            return
        except SinkError as exc:
            if exc.transient:
                raise
            bad_batch = exc
        if len(batch) == 1:
            self._reject(batch[0], bad_batch)
            return
        for record in batch:
            try:
                await self.sink.write([record])
                self._written(1)
            except SinkError as exc:
                if exc.transient:
                    # Keep only what is not yet written so the retry does not redo finished rows.
                    self._inflight = batch[batch.index(record) :]
                    raise
                self._reject(record, exc)

    def _written(self, n: int) -> None:
        self.written += n
        REQUEST_LOG_WRITTEN.labels(sink=self.sink.name).inc(n)

    def _reject(self, record: RequestRecord, exc: SinkError) -> None:
        REQUEST_LOG_ERRORS.labels(sink=self.sink.name).inc()
        self._count_dropped(1)
        logger.error(
            "request log record rejected by the sink; dropped",
            extra={"dropped_id": record.request_id, "sink": self.sink.name, "error": str(exc)},
        )

    async def close(self, timeout: float = 10.0) -> int:
        """Flush what is queued (waiting up to `timeout` s for the sink), stop, and return how many records were lost."""
        if self._task is None and self.pending:
            await self.start()  # never started: still try to write what was queued
        task = self._task
        self._closing = True
        if task is not None:
            if self._wake is not None:
                self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except Exception:
                logger.exception("request log writer failed")
            self._task = None
        if (
            self.spool is not None and not self.spool.closed
        ):  # a second close (Modal's exit after the lifespan)
            kept = self.spool.depth()
            if kept:
                logger.warning(
                    "request log closed with records still spooled; the next start writes them",
                    extra={"spooled": kept, "spool": str(self.spool.path)},
                )
            lost = len(
                self._overflow
            )  # records the spool could not take and the database did not get in time
            if lost:
                self._count_dropped(lost)
                logger.error(
                    "request log closed with unwritten records the spool could not take",
                    extra={"lost": lost, "sink": self.sink.name},
                )
                self._overflow.clear()
            self._update_gauge()
            self.refresh_gauges()
            self.spool.close()
            await self.sink.close()
            return lost
        lost = self.pending
        if lost:
            self._count_dropped(lost)
            logger.error(
                "request log closed with unwritten records", extra={"lost": lost, "sink": self.sink.name}
            )
            self._queue.clear()
            self._inflight = []
        self._update_gauge()
        await self.sink.close()
        return lost


def build_request_logger(
    settings: Settings, sink: RequestSink | None = None, databases: DatabaseClients | None = None
) -> RequestLogger:
    sink = sink or build_request_sink(settings, databases)
    spool = None
    if settings.usage.request_log_spool_dir is not None and not isinstance(sink, NullSink):
        try:
            spool = RequestSpool(
                settings.usage.request_log_spool_dir, stale_after_s=settings.usage.request_log_spool_stale_s
            )
        except (OSError, sqlite3.Error) as exc:
            # An unwritable spool must not stop the server: fall back to the in-memory queue (direct writes to the
            # database, bounded, drops counted), and say so loudly.
            REQUEST_LOG_ERRORS.labels("spool").inc()
            logger.error(
                "request log spool unavailable; writing records directly (a crash can lose queued ones)",
                extra={"spool": str(settings.usage.request_log_spool_dir), "error_class": type(exc).__name__},
            )
    return RequestLogger(
        sink,
        spool=spool,
        queue_size=settings.usage.request_log_queue_size,
        batch_size=settings.usage.request_log_batch_size,
        flush_s=settings.usage.request_log_flush_s,
        store_text=settings.usage.log_request_text,
    )
