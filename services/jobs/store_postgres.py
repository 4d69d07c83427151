"""`JobStore` on PostgreSQL (deploy/sql/011_jobs.sql, 013_job_retention.sql, 014_job_turns.sql; the statements:
sql.py), on the pool the service shares (services/database.py): jobs survive a container move and every replica
sees them. Leases are timed by the database's clock, so replicas with skewed clocks still never hold one job at
once."""

from __future__ import annotations

from typing import Any, Unpack

import services.jobs.sql as sql
from services.database import PostgresPool
from services.jobs.records import ChapterStatus, JobRecord, JobStatus
from services.jobs.sql import JOB_COLUMNS, POSTGRES
from services.jobs.store import (
    ChapterResult,
    JobEnding,
    chapter_rows,
    chapter_values,
    ending_values,
    job_from_row,
    job_values,
)

SQL = POSTGRES.render


class PostgresJobStore:
    name = "postgres"

    def __init__(self, pool: PostgresPool) -> None:
        self.pool = pool

    async def _load(self, conn: Any, row: Any, text_of: int = -1) -> JobRecord | None:
        """The job with its chapters, the text of chapter `text_of` only (-1: none)."""
        if row is None:
            return None
        chapters = await conn.fetch(SQL(sql.CHAPTERS), row[0], text_of)
        return job_from_row(tuple(row), [tuple(c) for c in chapters])

    async def create(self, job: JobRecord) -> None:
        pool = await self.pool.get()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(SQL(sql.INSERT_JOB), *job_values(job))
            await conn.executemany(SQL(sql.INSERT_CHAPTER), chapter_rows(job))

    async def get(self, job_id: str, key_id: str | None) -> JobRecord | None:
        pool = await self.pool.get()
        async with pool.acquire() as conn:
            row = await conn.fetchrow(SQL(sql.JOB_BY_ID), job_id)
            if row is not None and key_id is not None and row[1] != key_id:
                return None
            return await self._load(conn, row)

    async def list(self, key_id: str, limit: int = 100) -> list[JobRecord]:
        pool = await self.pool.get()
        async with pool.acquire() as conn:
            rows = await conn.fetch(SQL(sql.KEYS_JOBS), key_id, limit)
            return [job for row in rows if (job := await self._load(conn, row)) is not None]

    async def queued_characters(self, key_id: str) -> int:
        pool = await self.pool.get()
        return int(await pool.fetchval(SQL(sql.QUEUED_CHARACTERS), key_id) or 0)

    async def stored_text_bytes(self, key_id: str) -> int:
        pool = await self.pool.get()
        return int(await pool.fetchval(SQL(sql.STORED_TEXT_BYTES), key_id) or 0)

    async def job_ids(self, key_id: str) -> tuple[str, ...]:
        pool = await self.pool.get()
        return tuple(r[0] for r in await pool.fetch(SQL(sql.KEYS_JOB_IDS), key_id))

    async def claim(self, owner: str, lease_s: float) -> JobRecord | None:
        pool = await self.pool.get()
        async with pool.acquire() as conn, conn.transaction():
            # SKIP LOCKED: replicas claiming at once take different jobs; the lease condition keeps a held one held.
            row = await conn.fetchrow(
                SQL(
                    "UPDATE tts_jobs SET status = 'running', lease_owner = $1, lease_expires = {now} + $2, "
                    "claimed_at = {now}, heartbeat_at = {now} "
                    f"WHERE id = (SELECT id FROM tts_jobs WHERE {sql.CLAIMABLE} ORDER BY {sql.TURN_ORDER} LIMIT 1 "
                    f"FOR UPDATE SKIP LOCKED) RETURNING {JOB_COLUMNS}"
                ),
                owner,
                float(lease_s),
            )
            if row is None:
                return None
            next_up = await conn.fetchval(SQL(sql.NEXT_CHAPTER), row[0])
            return await self._load(conn, row, -1 if next_up is None else next_up)

    async def renew(
        self, job_id: str, owner: str, lease_s: float, progress: tuple[int, float] | None = None
    ) -> bool:
        pool = await self.pool.get()
        index, seconds = progress if progress is not None else (-1, None)
        # One statement: the lease, and the running chapter's progress only while the lease is still its own.
        held = await pool.fetchval(
            SQL(
                "WITH held AS (UPDATE tts_jobs SET lease_expires = {now} + $3, heartbeat_at = {now} "
                "WHERE id = $1 AND lease_owner = $2 AND status = 'running' RETURNING id), "
                "noted AS (UPDATE tts_job_chapters SET audio_seconds = $5 WHERE job_id IN (SELECT id FROM held) "
                "AND idx = $4 AND status = 'running' AND $5::float8 IS NOT NULL) "
                "SELECT count(*) FROM held"
            ),
            job_id,
            owner,
            float(lease_s),
            index,
            seconds,
        )
        return bool(held == 1)

    async def release(self, job_id: str, owner: str) -> None:
        pool = await self.pool.get()
        await pool.execute(SQL(sql.RELEASE), job_id, owner)

    async def set_chapter(
        self, job_id: str, index: int, status: ChapterStatus, **result: Unpack[ChapterResult]
    ) -> None:
        pool = await self.pool.get()
        await pool.execute(SQL(sql.SET_CHAPTER), *chapter_values(job_id, index, status, result))

    async def finish(self, job_id: str, owner: str, status: JobStatus, **ending: Unpack[JobEnding]) -> None:
        pool = await self.pool.get()
        await pool.execute(SQL(sql.FINISH), *ending_values(job_id, owner, status, ending))

    async def cancel(self, job_id: str, key_id: str) -> JobRecord | None:
        pool = await self.pool.get()
        async with pool.acquire() as conn:
            await conn.execute(SQL(sql.CANCEL), job_id, key_id)
            row = await conn.fetchrow(SQL(sql.KEYS_JOB), job_id, key_id)
            return await self._load(conn, row)

    async def resume(self, job_id: str, key_id: str) -> JobRecord | None:
        pool = await self.pool.get()
        async with pool.acquire() as conn, conn.transaction():
            result = await conn.execute(SQL(sql.RESUME), job_id, key_id)
            if str(result).endswith(" 1"):
                await conn.execute(SQL(sql.RESUME_CHAPTERS), job_id)
            row = await conn.fetchrow(SQL(sql.KEYS_JOB), job_id, key_id)
            return await self._load(conn, row)

    async def expired(self, retention_s: float, limit: int = 100) -> tuple[str, ...]:
        pool = await self.pool.get()
        rows = await pool.fetch(SQL(sql.EXPIRED), float(retention_s), limit)
        return tuple(row[0] for row in rows)

    async def delete(self, job_id: str, key_id: str | None) -> bool:
        pool = await self.pool.get()
        result = await pool.execute(SQL(sql.DELETE), job_id, key_id)
        return str(result).endswith(" 1")

    async def close(self) -> None:
        return None  # the pool belongs to the service's DatabaseClients
