"""Metered keys during a PostgreSQL outage, against a real server on real PostgreSQL: a metered
key whose record is cached is served up to its outage allowance, then gets 503 with Retry-After; once the database
is back, its balance reflects what it spent during the outage.

    export $(scripts/start_services env)
    .venv/bin/python -m pytest tests/integration/test_credits_outage.py -q

This test stops the shared test PostgreSQL server for about as long as a few short requests take (seconds); it always
starts it again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import RunningServer
from tests.integration.conftest import create_credit_key, keyed_server

pytestmark = pytest.mark.integration

ALLOWANCE = 20
TEXT = "Hello."  # its cost is measured, not assumed (credits count the normalised text)


@pytest.fixture(scope="module")
def credit_server(
    pg_dsn: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    settings = {
        "TTS_CREDITS_OUTAGE_ALLOWANCE": str(ALLOWANCE),
        "TTS_KEY_STALE_IF_ERROR_S": "300",
        "TTS_VOICE_STORE": "none",
    }
    with keyed_server(
        pg_dsn, demo_model_dir, tmp_path_factory.mktemp("credits-outage"), **settings
    ) as server:
        yield server


def balance(dsn: str, key_id: str) -> int:
    async def read() -> int:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return await conn.fetchval("SELECT credit_balance FROM api_keys WHERE key_id = $1", key_id)
        finally:
            await conn.close()

    return asyncio.run(read())


def speak(server: RunningServer, key: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/tts/generate",
        json={"text": TEXT, "speaker": "fixed", "max_tokens": 30},
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )


def test_a_metered_key_is_served_within_its_outage_allowance(
    credit_server: RunningServer, pg_dsn: str, pg_control, unique: str
) -> None:
    raw, key_id = create_credit_key(pg_dsn, f"outage-{unique}", credit_balance=1_000)
    first = speak(credit_server, raw)  # the key's record is now cached, with its balance
    assert first.status_code == 200, first.text
    cost = 1_000 - balance(pg_dsn, key_id)
    assert 0 < cost <= ALLOWANCE
    fits = ALLOWANCE // cost

    pg_control.stop()
    try:
        answers = [speak(credit_server, raw) for _ in range(fits + 1)]
    finally:
        pg_control.start()
    assert [a.status_code for a in answers[:fits]] == [200] * fits, answers[-1].text
    refused = answers[fits]  # one more than the allowance holds
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert int(refused.headers["retry-after"]) > 0

    # The database is back: the next request debits as usual and the outage spend is debited after it.
    assert speak(credit_server, raw).status_code == 200
    expected = 1_000 - cost * (1 + fits + 1)
    deadline = time.monotonic() + 30
    while balance(pg_dsn, key_id) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert balance(pg_dsn, key_id) == expected
