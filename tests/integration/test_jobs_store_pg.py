"""The PostgreSQL job store against the real server (deploy/sql migrations applied by the fixture): two replicas
(two pools) never hold one job; a lease that expires passes the job on; keys stay apart; a failed job resumes; an
ended job is deleted once its retention has passed, and only once no process holds it; a kept job's text counts
against its key's quotas, failed or not, until it is deleted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from services.database import PostgresPool
from services.jobs.records import ChapterRecord, JobOptions, JobRecord
from services.jobs.store_postgres import PostgresJobStore

pytestmark = pytest.mark.integration


def job(key_id: str, chapters: int = 2, created_at: float = 0.0) -> JobRecord:
    return JobRecord(
        id=f"job_test_{uuid.uuid4().hex}",
        key_id=key_id,
        key_hash="h" * 64,
        title="Book",
        options=JobOptions(format="wav"),
        created_at=created_at,  # 0: older than any real job: claimed first in a shared database
        chapters=tuple(ChapterRecord(index=i, title=f"C{i}", text="x" * i) for i in range(1, chapters + 1)),
    )


@pytest.fixture
async def stores(pg_dsn: str) -> AsyncIterator[tuple[PostgresJobStore, PostgresJobStore]]:
    pools = PostgresPool(pg_dsn), PostgresPool(pg_dsn)
    yield PostgresJobStore(pools[0]), PostgresJobStore(pools[1])
    for pool in pools:
        await pool.close()


async def drop(dsn: str, job_id: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM tts_jobs WHERE id = $1", job_id)
    finally:
        await conn.close()


async def test_two_replicas_never_hold_one_job(pg_dsn: str, stores) -> None:
    one, two = stores
    record = job(f"key-{uuid.uuid4().hex[:8]}")
    await one.create(record)
    try:
        claims = await asyncio.gather(
            *(store.claim(f"p{i}", 30) for i, store in enumerate((one, two, one, two)))
        )
        held = [c for c in claims if c is not None and c.id == record.id]
        assert len(held) == 1
        got = await two.get(record.id, record.key_id)
        assert got is not None and got.status == "running" and [c.characters for c in got.chapters] == [1, 2]
        assert [c.text for c in got.chapters] == ["", ""]  # reads carry no text
        assert [c.text for c in held[0].chapters] == ["x", ""]  # a claim: its next chapter's only
    finally:
        await drop(pg_dsn, record.id)


async def test_an_expired_lease_passes_the_job_on_and_a_cancel_stops_it(pg_dsn: str, stores) -> None:
    one, two = stores
    record = job(f"key-{uuid.uuid4().hex[:8]}")
    await one.create(record)
    try:
        assert (await one.claim("p1", 0.3)).id == record.id
        assert await one.renew(record.id, "p1", 0.3)
        await asyncio.sleep(0.5)  # p1 died: its lease ran out
        taken = await two.claim("p2", 30)
        assert taken is not None and taken.id == record.id
        assert not await one.renew(record.id, "p1", 30)
        await two.set_chapter(record.id, 1, "done", audio_seconds=1.5, render_seconds=0.5, request_id="r1")
        assert await two.cancel(record.id, "another-key") is None  # another key's job is not found
        cancelled = await two.cancel(record.id, record.key_id)
        assert cancelled is not None and cancelled.status == "cancelled"
        assert not await two.renew(record.id, "p2", 30)
        await two.finish(record.id, "p2", "done")
        final = await one.get(record.id, record.key_id)
        assert final.status == "cancelled" and final.chapters[0].audio_seconds == 1.5
        assert record.id in [j.id for j in await one.list(record.key_id)]
        assert record.id not in [j.id for j in await one.list("another-key")]
    finally:
        await drop(pg_dsn, record.id)


async def test_a_failed_job_resumes_and_an_ended_one_expires(pg_dsn: str, stores) -> None:
    one, two = stores
    record = job(f"key-{uuid.uuid4().hex[:8]}")
    await one.create(record)
    try:
        assert (await one.claim("p1", 30)).id == record.id
        await one.set_chapter(record.id, 1, "done", audio_seconds=1.0, render_seconds=0.5)
        await one.set_chapter(record.id, 2, "failed")
        await one.finish(record.id, "p1", "failed", error_code="INSUFFICIENT_CREDITS", error_message="out")
        failed = await two.get(record.id, record.key_id)
        assert failed.status == "failed" and failed.finished_at is not None
        assert await two.resume(record.id, "another-key") is None
        resumed = await two.resume(record.id, record.key_id)
        assert resumed.status == "queued" and resumed.error_code is None and resumed.finished_at is None
        assert [c.status for c in resumed.chapters] == ["done", "pending"]
        assert (await one.claim("p1", 30)).id == record.id
        assert not await two.delete(record.id, record.key_id)  # running: not ended
        await one.finish(record.id, "p1", "done")
        assert record.id not in await two.expired(3600)  # within its retention
        await asyncio.sleep(0.3)
        assert record.id in await two.expired(0.2)
        assert not await two.delete(record.id, "another-key")
        assert await two.delete(record.id, None)
        assert await one.get(record.id, None) is None
    finally:
        await drop(pg_dsn, record.id)


async def test_a_kept_jobs_text_counts_failed_or_not_until_it_is_deleted(pg_dsn: str, stores) -> None:
    one, two = stores
    record = replace(job(f"key-{uuid.uuid4().hex[:8]}", chapters=3), title="Büch")  # 1 + 2 + 3 characters
    await one.create(record)
    try:
        assert await two.queued_characters(record.key_id) == 6
        assert await two.stored_text_bytes(record.key_id) == 6 + len("Büch".encode())
        assert (await one.claim("p1", 30)).id == record.id
        await one.set_chapter(record.id, 1, "done", audio_seconds=1.0, render_seconds=0.5)
        await one.set_chapter(record.id, 2, "failed")
        await one.finish(record.id, "p1", "failed", error_code="INSUFFICIENT_CREDITS", error_message="out")
        assert await two.queued_characters(record.key_id) == 5  # failed: resumable, its text still held
        assert await two.stored_text_bytes(record.key_id) == 6 + 5  # every chapter's text is kept
        assert await two.queued_characters("another-key") == 0
        assert await two.delete(record.id, record.key_id)
        assert await two.queued_characters(record.key_id) == 0
        assert await two.stored_text_bytes(record.key_id) == 0
    finally:
        await drop(pg_dsn, record.id)


async def test_the_migrations_are_idempotent(pg_dsn: str) -> None:
    from services.usage.migrations import SQL_DIR

    conn = await asyncpg.connect(pg_dsn)
    try:
        for name in ("011_jobs.sql", "013_job_retention.sql", "014_job_turns.sql"):
            await conn.execute((SQL_DIR / name).read_text(encoding="utf-8"))
            await conn.execute((SQL_DIR / name).read_text(encoding="utf-8"))
    finally:
        await conn.close()


async def test_keys_take_turns_one_chapter_each(pg_dsn: str, stores) -> None:
    """Key A's long queue (two jobs of many chapters) holds key B's first chapter for one chapter at most, and the
    holder's progress within a chapter reaches another replica."""
    one, two = stores
    a, b = f"key-a-{uuid.uuid4().hex[:8]}", f"key-b-{uuid.uuid4().hex[:8]}"
    records = [job(a, chapters=20, created_at=-2.0), job(a, chapters=20, created_at=-1.5)]
    for record in records:
        await one.create(record)
    try:
        first = await one.claim("p1", 30)
        assert first is not None and first.id == records[0].id
        await one.set_chapter(first.id, 1, "running")
        assert await one.renew(first.id, "p1", 30, progress=(1, 4.5))
        seen = await two.get(first.id, a)
        assert seen.chapters[0].audio_seconds == 4.5 and seen.heartbeat_at is not None
        late = job(b, chapters=1, created_at=-1.0)
        await two.create(late)
        records.append(late)
        await one.set_chapter(first.id, 1, "done", audio_seconds=5.0, render_seconds=1.0)
        await one.release(first.id, "p1")
        taken = await two.claim("p2", 30)
        assert taken is not None and taken.key_id == b  # B's turn comes before A's second chapter
        await two.finish(taken.id, "p2", "done")
        again = await one.claim("p1", 30)  # B is served; A goes on (a shared database may hold others' jobs)
        assert again is not None and again.key_id != b
        await one.release(again.id, "p1")
    finally:
        for record in records:
            await drop(pg_dsn, record.id)


async def test_the_database_has_the_schema_the_sqlite_store_writes(pg_dsn: str) -> None:
    """The migrated database's job tables, columns (types) and indexes are services/jobs/schema.py's."""
    from services.jobs.schema import JOB_TABLES

    types = {"text": "text", "real": "double precision", "integer": "integer", "boolean": "boolean"}
    conn = await asyncpg.connect(pg_dsn)
    try:
        for table in JOB_TABLES:
            rows = await conn.fetch(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 "
                "ORDER BY ordinal_position",
                table.name,
            )
            assert [(r[0], r[1]) for r in rows] == [(c.name, types[c.type]) for c in table.columns]
            indexes = {
                r[0]
                for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = $1", table.name)
            }
            assert {i.name for i in table.indexes} <= indexes
    finally:
        await conn.close()
