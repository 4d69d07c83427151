"""Where request-log records go: PostgreSQL (batched insert via asyncpg), Supabase (an RPC to a SQL function), or
nowhere.

Every write is idempotent (request_id is unique; duplicates are skipped), so a retried batch never doubles a row.
A `SinkError` says whether a failure may heal (transient: the records wait) or never will (the row is bad).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from services.database import DatabaseClients, PostgresPool, make_supabase_client
from services.usage.request_record import RequestRecord
from shared.settings import Settings

logger = logging.getLogger("services.usage.request_log")


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
    """The SQL function `tts_store_requests` (deploy/sql/010_credit_reservations.sql), called with the batch as JSON:
    it stores the rows not stored before and settles each new row's credits in the same transaction, exactly as the
    Supabase sink's RPC does (one function, so both backends follow one rule).

    The pool is created on first write and keeps no idle connections it does not need; after the server
    restarts, dead connections fail once and the retried batch runs on fresh ones.
    """

    name = "postgres"

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: PostgresPool | None = None,
        max_connections: int = 2,
        timeout_s: float = 10.0,
        table: str = "tts_requests",
    ):
        """`pool`: the process's shared pool (services/database.py), closed by its owner; else one of its own."""
        if pool is None and not dsn:
            raise ValueError("PostgresSink needs a DSN or a pool")
        if table != "tts_requests":
            raise ValueError("PostgresSink writes tts_requests (through tts_store_requests)")
        self._owns_pool = pool is None
        self._pool = pool or PostgresPool(
            str(dsn), max_connections=max_connections, command_timeout_s=timeout_s
        )
        self._sql = "SELECT tts_store_requests($1::jsonb)"

    async def write(self, records: Sequence[RequestRecord]) -> None:
        import asyncpg

        try:
            payload = json.dumps([r.to_json_row() for r in records])
        except (TypeError, ValueError) as exc:  # a value JSON cannot carry
            raise SinkError(f"postgres {type(exc).__name__}", transient=False) from None
        try:
            pool = await self._pool.get()
            async with pool.acquire() as conn:
                await conn.execute(self._sql, payload)
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
        if self._owns_pool:
            await self._pool.close()


class SupabaseSink:
    """The SQL function `tts_store_requests` over RPC (deploy/sql/010_credit_reservations.sql), the PostgreSQL sink's
    function: it stores the rows not stored before and settles their credits in one transaction. The
    sync client runs in a thread.

    A project whose migrations stop before 009 answers that the function does not exist (PostgREST `PGRST202`): the
    sink then falls back to a plain upsert (`Prefer: resolution=ignore-duplicates` on request_id), which keeps every
    row, `refund_credits` included, but gives no refund back; it logs an error naming the migration, and asks for the
    function again after `RPC_RETRY_S`.
    """

    name = "supabase"
    FUNCTION = "tts_store_requests"
    RPC_RETRY_S = 300.0

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
            client = make_supabase_client(url, key)
        self._client = client
        self._table = table
        self._rpc_missing_since: float | None = None

    def _store(self, rows: list[dict[str, Any]]) -> None:
        self._client.rpc(self.FUNCTION, {"p_rows": rows}).execute()

    def _upsert(self, rows: list[dict[str, Any]]) -> None:
        from postgrest.types import ReturnMethod

        self._client.table(self._table).upsert(
            rows, on_conflict="request_id", ignore_duplicates=True, returning=ReturnMethod.minimal
        ).execute()

    def _rpc_usable(self) -> bool:
        return (
            self._rpc_missing_since is None or time.monotonic() - self._rpc_missing_since > self.RPC_RETRY_S
        )

    async def write(self, records: Sequence[RequestRecord]) -> None:
        rows = [r.to_json_row() for r in records]
        try:
            if self._rpc_usable():
                try:
                    await asyncio.to_thread(self._store, rows)
                    self._rpc_missing_since = None
                    return
                except Exception as exc:
                    if getattr(exc, "code", None) != "PGRST202":  # anything but "no such function"
                        raise
                    self._rpc_missing_since = time.monotonic()
                    logger.error(
                        "the Supabase project lacks tts_store_requests: request-log rows are upserted without giving "
                        "back the refunds they carry; apply deploy/sql/009_store_requests.sql",
                        extra={"sink": self.name},
                    )
            await asyncio.to_thread(self._upsert, rows)
        except Exception as exc:
            code = getattr(exc, "code", None)
            raise SinkError(
                f"supabase {type(exc).__name__} ({code})", transient=not _sqlstate_permanent(code)
            ) from None

    async def close(self) -> None:
        return None


def build_request_sink(settings: Settings, databases: DatabaseClients | None = None) -> RequestSink:
    """The configured sink, on the shared database clients when given (services/database.py)."""
    if settings.usage.request_log_sink == "postgres":
        if not settings.databases.database_url:
            raise ValueError("TTS_REQUEST_LOG_SINK=postgres needs TTS_DATABASE_URL")
        pool = databases.postgres if databases is not None else None
        return PostgresSink(settings.databases.database_url, pool=pool)
    if settings.usage.request_log_sink == "supabase":
        client = databases.supabase if databases is not None else None
        return SupabaseSink(settings.databases.supabase_url, settings.databases.supabase_key, client=client)
    return NullSink()
