"""Refunds owed while PostgreSQL is down, against a real server on real PostgreSQL: WebSocket
utterances reserve their credits with the database up, the database stops, their synthesis fails (the fault engine,
`--fault stop:0:0`: every generation stops at once -> GENERATION_FAILED, a 5xx, refunded in full) and the refund
cannot be taken. Once the
database is back and the spool drained, the balance is the initial one minus the sum of credits_charged over the
key's rows, each refund applied once.

    export $(scripts/start_services env)
    .venv/bin/python -m pytest tests/integration/test_refund_outage.py -q

This test stops the shared test PostgreSQL server for a few seconds; it always starts it again."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.conftest import RunningServer, start_server, stop_server
from tests.integration.conftest import create_credit_key

pytestmark = pytest.mark.integration

TEXT = "The quick brown fox jumps over the lazy dog"  # no sentence end: nothing is generated before `end`
INITIAL = 1_000


@pytest.fixture(scope="module")
def failing_server(
    pg_dsn: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("refund-outage")
    env = {
        "TTS_AUTH_ENABLED": "true",
        "TTS_KEY_BACKEND": "postgres",
        "TTS_DATABASE_URL": pg_dsn,
        "TTS_CREDITS_ENABLED": "true",
        "TTS_REQUEST_LOG_SINK": "postgres",
        "TTS_REQUEST_LOG_SPOOL_DIR": str(tmp),
        "TTS_KEY_STALE_IF_ERROR_S": "300",
        "TTS_VOICE_STORE": "none",
        "TTS_SR_ENABLED": "false",
        "TTS_WARMUP": "false",
        "TTS_GUARD_MAX_TRIES": "2",
    }
    server = start_server(demo_model_dir, tmp / "server.log", env, standin=["--fault", "stop:0:0"])
    yield server
    stop_server(server)


async def state(dsn: str, key_id: str) -> tuple[int, list[asyncpg.Record]]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        balance = await conn.fetchval("SELECT credit_balance FROM api_keys WHERE key_id = $1", key_id)
        rows = await conn.fetch(
            "SELECT status, error_code, credits_charged, refund_credits FROM tts_requests WHERE key_id = $1",
            key_id,
        )
    finally:
        await conn.close()
    return balance, rows


async def until(ws: ClientConnection, *types: str) -> dict:
    while True:
        message = await asyncio.wait_for(ws.recv(), 60)
        if isinstance(message, str) and (event := json.loads(message))["type"] in types:
            return event


async def scenario(server: RunningServer, raw: str, key_id: str, dsn: str, pg_control) -> list[dict]:
    url = server.base_url.replace("http://", "ws://") + "/v1/tts/ws"
    auth = {"Authorization": f"Bearer {raw}"}
    sockets = [await connect(url, additional_headers=auth, max_size=None) for _ in range(2)]
    try:
        for ws in sockets:
            await ws.send(
                json.dumps(
                    {"type": "start", "speaker": "fixed", "format": "pcm", "sample_rate": 16000, "text": TEXT}
                )
            )
            await ws.send(json.dumps({"type": "ping", "id": 1}))
            await until(ws, "pong")  # messages are handled in order: the text's credits are reserved
        balance, _ = await state(dsn, key_id)
        assert balance < INITIAL  # taken from the store while it was up
        await pg_control.astop()
        try:
            for ws in sockets:
                await ws.send(json.dumps({"type": "end"}))
            return [await until(ws, "done", "error") for ws in sockets]
        finally:
            await asyncio.sleep(
                1.0
            )  # let the settle step try (and fail) the refunds while the database is down
            await pg_control.astart()
    finally:
        for ws in sockets:
            await ws.close()


def test_refunds_owed_during_an_outage_reach_the_balance_once(
    failing_server: RunningServer, pg_dsn: str, pg_control, unique: str
) -> None:
    raw, key_id = create_credit_key(pg_dsn, f"refund-{unique}", credit_balance=INITIAL)
    events = asyncio.run(scenario(failing_server, raw, key_id, pg_dsn, pg_control))
    assert [e["error"]["code"] for e in events] == ["GENERATION_FAILED"] * 2, events

    deadline = time.monotonic() + 60
    balance, rows = asyncio.run(state(pg_dsn, key_id))
    while (len(rows) < 2 or balance != INITIAL) and time.monotonic() < deadline:
        time.sleep(0.3)
        balance, rows = asyncio.run(state(pg_dsn, key_id))
    assert [(r["status"], r["error_code"], r["credits_charged"]) for r in rows] == [
        ("failed", "GENERATION_FAILED", 0)
    ] * 2
    assert all(r["refund_credits"] > 0 for r in rows)  # the refunds were owed, not taken live
    assert balance == INITIAL - sum(r["credits_charged"] for r in rows) == INITIAL
