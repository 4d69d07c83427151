"""Where jobs and their chapters live: `JobStore`, with SQLite (a file in the jobs directory, the default) and
PostgreSQL (services/jobs/store_postgres.py, where the service has a database) behind it.

A job belongs to one key: every read, list and cancel names the key, and another key's job is not found. Running
a chapter needs the job's lease: `claim` takes a queued or unfinished job whose lease expired (a process that died
leaves its lease to expire, so another picks the job up; two processes never hold one job at once), `renew`
extends it while the chapter runs and tells the runner when it lost it or the job was cancelled. The runner gives
the lease back after each chapter (`release`), and `claim` serves the key whose last chapter started longest ago:
one key's long queue holds another key's first chapter for at most one chapter.

Reads (`get`, `list`) load chapters without their text (a poll never reads a book); `claim` loads the text of the
one chapter it hands out.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypedDict, TypeVar, Unpack

import services.jobs.sql as sql
from services.jobs.records import ChapterRecord, ChapterStatus, JobOptions, JobRecord, JobStatus
from services.jobs.schema import JOB_TABLES, SQLITE_TYPES, column_declaration, sqlite_schema
from services.jobs.sql import SQLITE

T = TypeVar("T")


class ChapterResult(TypedDict, total=False):
    """What `set_chapter` records beside the status (each None when not given)."""

    audio_seconds: float | None
    render_seconds: float | None
    request_id: str | None


class JobEnding(TypedDict, total=False):
    """What `finish` records beside the status (none, and `book_done` False, when not given)."""

    error_code: str | None
    error_message: str | None
    book_done: bool


class JobStore(Protocol):
    name: str

    async def create(self, job: JobRecord) -> None: ...

    async def get(self, job_id: str, key_id: str | None) -> JobRecord | None:
        """The job with its chapters; None for an unknown id or another key's job (`key_id` None: any key)."""

    async def list(self, key_id: str, limit: int = 100) -> list[JobRecord]:
        """The key's jobs, newest first."""

    async def claim(self, owner: str, lease_s: float) -> JobRecord | None:
        """Take a queued or unfinished job whose lease has expired, of the key whose last claim is oldest (then
        the key's oldest job), with the text of its first chapter not done; None when there is none."""

    async def queued_characters(self, key_id: str) -> int:
        """Characters of the key's chapters not done, in every job it keeps (a failed or cancelled one may be
        resumed)."""

    async def stored_text_bytes(self, key_id: str) -> int:
        """UTF-8 bytes of the text (chapters, titles) of every job the key keeps, whatever its status."""

    async def job_ids(self, key_id: str) -> tuple[str, ...]:
        """Every job id of the key (its files' folders)."""

    async def renew(
        self, job_id: str, owner: str, lease_s: float, progress: tuple[int, float] | None = None
    ) -> bool:
        """Extend `owner`'s lease (and note its running chapter's audio seconds so far: `progress` (index,
        seconds)); False when the lease is no longer its own or the job ended (cancelled)."""

    async def release(self, job_id: str, owner: str) -> None:
        """Give the lease up at once (shutdown): another process may resume the job without waiting."""

    async def set_chapter(
        self, job_id: str, index: int, status: ChapterStatus, **result: Unpack[ChapterResult]
    ) -> None: ...

    async def finish(self, job_id: str, owner: str, status: JobStatus, **ending: Unpack[JobEnding]) -> None:
        """End a job `owner` holds (a cancelled job stays cancelled)."""

    async def cancel(self, job_id: str, key_id: str) -> JobRecord | None:
        """Mark the key's job cancelled unless it already ended; the job, or None when not found."""

    async def resume(self, job_id: str, key_id: str) -> JobRecord | None:
        """Queue the key's failed or cancelled job again (its error cleared, its failed chapters pending), when no
        process holds its lease any more; the job as it is now, or None when not found."""

    async def expired(self, retention_s: float, limit: int = 100) -> tuple[str, ...]:
        """Ids of jobs that ended more than `retention_s` ago, oldest first."""

    async def delete(self, job_id: str, key_id: str | None) -> bool:
        """Remove an ended job whose lease no process holds, with its chapters (`key_id` None: any key's);
        False when there is no such job."""

    async def close(self) -> None: ...


SCHEMA = sqlite_schema()
# Columns added after the first release of the table (a file written by an older release gets them).
ADDED_COLUMNS = ("finished_at", "claimed_at", "heartbeat_at")
SQL = SQLITE.render


def _octets(text: str | None) -> int:
    """SQLite's UTF-8 byte count of a text (PostgreSQL's octet_length)."""
    return 0 if text is None else len(text.encode("utf-8", "surrogatepass"))


def job_values(job: JobRecord) -> tuple[str, str, str, str | None, str, JobStatus, float]:
    """`sql.INSERT_JOB`'s parameters."""
    return job.id, job.key_id, job.key_hash, job.title, job.options.to_json(), job.status, job.created_at


