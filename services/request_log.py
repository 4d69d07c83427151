"""The request log: one row per request in `tts_requests`, written off the hot path.

With a spool directory (TTS_REQUEST_LOG_SPOOL_DIR, the default whenever a database sink is configured),
`submit()` writes the record to the durable on-disk spool (services/request_spool.py) before it returns, and the
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
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from services.request_spool import RequestSpool, record_from_payload, record_payload
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

logger = logging.getLogger("services.request_log")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class RequestRecord:
    """What one request did. Floats that are NaN/inf are written as NULL."""

    request_id: str  # the server's id: unique, the idempotency key of every write
    speaker: str
    text_length: int
    status: str  # completed | failed | cancelled
    key_id: str | None = None
    stream: bool = False
    format: str = "wav"
    sample_rate: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    text: str | None = None
    text_chunked: bool = False
    error_code: str | None = None
    ttfb_ms: float | None = None
    rtf: float | None = None
    audio_duration_seconds: float | None = None
    credits_charged: int = 0  # 1 credit = 1 character of request text
    created_at: datetime = field(default_factory=utcnow)
    completed_at: datetime | None = None
    client_request_id: str | None = None  # the client's X-Request-ID (not unique: clients reuse them)

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        for name in (
            "temperature",
            "top_p",
            "repetition_penalty",
            "ttfb_ms",
            "rtf",
            "audio_duration_seconds",
        ):
            value = row[name]
            row[name] = float(value) if value is not None and math.isfinite(value) else None
        return row

    def to_json_row(self) -> dict[str, Any]:
        """The row with ISO-8601 times, for PostgREST."""
        row = self.to_row()
        for name in ("created_at", "completed_at"):
            if row[name] is not None:
                row[name] = row[name].isoformat()
        return row


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RequestRecord))
# PostgreSQL array type of each column, for the single-statement unnest() insert.
_PG_TYPES: dict[str, str] = {
    "request_id": "text",
    "speaker": "text",
    "text_length": "int4",
    "status": "text",
    "key_id": "text",
    "stream": "bool",
    "format": "text",
    "sample_rate": "int4",
    "temperature": "float8",
    "top_k": "int4",
    "top_p": "float8",
    "max_tokens": "int4",
    "repetition_penalty": "float8",
    "seed": "int8",
    "text": "text",
    "text_chunked": "bool",
    "error_code": "text",
    "ttfb_ms": "float8",
    "rtf": "float8",
    "audio_duration_seconds": "float8",
    "credits_charged": "int8",
    "created_at": "timestamptz",
    "completed_at": "timestamptz",
    "client_request_id": "text",
}
assert set(_PG_TYPES) == set(COLUMNS)


class SinkError(Exception):
    """A failed write. `transient` False: the rows themselves are invalid and retrying cannot help."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class RequestSink(Protocol):
    name: str

    async def write(self, records: Sequence[RequestRecord]) -> None:
        """Write all records or raise; writing a record twice must not create a second row."""

    async def close(self) -> None: ...


class NullSink:
    """Discards records (TTS_REQUEST_LOG_SINK=none)."""

    name = "none"

    async def write(self, records: Sequence[RequestRecord]) -> None:
        return None

    async def close(self) -> None:
        return None


def _sqlstate_permanent(sqlstate: str | None) -> bool:
    # 22xxx data exception, 23xxx integrity violation: the row is bad. Everything else (connection loss,
    # shutdown, a missing table before migrations ran) may heal, so the records wait.
    return bool(sqlstate) and str(sqlstate)[:2] in ("22", "23")


class PostgresSink:
    """Batched `INSERT ... SELECT FROM unnest(...) ON CONFLICT (request_id) DO NOTHING` via asyncpg.

    The pool is created on first write and keeps no idle connections it does not need; after the server
    restarts, dead connections fail once and the retried batch runs on fresh ones.
    """

    name = "postgres"

    def __init__(
        self, dsn: str, *, max_connections: int = 2, timeout_s: float = 10.0, table: str = "tts_requests"
    ):
        self._dsn = dsn
        self._max = max_connections
        self._timeout = timeout_s
        self._pool: Any = None
        cols = ", ".join(COLUMNS)
        arrays = ", ".join(f"${i}::{_PG_TYPES[c]}[]" for i, c in enumerate(COLUMNS, start=1))
        self._sql = (
            f"INSERT INTO {table} ({cols}) SELECT * FROM unnest({arrays}) ON CONFLICT (request_id) DO NOTHING"
        )

    async def _get_pool(self) -> Any:
        import asyncpg

        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=0,
                max_size=self._max,
                timeout=self._timeout,
                command_timeout=self._timeout,
            )
        return self._pool

    async def write(self, records: Sequence[RequestRecord]) -> None:
        import asyncpg

        rows = [r.to_row() for r in records]
        columns = [[row[c] for row in rows] for c in COLUMNS]
        try:
            pool = await self._get_pool()
            async with pool.acquire() as conn:
                await conn.execute(self._sql, *columns)
        except asyncpg.PostgresError as exc:
            # Only the class and SQLSTATE: the server's detail can quote the failing row.
            raise SinkError(
                f"postgres {type(exc).__name__} ({exc.sqlstate})",
                transient=not _sqlstate_permanent(exc.sqlstate),
            ) from None
        except (asyncpg.DataError, TypeError, ValueError) as exc:  # a value asyncpg cannot encode
            raise SinkError(f"postgres {type(exc).__name__}", transient=False) from None
        except Exception as exc:  # network, pool, timeouts
            raise SinkError(f"postgres {type(exc).__name__}") from None

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 5)


