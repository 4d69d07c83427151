"""Custom voices in PostgreSQL: table `tts_voices` (deploy/sql/005_voices.sql) through the process's asyncpg pool."""

from __future__ import annotations

from typing import Any

from services.database import PostgresPool
from services.voice_library.records import COLUMNS, VoiceRecord
from services.voice_library.store import VoiceStore, VoiceStoreUnavailable

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM tts_voices"
_INSERT = f"INSERT INTO tts_voices ({', '.join(COLUMNS)}) VALUES ({', '.join(f'${i}' for i in range(1, 11))})"


class PostgresVoiceStore(VoiceStore):
    name = "postgres"

    def __init__(self, dsn: str | None = None, *, pool: PostgresPool | None = None) -> None:
        """`pool`: the process's shared pool (services/database.py), closed by its owner; else one of its own."""
        if pool is None and not dsn:
            raise ValueError("PostgresVoiceStore needs a DSN or a pool")
        self._owns_pool = pool is None
        self._pool = pool or PostgresPool(str(dsn), max_connections=2)

    async def _run(self, method: str, query: str, *args: Any, idempotent: bool = True) -> Any:
        """One statement. A dead pooled connection (the server restarted) gets one retry on a fresh one; a write
        is not retried itself (only a probe before it is), so a reply lost in flight cannot apply it twice."""
        import asyncpg

        retryable = (
            OSError,
            TimeoutError,
            asyncpg.InterfaceError,
            asyncpg.PostgresConnectionError,
            asyncpg.exceptions.OperatorInterventionError,
        )
        for attempt in (0, 1):
            try:
                pool = await self._pool.get()
                async with pool.acquire() as conn:
                    if not idempotent:
                        await conn.fetchval("SELECT 1")
                        try:
                            return await getattr(conn, method)(query, *args)
                        except retryable as exc:
                            raise VoiceStoreUnavailable(self.name, type(exc).__name__) from None
                    return await getattr(conn, method)(query, *args)
            except retryable as exc:
                if attempt == 1:
                    raise VoiceStoreUnavailable(self.name, type(exc).__name__) from None
            except asyncpg.PostgresError as exc:  # a missing table (migrations not applied) and the like
                raise VoiceStoreUnavailable(self.name, f"{type(exc).__name__} {exc.sqlstate}") from None
        raise AssertionError("unreachable")

    async def insert(self, record: VoiceRecord) -> None:
        row = record.to_row()
        await self._run("execute", _INSERT, *(row[c] for c in COLUMNS), idempotent=False)

    async def get(self, voice_id: str) -> VoiceRecord | None:
        row = await self._run("fetchrow", f"{_SELECT} WHERE voice_id = $1", voice_id)
        return None if row is None else VoiceRecord.from_row(dict(row))

    async def list(self, owner: str | None) -> list[VoiceRecord]:
        if owner is None:
            rows = await self._run("fetch", f"{_SELECT} ORDER BY created_at, voice_id")
        else:
            rows = await self._run(
                "fetch", f"{_SELECT} WHERE owner_key_id = $1 ORDER BY created_at, voice_id", owner
            )
        return [VoiceRecord.from_row(dict(r)) for r in rows]

    async def delete(self, voice_id: str, owner: str | None) -> bool:
        if owner is None:
            result = await self._run(
                "execute", "DELETE FROM tts_voices WHERE voice_id = $1", voice_id, idempotent=False
            )
        else:
            result = await self._run(
                "execute",
                "DELETE FROM tts_voices WHERE voice_id = $1 AND owner_key_id = $2",
                voice_id,
                owner,
                idempotent=False,
            )
        return bool(result.endswith(" 1"))

    async def close(self) -> None:
        if self._owns_pool:
            await self._pool.close()