def chapter_rows(job: JobRecord) -> list[tuple[str, int, str, str, ChapterStatus]]:
    """`sql.INSERT_CHAPTER`'s parameters, a row per chapter."""
    return [(job.id, c.index, c.title, c.text, c.status) for c in job.chapters]


def chapter_values(
    job_id: str, index: int, status: ChapterStatus, result: ChapterResult
) -> tuple[str, int, ChapterStatus, float | None, float | None, str | None]:
    """`sql.SET_CHAPTER`'s parameters."""
    return (
        job_id,
        index,
        status,
        result.get("audio_seconds"),
        result.get("render_seconds"),
        result.get("request_id"),
    )


def ending_values(
    job_id: str, owner: str, status: JobStatus, ending: JobEnding
) -> tuple[str, str, JobStatus, str | None, str | None, bool]:
    """`sql.FINISH`'s parameters (SQLite stores the bool as 1 or 0)."""
    return (
        job_id,
        owner,
        status,
        ending.get("error_code"),
        ending.get("error_message"),
        ending.get("book_done", False),
    )


def job_from_row(row: Sequence[Any], chapters: Sequence[Sequence[Any]]) -> JobRecord:
    return JobRecord(
        id=row[0],
        key_id=row[1],
        key_hash=row[2],
        title=row[3],
        options=JobOptions.from_json(row[4]),
        status=row[5],
        created_at=float(row[6]),
        error_code=row[7],
        error_message=row[8],
        book_done=bool(row[9]),
        finished_at=None if row[10] is None else float(row[10]),
        lease_owner=row[11],
        lease_expires=float(row[12]),
        heartbeat_at=None if row[13] is None else float(row[13]),
        chapters=tuple(
            ChapterRecord(
                index=c[0],
                title=c[1],
                text=c[2],
                status=c[3],
                audio_seconds=c[4],
                render_seconds=c[5],
                request_id=c[6],
                length=c[7] if len(c) > 7 else None,
            )
            for c in chapters
        ),
    )