class SupabaseSink:
    """PostgREST upsert with `Prefer: resolution=ignore-duplicates` on request_id; the sync client runs in a thread."""

    name = "supabase"

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        client: Any = None,
        table: str = "tts_requests",
    ) -> None:
        if client is None:
            if not url or not key:
                raise ValueError("SupabaseSink needs supabase_url and supabase_key")
            from services.access.stores import make_supabase_client

            client = make_supabase_client(url, key)
        self._client = client
        self._table = table

    def _upsert(self, rows: list[dict[str, Any]]) -> None:
        from postgrest.types import ReturnMethod

        self._client.table(self._table).upsert(
            rows, on_conflict="request_id", ignore_duplicates=True, returning=ReturnMethod.minimal
        ).execute()

    async def write(self, records: Sequence[RequestRecord]) -> None:
        rows = [r.to_json_row() for r in records]
        try:
            await asyncio.to_thread(self._upsert, rows)
        except Exception as exc:
            code = getattr(exc, "code", None)
            raise SinkError(
                f"supabase {type(exc).__name__} ({code})", transient=not _sqlstate_permanent(code)
            ) from None

    async def close(self) -> None:
        return None


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
        self._inflight: list[RequestRecord] = []
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.dropped = 0
        self.written = 0
        self.write_failures = 0
        self._last_drop_log = -math.inf

    @property
    def pending(self) -> int:
        """Records not yet written (queued + in flight)."""
        if self.spool is not None:
            return self.spool.depth()
        return len(self._queue) + len(self._inflight)

    def _queued(self) -> int:
        return self.spool.depth() if self.spool is not None else len(self._queue)

    def _update_gauge(self) -> None:
        REQUEST_LOG_QUEUE.set(self.pending)

    def refresh_gauges(self) -> None:
        """Spool depth, oldest age and bytes: set when metrics are scraped, not on every record."""
        if self.spool is not None:
            REQUEST_LOG_SPOOL_RECORDS.set(self.spool.depth())
            REQUEST_LOG_SPOOL_OLDEST.set(self.spool.oldest_age_s())
            REQUEST_LOG_SPOOL_BYTES.set(self.spool.size_bytes())

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
                self.spool.append(record.request_id, record_payload(record))  # on disk before we return
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
                if self.spool is not None:  # stays on disk until the database confirmed it
                    self._inflight = [record_from_payload(RequestRecord, payload)
                                      for _, payload in self.spool.oldest(self.batch_size)]
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
            if self.spool is not None:
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
        if self.spool is not None:
            kept = self.spool.depth()
            if kept:
                logger.warning("request log closed with records still spooled; the next start writes them",
                               extra={"spooled": kept, "spool": str(self.spool.path)})
            self._update_gauge()
            self.refresh_gauges()
            self.spool.close()
            await self.sink.close()
            return 0
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


def build_request_sink(settings: Settings) -> RequestSink:
    if settings.request_log_sink == "postgres":
        if not settings.database_url:
            raise ValueError("TTS_REQUEST_LOG_SINK=postgres needs TTS_DATABASE_URL")
        return PostgresSink(settings.database_url)
    if settings.request_log_sink == "supabase":
        return SupabaseSink(settings.supabase_url, settings.supabase_key)
    return NullSink()


def build_request_logger(settings: Settings, sink: RequestSink | None = None) -> RequestLogger:
    sink = sink or build_request_sink(settings)
    spool = None
    if settings.request_log_spool_dir is not None and not isinstance(sink, NullSink):
        spool = RequestSpool(settings.request_log_spool_dir)
    return RequestLogger(
        sink,
        spool=spool,
        queue_size=settings.request_log_queue_size,
        batch_size=settings.request_log_batch_size,
        flush_s=settings.request_log_flush_s,
        store_text=settings.log_request_text,
    )
