"""The request log's `transport` column (deploy/sql/010_credit_reservations.sql) in a real
PostgreSQL: written by the PostgreSQL sink's insert and by the Supabase sink's store function alike."""

from __future__ import annotations

import json

import asyncpg
import pytest

from services.usage.request_log import PostgresSink, RequestRecord

pytestmark = pytest.mark.integration


def record(request_id: str, transport: str | None) -> RequestRecord:
    return RequestRecord(
        request_id=request_id,
        speaker="fixed",
        text_length=5,
        status="completed",
        key_id="transport-test",
        transport=transport,
    )


async def transports(dsn: str, prefix: str) -> dict[str, str | None]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT request_id, transport FROM tts_requests WHERE request_id LIKE $1", f"{prefix}%"
        )
    finally:
        await conn.close()
    return {r["request_id"]: r["transport"] for r in rows}


async def test_the_postgres_sink_writes_the_transport(pg_dsn: str, unique: str) -> None:
    sink = PostgresSink(pg_dsn)
    try:
        await sink.write(
            [record(f"{unique}-h", "http"), record(f"{unique}-w", "websocket"), record(f"{unique}-old", None)]
        )
    finally:
        await sink.close()
    assert await transports(pg_dsn, unique) == {
        f"{unique}-h": "http",
        f"{unique}-w": "websocket",
        f"{unique}-old": None,
    }


async def test_the_supabase_store_function_writes_the_transport(pg_dsn: str, unique: str) -> None:
    rows = [record(f"{unique}-s", "websocket").to_json_row()]
    conn = await asyncpg.connect(pg_dsn)
    try:
        stored = await conn.fetchval("SELECT tts_store_requests($1::jsonb)", json.dumps(rows))
    finally:
        await conn.close()
    assert stored == 1
    assert await transports(pg_dsn, unique) == {f"{unique}-s": "websocket"}
