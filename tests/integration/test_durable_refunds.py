"""Settlement by the row: every reservation is journaled with its debit
(credit_reservations), and a request's row settles its journal when first stored, in the same transaction: what was
taken beyond the row's charge is refunded, a replay moves nothing, a late debit for a stored row is refused, a lost
answer asked again under the same reservation id debits once. Real PostgreSQL: the key store, the request log's sinks
(PostgreSQL, and Supabase's RPC answered by the real SQL function behind a stand-in PostgREST) and the spool's
recovery of a dead process's intent."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from services.database import make_supabase_client
from services.keys.stores import PostgresKeyStore
from services.usage.credits import CreditLedger
from services.usage.request_log import PostgresSink, RequestRecord
from services.usage.request_sinks import SupabaseSink
from services.usage.request_spool import RequestSpool, record_from_payload, record_payload
from tests.http_stub import json_server

pytestmark = pytest.mark.integration

UNREACHABLE = "postgresql://tts:tts@127.0.0.1:9/none"  # the key store during an outage: nothing answers


def row(request_id: str, key_id: str, *, status: str, charged: int, refund: int = 0) -> RequestRecord:
    return RequestRecord(
        request_id=request_id,
        speaker="reet",
        text_length=10,
        status=status,
        key_id=key_id,
        credits_charged=charged,
        refund_credits=refund,
        completed_at=datetime.now(UTC),
    )


async def fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """One query on a connection of its own (the tests' servers and sinks keep their own pools)."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def balance(dsn: str, key_id: str) -> int:
    [(value,)] = await fetch(dsn, "SELECT credit_balance FROM api_keys WHERE key_id = $1", key_id)
    return value


async def charged_rows(dsn: str, key_id: str) -> int:
    [(value,)] = await fetch(
        dsn, "SELECT coalesce(sum(credits_charged), 0) FROM tts_requests WHERE key_id = $1", key_id
    )
    return value


async def test_rows_settle_their_journaled_reservations_once(pg_dsn: str, unique: str) -> None:
    store = PostgresKeyStore(pg_dsn)
    try:
        _, key = await store.create_key("refunds", key_id=f"refund-{unique}", credit_balance=1000)
        ledger = CreditLedger(store, row_settles=True)
        records = []
        r = await ledger.reserve(key, 100, f"{unique}-1")  # completed: charged in full
        records.append(row(f"{unique}-1", key.key_id, status="completed", charged=await ledger.charge(r)))
        r = await ledger.reserve(key, 200, f"{unique}-2")  # failed (5xx): refunded by its row
        records.append(
            row(f"{unique}-2", key.key_id, status="failed", charged=await ledger.charge(r, refund=True))
        )
        r = await ledger.reserve(
            key, 300, f"{unique}-3"
        )  # a streamed chunk cut by a guard: its share refunded
        records.append(
            row(
                f"{unique}-3", key.key_id, status="completed", charged=await ledger.charge(r, undelivered=120)
            )
        )
        r = await ledger.reserve(key, 50, f"{unique}-4")  # never started: released live, no row
        await ledger.release(r)
        await ledger.release(r)
        assert await balance(pg_dsn, key.key_id) == 1000 - 100 - 200 - 300  # the rows are not stored yet

        sink = PostgresSink(pg_dsn)
        try:
            await sink.write(records)
            assert await balance(pg_dsn, key.key_id) == 1000 - await charged_rows(pg_dsn, key.key_id) == 720
            await sink.write(records)  # a replay (the spool sent the batch again): stored once, settled once
            await sink.write(records[1:2])
            assert await balance(pg_dsn, key.key_id) == 720
            late = await store.reserve_credits(f"late-{unique}", f"{unique}-1", key.key_id, 10)
            assert late.status == "settled" and await balance(pg_dsn, key.key_id) == 720
        finally:
            await sink.close()
        stored = await fetch(
            pg_dsn,
            "SELECT request_id, credits_charged, refund_credits FROM tts_requests "
            "WHERE key_id = $1 ORDER BY request_id",
            key.key_id,
        )
        assert [tuple(r) for r in stored] == [
            (f"{unique}-1", 100, 0),
            (f"{unique}-2", 0, 200),
            (f"{unique}-3", 180, 120),
        ]
        assert await fetch(pg_dsn, "SELECT 1 FROM credit_reservations WHERE key_id = $1", key.key_id) == []
    finally:
        await store.close()


async def test_a_reservation_asked_again_under_its_id_debits_once(pg_dsn: str, unique: str) -> None:
    """The answer to a debit was lost (a dropped connection, a restart): asking again under the same reservation id
    finds the journal row and debits nothing more."""
    store = PostgresKeyStore(pg_dsn)
    try:
        _, key = await store.create_key("refunds", key_id=f"again-{unique}", credit_balance=100)
        first = await store.reserve_credits(f"res-{unique}", f"{unique}-r", key.key_id, 30)
        again = await store.reserve_credits(f"res-{unique}", f"{unique}-r", key.key_id, 30)
        assert (first.status, again.status) == ("held", "held")
        assert await balance(pg_dsn, key.key_id) == 70
        short = await store.reserve_credits(f"res2-{unique}", f"{unique}-r", key.key_id, 71)
        assert short == type(short)("short", 70)
        assert await store.release_credits(f"res-{unique}") == 30
        assert await store.release_credits(f"res-{unique}") == 0
        assert await balance(pg_dsn, key.key_id) == 100
    finally:
        await store.close()


async def test_a_row_spooled_before_the_journal_gives_back_its_refund_as_it_says(
    pg_dsn: str, unique: str
) -> None:
    store = PostgresKeyStore(pg_dsn)
    sink = PostgresSink(pg_dsn)
    try:
        _, key = await store.create_key("refunds", key_id=f"legacy-{unique}", credit_balance=800)
        await sink.write([row(f"{unique}-old", key.key_id, status="failed", charged=0, refund=200)])
        await sink.write([row(f"{unique}-old", key.key_id, status="failed", charged=0, refund=200)])
        assert await balance(pg_dsn, key.key_id) == 1000
    finally:
        await sink.close()
        await store.close()


async def test_a_dead_process_reservation_comes_back_with_its_interrupted_row(
    pg_dsn: str, unique: str, tmp_path: Path
) -> None:
    store = PostgresKeyStore(pg_dsn)
    try:
        _, key = await store.create_key("refunds", key_id=f"dead-{unique}", credit_balance=500)
        intent = row(f"{unique}-cut", key.key_id, status="in_progress", charged=0)
        dead = RequestSpool(tmp_path, instance="dead")
        dead.intend(intent.request_id, record_payload(intent))  # before the debit
        await CreditLedger(store).reserve(key, 77, f"{unique}-cut")
        dead.close()  # its lock is free: the process is gone
        assert await balance(pg_dsn, key.key_id) == 500 - 77

        adopter = RequestSpool(tmp_path, instance="next")
        try:
            [(server_id, payload)] = adopter.oldest(10)
            recovered = record_from_payload(RequestRecord, payload)
            assert (recovered.status, recovered.credits_charged) == ("interrupted", 0)
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


def postgrest_over(dsn: str):
    """A stand-in for Supabase's PostgREST that answers `POST /rest/v1/rpc/tts_store_requests` by running the real SQL
    function (deploy/sql/010_credit_reservations.sql) on the test database with the JSON body PostgREST would pass it."""

    async def call(rows: object) -> int:
        [(stored,)] = await fetch(dsn, "SELECT tts_store_requests($1::jsonb)", json.dumps(rows))
        return stored

    def handle(method: str, path: str, query: object, headers: object, body: object) -> tuple[int, object]:
        if (method, path) != ("POST", "/rest/v1/rpc/tts_store_requests") or not isinstance(body, dict):
            return 404, {"code": "PGRST202", "message": f"no route {method} {path}"}
        return 200, asyncio.run(call(body["p_rows"]))

    return json_server(handle)


async def test_supabase_rows_give_back_their_refunds_once(pg_dsn: str, unique: str) -> None:
    """The Supabase sink's write is the SQL function: new rows stored and settled in the same transaction, a
    replayed batch storing and refunding nothing (the same function as the PostgreSQL sink's)."""
    store = PostgresKeyStore(pg_dsn)
    try:
        _, key = await store.create_key("refunds", key_id=f"supa-{unique}", credit_balance=1000)
        ledger = CreditLedger(store)
        for n in (100, 200, 300):
            await ledger.reserve(key, n, f"{unique}-{n}")
        assert await balance(pg_dsn, key.key_id) == 400
        records = [
            row(f"{unique}-100", key.key_id, status="completed", charged=100),
            row(f"{unique}-200", key.key_id, status="failed", charged=0),
            row(f"{unique}-300", key.key_id, status="completed", charged=180),
        ]
        with postgrest_over(pg_dsn) as url:
            sink = SupabaseSink(client=make_supabase_client(url, "sb_secret_test-service-key"))
            await sink.write(records)
            assert await balance(pg_dsn, key.key_id) == 1000 - await charged_rows(pg_dsn, key.key_id) == 720
            await sink.write(records)  # a replay: stored once, refunded once
            await sink.write(records[1:2])
        assert await balance(pg_dsn, key.key_id) == 720
        stored = await fetch(
            pg_dsn,
            "SELECT request_id, status, credits_charged, refund_credits, created_at, "
            "completed_at, stream, format FROM tts_requests WHERE key_id = $1 ORDER BY request_id",
            key.key_id,
        )
        assert [
            (r["request_id"], r["status"], r["credits_charged"], r["refund_credits"]) for r in stored
        ] == [
            (f"{unique}-100", "completed", 100, 0),
            (f"{unique}-200", "failed", 0, 200),
            (f"{unique}-300", "completed", 180, 120),
        ]
        first = stored[0]
        assert (
            first["created_at"] == records[0].created_at and first["completed_at"] == records[0].completed_at
        )
        assert (first["stream"], first["format"]) == (False, "wav")
    finally:
        await store.close()


async def test_a_refusal_whose_refund_the_store_cannot_take_leaves_a_row_that_gives_it_back(
    pg_dsn: str, unique: str
) -> None:
    """Credits reserved, the request refused before synthesis, and the key store gone before the release: the
    refusal writes a row claiming nothing, whose settlement gives the reservation back when the row is stored."""
    from services.access import Authenticator
    from services.access.grant import AccessServices
    from services.usage.request_log import RequestLogger
    from shared.settings import Settings

    store = PostgresKeyStore(pg_dsn)
    sink = PostgresSink(pg_dsn)
    plain, key = await store.create_key("refunds", key_id=f"refused-{unique}", credit_balance=1000)
    settings = Settings(auth_enabled=True, credits_enabled=True, log_json=False)
    access = AccessServices(
        settings,
        authenticator=Authenticator(store, ttl_s=30.0),
        request_logger=RequestLogger(sink, flush_s=0.05),
    )
    await access.start()
    down = PostgresKeyStore(UNREACHABLE)
    try:
        grant = await access.grant({"authorization": f"Bearer {plain}"}, "127.0.0.1", "client-7")
        grant.request_id = f"{unique}-refused"
        await grant.check_credits(50)
        assert await balance(pg_dsn, key.key_id) == 950
        access.ledger.store = down  # the key store goes down between the reservation and the refusal
        access.ledger.retry_delay_s = 0
        await grant.abandon()
        assert grant.reservation is not None and grant.reservation.release_owed
    finally:
        await access.close()
        await down.close()
        await sink.close()
        await store.close()
    assert await balance(pg_dsn, key.key_id) == 1000
    rows = await fetch(
        pg_dsn,
        "SELECT request_id, client_request_id, status, error_code, credits_charged, "
        "refund_credits FROM tts_requests WHERE key_id = $1",
        key.key_id,
    )
    assert [tuple(r) for r in rows] == [(f"{unique}-refused", "client-7", "failed", "NOT_STARTED", 0, 50)]