class SqliteJobStore:
    """One SQLite file (WAL), for one server or several processes on one machine; calls run in a worker thread."""

    name = "sqlite"

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None  # opened on first use: building an app touches no file

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.create_function("tts_now", 0, lambda: self.clock())  # the dialect's {now}: this store's clock
            db.create_function("tts_octets", 1, _octets, deterministic=True)  # the dialect's {octets}
            columns = {row[1] for row in db.execute("PRAGMA table_info(tts_jobs)")}
            declared = {c.name: c for c in JOB_TABLES[0].columns}
            for name in ADDED_COLUMNS:  # a file written by an older release
                if columns and name not in columns:
                    declaration = column_declaration(declared[name], SQLITE_TYPES)
                    db.execute(f"ALTER TABLE tts_jobs ADD COLUMN {name} {declaration}")
            db.executescript(SCHEMA)
            self._db = db
        return self._db

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn(self._connection())

        return await asyncio.to_thread(locked)

    def _load(self, db: sqlite3.Connection, row: Sequence[Any] | None, text_of: int = -1) -> JobRecord | None:
        """The job with its chapters, the text of chapter `text_of` only (-1: none)."""
        if row is None:
            return None
        chapters = db.execute(SQL(sql.CHAPTERS), (row[0], text_of)).fetchall()
        return job_from_row(row, chapters)

    async def create(self, job: JobRecord) -> None:
        def insert(db: sqlite3.Connection) -> None:
            with db:  # one transaction: the job and all its chapters, or nothing
                db.execute("BEGIN IMMEDIATE")
                db.execute(SQL(sql.INSERT_JOB), job_values(job))
                db.executemany(SQL(sql.INSERT_CHAPTER), chapter_rows(job))

        await self._run(insert)

    async def get(self, job_id: str, key_id: str | None) -> JobRecord | None:
        def read(db: sqlite3.Connection) -> JobRecord | None:
            row = db.execute(SQL(sql.JOB_BY_ID), (job_id,)).fetchone()
            if row is not None and key_id is not None and row[1] != key_id:
                return None
            return self._load(db, row)

        return await self._run(read)

    async def list(self, key_id: str, limit: int = 100) -> list[JobRecord]:
        def read(db: sqlite3.Connection) -> list[JobRecord]:
            rows = db.execute(SQL(sql.KEYS_JOBS), (key_id, limit)).fetchall()
            return [job for row in rows if (job := self._load(db, row)) is not None]

        return await self._run(read)

    async def queued_characters(self, key_id: str) -> int:
        def read(db: sqlite3.Connection) -> int:
            row = db.execute(SQL(sql.QUEUED_CHARACTERS), (key_id,)).fetchone()
            return int(row[0] or 0)

        return await self._run(read)

    async def stored_text_bytes(self, key_id: str) -> int:
        def read(db: sqlite3.Connection) -> int:
            row = db.execute(SQL(sql.STORED_TEXT_BYTES), (key_id,)).fetchone()
            return int(row[0] or 0)

        return await self._run(read)

    async def job_ids(self, key_id: str) -> tuple[str, ...]:
        def read(db: sqlite3.Connection) -> tuple[str, ...]:
            return tuple(r[0] for r in db.execute(SQL(sql.KEYS_JOB_IDS), (key_id,)))

        return await self._run(read)

    async def claim(self, owner: str, lease_s: float) -> JobRecord | None:
        def take(db: sqlite3.Connection) -> JobRecord | None:
            now = self.clock()
            with db:
                db.execute("BEGIN IMMEDIATE")  # the write lock first: two processes never take one job
                row = db.execute(
                    SQL(
                        f"SELECT {sql.JOB_COLUMNS} FROM tts_jobs WHERE {sql.CLAIMABLE} ORDER BY {sql.TURN_ORDER} LIMIT 1"
                    )
                ).fetchone()
                if row is None:
                    return None
                db.execute(
                    SQL(
                        "UPDATE tts_jobs SET status = 'running', lease_owner = $1, lease_expires = $2, "
                        "claimed_at = $3, heartbeat_at = $3 WHERE id = $4"
                    ),
                    (owner, now + lease_s, now, row[0]),
                )
                row = db.execute(SQL(sql.JOB_BY_ID), (row[0],)).fetchone()
                next_up = db.execute(SQL(sql.NEXT_CHAPTER), (row[0],)).fetchone()[0]
                return self._load(db, row, -1 if next_up is None else next_up)

        return await self._run(take)

    async def renew(
        self, job_id: str, owner: str, lease_s: float, progress: tuple[int, float] | None = None
    ) -> bool:
        def extend(db: sqlite3.Connection) -> bool:
            now = self.clock()
            cursor = db.execute(
                SQL(
                    "UPDATE tts_jobs SET lease_expires = $1, heartbeat_at = $2 "
                    "WHERE id = $3 AND lease_owner = $4 AND status = 'running'"
                ),
                (now + lease_s, now, job_id, owner),
            )
            if cursor.rowcount == 1 and progress is not None:
                db.execute(
                    SQL(
                        "UPDATE tts_job_chapters SET audio_seconds = $1 WHERE job_id = $2 AND idx = $3 "
                        "AND status = 'running'"
                    ),
                    (progress[1], job_id, progress[0]),
                )
            return cursor.rowcount == 1

        return await self._run(extend)

    async def release(self, job_id: str, owner: str) -> None:
        await self._run(lambda db: db.execute(SQL(sql.RELEASE), (job_id, owner)))

    async def set_chapter(
        self, job_id: str, index: int, status: ChapterStatus, **result: Unpack[ChapterResult]
    ) -> None:
        values = chapter_values(job_id, index, status, result)
        await self._run(lambda db: db.execute(SQL(sql.SET_CHAPTER), values))

    async def finish(self, job_id: str, owner: str, status: JobStatus, **ending: Unpack[JobEnding]) -> None:
        values = ending_values(job_id, owner, status, ending)
        await self._run(lambda db: db.execute(SQL(sql.FINISH), values))

    async def cancel(self, job_id: str, key_id: str) -> JobRecord | None:
        def mark(db: sqlite3.Connection) -> JobRecord | None:
            db.execute(SQL(sql.CANCEL), (job_id, key_id))
            row = db.execute(SQL(sql.KEYS_JOB), (job_id, key_id)).fetchone()
            return self._load(db, row)

        return await self._run(mark)

    async def resume(self, job_id: str, key_id: str) -> JobRecord | None:
        def queue(db: sqlite3.Connection) -> JobRecord | None:
            with db:
                db.execute("BEGIN IMMEDIATE")
                cursor = db.execute(SQL(sql.RESUME), (job_id, key_id))
                if cursor.rowcount == 1:
                    db.execute(SQL(sql.RESUME_CHAPTERS), (job_id,))
                row = db.execute(SQL(sql.KEYS_JOB), (job_id, key_id)).fetchone()
                return self._load(db, row)

        return await self._run(queue)

    async def expired(self, retention_s: float, limit: int = 100) -> tuple[str, ...]:
        def read(db: sqlite3.Connection) -> tuple[str, ...]:
            rows = db.execute(SQL(sql.EXPIRED), (retention_s, limit)).fetchall()
            return tuple(row[0] for row in rows)

        return await self._run(read)

    async def delete(self, job_id: str, key_id: str | None) -> bool:
        def remove(db: sqlite3.Connection) -> bool:
            cursor = db.execute(SQL(sql.DELETE), (job_id, key_id))
            return cursor.rowcount == 1

        return await self._run(remove)

    async def close(self) -> None:
        def shut() -> None:
            with self._lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None

        await asyncio.to_thread(shut)
