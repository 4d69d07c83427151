"""Refunds survive a key-store outage (issue 27, item 3): a refund the store cannot take live is carried by the
request's row and given back when that row is first stored, in the same statement; a replay gives nothing twice.
Real PostgreSQL: the key store, the request log's sink and the spool's recovery of a dead process's intent."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from services.access.stores import PostgresKeyStore
from services.usage.credits import CreditLedger
from services.usage.request_log import PostgresSink, RequestRecord
from services.usage.request_spool import RequestSpool, record_from_payload, record_payload

pytestmark = pytest.mark.integration

UNREACHABLE = "postgresql://tts:tts@127.0.0.1:9/none"  # the key store during an outage: nothing answers


def row(request_id: str, key_id: str, *, status: str, charged: int, refund: int) -> RequestRecord:
    return RequestRecord(request_id=request_id, speaker="reet", text_length=10, status=status, key_id=key_id,
                         credits_charged=charged, refund_credits=refund, completed_at=datetime.now(UTC))


async def balance(dsn: str, key_id: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT credit_balance FROM api_keys WHERE key_id = $1", key_id)
    finally:
        await conn.close()


async def charged_rows(dsn: str, key_id: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT coalesce(sum(credits_charged), 0) FROM tts_requests WHERE key_id = $1", key_id)
    finally:
        await conn.close()


async def test_refunds_the_store_could_not_take_reach_the_balance_once(pg_dsn: str, unique: str) -> None:
    store, down = PostgresKeyStore(pg_dsn), PostgresKeyStore(UNREACHABLE)
    try:
        _, key = await store.create_key("refunds", key_id=f"refund-{unique}", credit_balance=1000)
        live, outage = CreditLedger(store), CreditLedger(down)
        records = []
        # completed: charged in full
        r = await live.reserve(key, 100, f"{unique}-1")
        records.append(row(f"{unique}-1", key.key_id, status="completed", charged=await live.charge(r), refund=0))
        # failed (5xx) while the store is down: the whole reservation is owed back
        r = await live.reserve(key, 200, f"{unique}-2")
        await outage.release(r)
        assert r.refund_owed == 200
        records.append(row(f"{unique}-2", key.key_id, status="failed", charged=0, refund=r.refund_owed))
        # a streamed chunk cut by a guard while the store is down: its share is owed back, the rest charged
        r = await live.reserve(key, 300, f"{unique}-3")
        charged = await outage.charge(r, undelivered=120)
        assert (charged, r.refund_owed) == (180, 120)
        records.append(row(f"{unique}-3", key.key_id, status="completed", charged=charged, refund=r.refund_owed))
        # failed with the store up: refunded live, nothing owed
        r = await live.reserve(key, 50, f"{unique}-4")
        await live.release(r)
        assert r.refund_owed == 0
        records.append(row(f"{unique}-4", key.key_id, status="failed", charged=0, refund=0))
        assert await balance(pg_dsn, key.key_id) == 1000 - 100 - 200 - 300  # the owed 320 are not back yet

        sink = PostgresSink(pg_dsn)
        try:
            await sink.write(records)
            assert await balance(pg_dsn, key.key_id) == 1000 - await charged_rows(pg_dsn, key.key_id) == 720
            await sink.write(records)  # a replay (the spool sent the batch again): stored once, refunded once
            await sink.write(records[1:2])
            assert await balance(pg_dsn, key.key_id) == 720
        finally:
            await sink.close()
    finally:
        await store.close()
        await down.close()


async def test_a_dead_process_reservation_comes_back_with_its_interrupted_row(pg_dsn: str, unique: str,
                                                                              tmp_path: Path) -> None:
    store = PostgresKeyStore(pg_dsn)
    try:
        _, key = await store.create_key("refunds", key_id=f"dead-{unique}", credit_balance=500)
        reservation = await CreditLedger(store).reserve(key, 77, f"{unique}-cut")
        intent = row(f"{unique}-cut", key.key_id, status="in_progress", charged=0, refund=reservation.credits)
        dead = RequestSpool(tmp_path, instance="dead")
        dead.intend(intent.request_id, record_payload(intent))
        dead.close()  # its lock is free: the process is gone
        assert await balance(pg_dsn, key.key_id) == 500 - 77

        adopter = RequestSpool(tmp_path, instance="next")
        try:
            [(server_id, payload)] = adopter.oldest(10)
            recovered = record_from_payload(RequestRecord, payload)
            assert (recovered.status, recovered.credits_charged, recovered.refund_credits) == ("interrupted", 0, 77)
            sink = PostgresSink(pg_dsn)
            try:
                await sink.write([recovered])
                await sink.write([recovered])
            finally:
                await sink.close()
            assert await balance(pg_dsn, key.key_id) == 500
        finally:
            adopter.close()
    finally:
        await store.close()
