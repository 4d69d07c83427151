"""Request log into a real PostgreSQL, including a database outage in the middle of traffic."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import asyncpg
import pytest

from services.usage.request_log import Backoff, PostgresSink, RequestLogger, RequestRecord
from shared.metrics import REGISTRY

pytestmark = pytest.mark.integration


def record(tag: str, i: int, **kw) -> RequestRecord:
    fields = dict(
        request_id=f"{tag}-{i:04d}",
        speaker="lipakshi" if i % 2 else "reet",
        text_length=40 + i,
        status="completed",
        key_id=f"key-{tag}",
        stream=bool(i % 2),
        format="wav",
        sample_rate=16000,
        temperature=0.8,
        top_k=50,
        top_p=1.0,
        max_tokens=4096,
        repetition_penalty=1.05,
        seed=i,
        text="a private sentence",
        ttfb_ms=410.5,
        rtf=0.31,
        audio_duration_seconds=2.5,
        credits_charged=40 + i,
        completed_at=datetime.now(UTC),
    )
    fields.update(kw)
    return RequestRecord(**fields)


async def rows_for(dsn: str, tag: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(
            "SELECT * FROM tts_requests WHERE request_id LIKE $1 ORDER BY request_id", f"{tag}-%"
        )
    finally:
        await conn.close()


def dropped_total() -> float:
    return REGISTRY.get_sample_value("veena3_tts_request_log_dropped_total") or 0.0


async def test_schema_has_unique_request_id_and_indexes(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        indexes = {
            r["indexdef"]
            for r in await conn.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = 'tts_requests'")
        }
    finally:
        await conn.close()
    assert any("UNIQUE" in d and "(request_id)" in d for d in indexes)
    assert any("(created_at)" in d for d in indexes) and any("(speaker)" in d for d in indexes)


async def test_records_are_written_in_batches_with_every_field(pg_dsn: str, unique: str) -> None:
    logger = RequestLogger(PostgresSink(pg_dsn), batch_size=100, flush_s=0.05)
    await logger.start()
    for i in range(250):
        logger.submit(record(unique, i))
    logger.submit(record(unique, 0, speaker="duplicate"))  # same request_id again: ignored
    assert await logger.close(timeout=10) == 0

    rows = await rows_for(pg_dsn, unique)
    assert len(rows) == 250
    first = dict(rows[0])
    assert first["speaker"] == "reet" and first["text"] is None  # text stored only when allowed
    assert (first["top_k"], first["seed"], first["credits_charged"], first["sample_rate"]) == (
        50,
        0,
        40,
        16000,
    )
    assert first["rtf"] == pytest.approx(0.31) and first["created_at"].tzinfo is not None


async def test_text_is_stored_when_the_operator_allows_it(pg_dsn: str, unique: str) -> None:
    logger = RequestLogger(PostgresSink(pg_dsn), batch_size=10, flush_s=0.05, store_text=True)
    await logger.start()
    logger.submit(record(unique, 1, text="नमस्ते world 👋"))
    await logger.close(timeout=10)
    assert (await rows_for(pg_dsn, unique))[0]["text"] == "नमस्ते world 👋"


async def test_a_bad_row_does_not_block_the_others(pg_dsn: str, unique: str) -> None:
    logger = RequestLogger(PostgresSink(pg_dsn), batch_size=10, flush_s=0.05)
    await logger.start()
    for i in range(10):
        logger.submit(record(unique, i, top_k=2**40 if i == 3 else 50))  # out of INTEGER range
    await logger.close(timeout=10)
    rows = await rows_for(pg_dsn, unique)
    assert len(rows) == 9 and f"{unique}-0003" not in {r["request_id"] for r in rows}
    assert logger.dropped == 1


async def test_no_record_is_lost_when_postgres_stops_and_restarts(
    pg_dsn: str, pg_control, unique: str
) -> None:
    """200 records submitted around a PostgreSQL outage all end up in the table."""
    logger = RequestLogger(
        PostgresSink(pg_dsn), queue_size=10_000, batch_size=20, flush_s=0.05, backoff=Backoff(0.1, 1.0)
    )
    dropped_before = dropped_total()
    await logger.start()

    for i in range(50):  # before the outage: written normally
        logger.submit(record(unique, i))
        await asyncio.sleep(0.002)
    stop_s = await pg_control.astop()
    outage_started = time.perf_counter()
    for i in range(50, 200):  # during the outage: queued, retried
        started = time.perf_counter()
        logger.submit(record(unique, i))
        assert time.perf_counter() - started < 0.01  # submit never waits for the database
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.5)
    pending_during_outage = logger.pending
    failures = logger.write_failures

    restart_at = time.perf_counter()

    async def until_drained() -> float:
        while logger.pending:
            await asyncio.sleep(0.01)
        return time.perf_counter() - restart_at

    watcher = asyncio.create_task(until_drained())
    start_s = await pg_control.astart()
    outage_s = time.perf_counter() - outage_started
    drain_s = await asyncio.wait_for(watcher, 30)
    assert await logger.close(timeout=10) == 0

    rows = await rows_for(pg_dsn, unique)
    print(
        f"\nrequest log outage: stop {stop_s:.2f} s, outage {outage_s:.2f} s, start {start_s:.2f} s, "
        f"pending at restart {pending_during_outage}, failed writes {failures}, "
        f"all written {drain_s:.2f} s after the start command began"
    )
    assert pending_during_outage >= 150 and failures >= 1
    assert [r["request_id"] for r in rows] == [f"{unique}-{i:04d}" for i in range(200)]
    assert logger.dropped == 0 and dropped_total() == dropped_before
