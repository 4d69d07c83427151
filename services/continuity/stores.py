"""Where recent syntheses are remembered: PostgreSQL or Supabase (table `tts_recent_requests`,
deploy/sql/006_recent_requests.sql), shared by every container, wherever the voice library keeps its voices there;
otherwise a per-process cache (one server: a request made on another process cannot be continued on this one).

A write that fails is logged and dropped (that request cannot be continued; the audio was already made); a read
that fails is a 503, never "not found". Expired rows are never returned, and are deleted as new ones are written
(at most once a minute per process).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from services.continuity.records import COLUMNS, RecentRequest
from services.errors import ServiceError

if TYPE_CHECKING:
    from services.database import DatabaseClients, PostgresPool
    from shared.settings import Settings

logger = logging.getLogger("services.continuity.stores")

TABLE = "tts_recent_requests"
MEMORY_MAX_REQUESTS = 20_000  # per process: ~300 ids and a line of text each, a few tens of MB at most
PURGE_INTERVAL_S = 60.0


class RecentStoreUnavailable(ServiceError):
    def __init__(self, store: str, detail: str) -> None:
        super().__init__(
            "SERVICE_UNAVAILABLE",
            f"The store of recent requests ({store}) is unreachable ({detail}); retry shortly.",
            retry_after=5,
        )


class RecentRequestStore(ABC):
    name = "base"

    @abstractmethod
    async def put(self, record: RecentRequest) -> None:
        """Remember `record` (a request id is written once; a repeat is ignored)."""

    @abstractmethod
    async def get(self, request_id: str) -> RecentRequest | None:
        """The record if it exists and has not expired."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


class MemoryRecentStore(RecentRequestStore):
    """This process only; the oldest are dropped beyond `max_requests` (insertion order is expiry order)."""

    name = "memory"

    def __init__(
        self, max_requests: int = MEMORY_MAX_REQUESTS, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.max_requests = max_requests
        self._clock = clock or (lambda: datetime.now(UTC))
        self._records: OrderedDict[str, RecentRequest] = OrderedDict()

    async def put(self, record: RecentRequest) -> None:
        now = self._clock()
        while self._records and next(iter(self._records.values())).expires_at <= now:
            self._records.popitem(last=False)
        if record.request_id in self._records:
            return
        self._records[record.request_id] = record
        while len(self._records) > self.max_requests:
            self._records.popitem(last=False)

    async def get(self, request_id: str) -> RecentRequest | None:
        record = self._records.get(request_id)
        return record if record is not None and record.expires_at > self._clock() else None


class _Purging(RecentRequestStore):
    """Deletes expired rows after a write, at most once per PURGE_INTERVAL_S."""

    def __init__(self) -> None:
        self._purged_at = float("-inf")

    def _purge_due(self) -> bool:
        now = time.monotonic()
        if now - self._purged_at < PURGE_INTERVAL_S:
            return False
        self._purged_at = now
        return True


class PostgresRecentStore(_Purging):
    name = "postgres"

    def __init__(self, pool: PostgresPool) -> None:
        super().__init__()
        self._pool = pool

    async def _run(self, method: str, query: str, *args: Any) -> Any:
        import asyncpg

        try:
            pool = await self._pool.get()
            async with pool.acquire() as conn:
                return await getattr(conn, method)(query, *args)
        except (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresError) as exc:
            raise RecentStoreUnavailable(self.name, type(exc).__name__) from None

    async def put(self, record: RecentRequest) -> None:
        row = record.to_row()
        placeholders = ", ".join(f"${i}" for i in range(1, len(COLUMNS) + 1))
        await self._run(
            "execute",
            f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({placeholders}) "
            "ON CONFLICT (request_id) DO NOTHING",
            *(row[c] for c in COLUMNS),
        )
        if self._purge_due():
            await self._run("execute", f"DELETE FROM {TABLE} WHERE expires_at <= now()")

    async def get(self, request_id: str) -> RecentRequest | None:
        row = await self._run(
            "fetchrow",
            f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE request_id = $1 AND expires_at > now()",
            request_id,
        )
        return None if row is None else RecentRequest.from_row(dict(row))


class SupabaseRecentStore(_Purging):
    """Through PostgREST with the service role key (row-level security is on with no policies)."""

    name = "supabase"

    def __init__(self, client: Any) -> None:
        super().__init__()
        self._client = client

    async def _call(self, fn: Callable[[], Any]) -> list[dict[str, Any]]:
        try:
            response = await asyncio.to_thread(fn)
        except Exception as exc:  # the error may echo row data: report only its class and PostgREST code
            raise RecentStoreUnavailable(
                self.name, f"{type(exc).__name__} {getattr(exc, 'code', '') or ''}".strip()
            ) from None
        data = response.data if response is not None else None
        return [data] if isinstance(data, dict) else list(data or [])

    async def put(self, record: RecentRequest) -> None:
        from postgrest.types import ReturnMethod

        row = record.to_json_row()
        table = self._client.table(TABLE)
        await self._call(
            lambda: table.upsert(
                row, on_conflict="request_id", ignore_duplicates=True, returning=ReturnMethod.minimal
            ).execute()
        )
        if self._purge_due():
            now = datetime.now(UTC).isoformat()
            await self._call(
                lambda: (
                    self._client.table(TABLE)
                    .delete(returning=ReturnMethod.minimal)
                    .lte("expires_at", now)
                    .execute()
                )
            )

    async def get(self, request_id: str) -> RecentRequest | None:
        now = datetime.now(UTC).isoformat()
        rows = await self._call(
            lambda: (
                self._client.table(TABLE)
                .select("*")
                .eq("request_id", request_id)
                .gt("expires_at", now)
                .limit(1)
                .execute()
            )
        )
        return RecentRequest.from_row(rows[0]) if rows else None


def build_recent_store(settings: Settings, databases: DatabaseClients | None) -> RecentRequestStore:
    """Beside the voice library: its database when it has one (shared by containers), else this process's memory."""
    kind = settings.resolved_voice_store
    if kind == "postgres" and databases is not None and databases.postgres is not None:
        return PostgresRecentStore(databases.postgres)
    if kind == "supabase" and databases is not None and databases.supabase is not None:
        return SupabaseRecentStore(databases.supabase)
    return MemoryRecentStore()
