"""`JobStore` on PostgreSQL (deploy/sql/011_jobs.sql, 013_job_retention.sql, 014_job_turns.sql), on the pool the service shares (services/database.py): jobs
survive a container move and every replica sees them. Leases are timed by the database's clock, so replicas with
skewed clocks still never hold one job at once."""

from __future__ import annotations

from typing import Any

from services.database import PostgresPool
from services.jobs.records import ChapterStatus, JobRecord, JobStatus
from services.jobs.store import CHAPTER_CLAIMED, JOB_COLUMNS, QUEUED_CHARACTERS, TURN_ORDER, job_from_row

NOW = "extract(epoch from clock_timestamp())"
CHAPTERS = CHAPTER_CLAIMED.format(param="$2", length="char_length")


class PostgresJobStore:
    name = "postgres"

    def __init__(self, pool: PostgresPool) -> None:
        self.pool = pool

    async def _load(self, conn: Any, row: Any, text_of: int = -1) -> JobRecord | None:
        """The job with its chapters, the text of chapter `text_of` only (-1: none)."""
        if row is None:
            return None
        chapters = await conn.fetch(
            f"SELECT {CHAPTERS} FROM tts_job_chapters WHERE job_id = $1 ORDER BY idx", row[0], text_of
        )
        return job_from_row(tuple(row), [tuple(c) for c in chapters])

    async def create(self, job: JobRecord) -> None:
        pool = await self.pool.get()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO tts_jobs (id, key_id, key_hash, title, options, status, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                job.id,
                job.key_id,
                job.key_hash,
                job.title,
                job.options.to_json(),
                job.status,
                job.created_at,
            )
            await conn.executemany(
                "INSERT INTO tts_job_chapters (job_id, idx, title, text, status) VALUES ($1, $2, $3, $4, $5)",
                [(job.id, c.index, c.title, c.text, c.status) for c in job.chapters],
            )

    async def get(self, job_id: str, key_id: str | None) -> JobRecord | None:
        pool = await self.pool.get()
        async with pool.acquire() as conn:
            row = await conn.fetchrow(f"SELECT {JOB_COLUMNS} FROM tts_jobs WHERE id = $1", job_id)
            if row is not None and key_id is not None and row[1] != key_id:
                return None
            return await self._load(conn, row)

    async def list(self, key_id: str, limit: int = 100) -> list[JobRecord]:
        pool = await self.pool.get()
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {JOB_COLUMNS} FROM tts_jobs WHERE key_id = $1 ORDER BY created_at DESC, id LIMIT $2",
                key_id,
                limit,
            )
            return [job for row in rows if (job := await self._load(conn, row)) is not None]

    async def queued_characters(self, key_id: str) -> int:
        pool = await self.pool.get()
        return int(
            await pool.fetchval(QUEUED_CHARACTERS.format(param="$1", length="char_length"), key_id) or 0
        )

    async def job_ids(self, key_id: str) -> tuple[str, ...]:
        pool = await self.pool.get()
        return tuple(r[0] for r in await pool.fetch("SELECT id FROM tts_jobs WHERE key_id = $1", key_id))

    async def claim(self, owner: str, lease_s: float) -> JobRecord | None:
        pool = await self.pool.get()
        async with pool.acquire() as conn, conn.transaction():
            # SKIP LOCKED: replicas claiming at once take different jobs; the lease condition keeps a held one held.
            row = await conn.fetchrow(
                f"UPDATE tts_jobs SET status = 'running', lease_owner = $1, lease_expires = {NOW} + $2, "
                f"claimed_at = {NOW}, heartbeat_at = {NOW} "
                "WHERE id = (SELECT id FROM tts_jobs WHERE status IN ('queued', 'running') "
                f"AND lease_expires < {NOW} ORDER BY {TURN_ORDER} LIMIT 1 FOR UPDATE SKIP LOCKED) "
                f"RETURNING {JOB_COLUMNS}",
                owner,
                float(lease_s),
            )
            if row is None:
                return None
            next_up = await conn.fetchval(
                "SELECT min(idx) FROM tts_job_chapters WHERE job_id = $1 AND status != 'done'", row[0]
            )
            return await self._load(conn, row, -1 if next_up is None else next_up)

    async def renew(
        self, job_id: str, owner: str, lease_s: float, progress: tuple[int, float] | None = None
    ) -> bool:
        pool = await self.pool.get()
        index, seconds = progress if progress is not None else (-1, None)
        # One statement: the lease, and the running chapter's progress only while the lease is still its own.
        held = await pool.fetchval(
            "WITH held AS (UPDATE tts_jobs SET lease_expires = "
            f"{NOW} + $3, heartbeat_at = {NOW} "
            "WHERE id = $1 AND lease_owner = $2 AND status = 'running' RETURNING id), "
            "noted AS (UPDATE tts_job_chapters SET audio_seconds = $5 WHERE job_id IN (SELECT id FROM held) "
            "AND idx = $4 AND status = 'running' AND $5::float8 IS NOT NULL) "
            "SELECT count(*) FROM held",
            job_id,
            owner,
            float(lease_s),
            index,
            seconds,
        )
        return held == 1

    async def release(self, job_id: str, owner: str) -> None:
        pool = await self.pool.get()
        await pool.execute(
            "UPDATE tts_jobs SET lease_expires = 0, lease_owner = NULL WHERE id = $1 AND lease_owner = $2",
            job_id,
            owner,
        )

    async def set_chapter(
        self,
        job_id: str,
        index: int,
        status: ChapterStatus,
        *,
        audio_seconds: float | None = None,
        render_seconds: float | None = None,
        request_id: str | None = None,
    ) -> None:
        pool = await self.pool.get()
        await pool.execute(
            "UPDATE tts_job_chapters SET status = $3, audio_seconds = $4, render_seconds = $5, request_id = $6 "
            "WHERE job_id = $1 AND idx = $2",
            job_id,
            index,
            status,
            audio_seconds,
            render_seconds,
            request_id,
        )

    async def finish(
        self,
        job_id: str,
        owner: str,
        status: JobStatus,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        book_done: bool = False,
    ) -> None:
        pool = await self.pool.get()
        await pool.execute(
            "UPDATE tts_jobs SET status = CASE WHEN status = 'cancelled' THEN status ELSE $3 END, "
            "error_code = COALESCE(error_code, $4), error_message = COALESCE(error_message, $5), "
            f"book_done = $6, lease_owner = NULL, lease_expires = 0, finished_at = COALESCE(finished_at, {NOW}) "
            "WHERE id = $1 AND lease_owner = $2",
            job_id,
            owner,
            status,
            error_code,
            error_message,
            book_done,
        )

    async def cancel(self, job_id: str, key_id: str) -> JobRecord | None:
        pool = await self.pool.get()
        async with pool.acquire() as conn:
            await conn.execute(
                f"UPDATE tts_jobs SET status = 'cancelled', finished_at = {NOW} WHERE id = $1 AND key_id = $2 "
                "AND status IN ('queued', 'running')",
                job_id,
                key_id,
            )
            row = await conn.fetchrow(
                f"SELECT {JOB_COLUMNS} FROM tts_jobs WHERE id = $1 AND key_id = $2", job_id, key_id
            )
            return await self._load(conn, row)

    async def resume(self, job_id: str, key_id: str) -> JobRecord | None:
        pool = await self.pool.get()
        async with pool.acquire() as conn, conn.transaction():
            result = await conn.execute(
                "UPDATE tts_jobs SET status = 'queued', error_code = NULL, error_message = NULL, "
                "finished_at = NULL, lease_owner = NULL, lease_expires = 0 WHERE id = $1 AND key_id = $2 "
                f"AND status IN ('failed', 'cancelled') AND (lease_owner IS NULL OR lease_expires < {NOW})",
                job_id,
                key_id,
            )
            if str(result).endswith(" 1"):
                await conn.execute(
                    "UPDATE tts_job_chapters SET status = 'pending' WHERE job_id = $1 AND status = 'failed'",
                    job_id,
                )
            row = await conn.fetchrow(
                f"SELECT {JOB_COLUMNS} FROM tts_jobs WHERE id = $1 AND key_id = $2", job_id, key_id
            )
            return await self._load(conn, row)

    async def expired(self, retention_s: float, limit: int = 100) -> tuple[str, ...]:
        pool = await self.pool.get()
        rows = await pool.fetch(
            "SELECT id FROM tts_jobs WHERE status IN ('done', 'failed', 'cancelled') "
            f"AND finished_at IS NOT NULL AND finished_at < {NOW} - $1 ORDER BY finished_at LIMIT $2",
            float(retention_s),
            limit,
        )
        return tuple(row[0] for row in rows)

    async def delete(self, job_id: str, key_id: str | None) -> bool:
        pool = await self.pool.get()
        result = await pool.execute(
            "DELETE FROM tts_jobs WHERE id = $1 AND ($2::text IS NULL OR key_id = $2) "
            "AND status IN ('done', 'failed', 'cancelled') "
            f"AND (lease_owner IS NULL OR lease_expires < {NOW})",
            job_id,
            key_id,
        )
        return str(result).endswith(" 1")

    async def close(self) -> None:
        return None  # the pool belongs to the service's DatabaseClients
