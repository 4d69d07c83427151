"""Voice design (`POST /v1/audio/voices/design`) is charged and logged as a speech request: credits reserved before
the generation and debited after, with its request-log row; a key without credits, or keeping its most voices, is
refused before anything is generated. A real uvicorn server with the demo model, keys and credits in the real
PostgreSQL, the request log and the voice library in PostgreSQL, JSON logs read from the server's output."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import RunningServer
from tests.integration.conftest import create_credit_key, keyed_server

pytestmark = pytest.mark.integration

DESIGN = {"name": "Narrator", "gender": "female", "pitch": "high", "speed_level": "moderate", "seed": 3}
MAX_VOICES = 1


@pytest.fixture(scope="module")
def server(
    pg_dsn: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    settings = {
        "TTS_REQUEST_LOG_SINK": "postgres",
        "TTS_REQUEST_LOG_SPOOL_DIR": str(tmp_path_factory.mktemp("spool")),
        "TTS_VOICE_STORE": "postgres",
        "TTS_VOICE_LIBRARY_MAX_PER_KEY": str(MAX_VOICES),
        "TTS_LOG_JSON": "true",
        "TTS_LOG_LEVEL": "INFO",
        "TTS_SR_ENABLED": "false",
        "TTS_DEFAULT_MAX_TOKENS": "100",
    }
    with keyed_server(pg_dsn, demo_model_dir, tmp_path_factory.mktemp("design"), **settings) as running:
        yield running


def _design(server: RunningServer, raw_key: str, **fields: Any) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/audio/voices/design",
        headers={"Authorization": f"Bearer {raw_key}"},
        json={**DESIGN, **fields},
        timeout=120,
    )


async def _state(dsn: str, key_id: str, request_id: str) -> tuple[dict[str, Any] | None, int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT * FROM tts_requests WHERE request_id = $1", request_id)
        balance = await conn.fetchval("SELECT credit_balance FROM api_keys WHERE key_id = $1", key_id)
        voices = await conn.fetchval("SELECT count(*) FROM tts_voices WHERE owner_key_id = $1", key_id)
    finally:
        await conn.close()
    return (None if row is None else dict(row)), balance, voices


def _generated(server: RunningServer, request_id: str) -> list[str]:
    """The accounting events the server logged for a request (none: nothing was generated)."""
    events = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("request_id") == request_id and entry.get("event") in (
            "request_received",
            "first_audio",
        ):
            events.append(entry["event"])
    return events


def _tokens_generated(server: RunningServer) -> float:
    """The LLM's token counter (/metrics): it moves with any generation, accounted or not."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "veena3_tts_llm_tokens_generated_total":
                return sample.value
    return 0.0


def test_a_design_is_debited_and_logged(server: RunningServer, pg_dsn: str) -> None:
    raw, key_id = create_credit_key(pg_dsn, "design-paid")
    answer = _design(server, raw)
    assert answer.status_code == 201, answer.text
    request_id = answer.headers["X-Request-ID"]
    deadline = time.monotonic() + 30
    while (state := asyncio.run(_state(pg_dsn, key_id, request_id)))[0] is None:
        assert time.monotonic() < deadline, "no request-log row for the design"
        time.sleep(0.2)
    row, balance, voices = state
    assert row is not None and row["key_id"] == key_id and row["status"] == "completed"
    assert row["credits_charged"] > 0 and balance == 10_000 - row["credits_charged"]
    assert voices == 1 and "first_audio" in _generated(server, request_id)


def test_a_key_without_credits_is_refused_before_any_generation(server: RunningServer, pg_dsn: str) -> None:
    raw, key_id = create_credit_key(pg_dsn, "design-broke", credit_balance=0)
    tokens = _tokens_generated(server)
    answer = _design(server, raw)
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "INSUFFICIENT_CREDITS", answer.text
    request_id = answer.headers["X-Request-ID"]
    time.sleep(0.5)
    assert _generated(server, request_id) == [] and _tokens_generated(server) == tokens
    assert asyncio.run(_state(pg_dsn, key_id, request_id))[1:] == (0, 0)


def test_a_key_at_its_voice_cap_is_refused_before_generating(server: RunningServer, pg_dsn: str) -> None:
    raw, key_id = create_credit_key(pg_dsn, "design-full")
    assert _design(server, raw).status_code == 201
    time.sleep(1.0)  # the first design's debit settles
    before = asyncio.run(_state(pg_dsn, key_id, "-"))[1]
    tokens = _tokens_generated(server)
    answer = _design(server, raw, name="Second")
    assert answer.json()["error"]["code"] == "VOICE_LIMIT_REACHED", answer.text
    request_id = answer.headers["X-Request-ID"]
    time.sleep(0.5)
    assert _generated(server, request_id) == [] and _tokens_generated(server) == tokens
    assert asyncio.run(_state(pg_dsn, key_id, request_id))[1:] == (before, MAX_VOICES)


def test_four_designs_at_once_at_the_cap_generate_and_charge_one(server: RunningServer, pg_dsn: str) -> None:
    """Issue 98: four designs at once with room for one were all generated and charged (303 credits), three then
    refused. The room is held from before the generation: one is made and charged, three refused before."""
    raw, key_id = create_credit_key(pg_dsn, "design-race")
    balance = asyncio.run(_state(pg_dsn, key_id, "-"))[1]

    async def four() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=180) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/audio/voices/design",
                        headers={"Authorization": f"Bearer {raw}"},
                        json={**DESIGN, "name": f"Race {i}"},
                    )
                    for i in range(4)
                )
            )

    answers = asyncio.run(four())
    assert sorted(a.status_code for a in answers) == [201, 403, 403, 403], [a.text for a in answers]
    refused = [a for a in answers if a.status_code != 201]
    assert all(a.json()["error"]["code"] == "VOICE_LIMIT_REACHED" for a in refused)
    time.sleep(1.0)  # the one design's debit settles
    for answer in refused:
        assert _generated(server, answer.headers["X-Request-ID"]) == []
    made = next(a for a in answers if a.status_code == 201).headers["X-Request-ID"]
    deadline = time.monotonic() + 30
    while (state := asyncio.run(_state(pg_dsn, key_id, made)))[0] is None:
        assert time.monotonic() < deadline, "no request-log row for the design"
        time.sleep(0.2)
    row, left, voices = state
    assert row is not None and voices == MAX_VOICES
    assert balance - left == row["credits_charged"] > 0  # one generation charged, not four


def test_a_lone_surrogate_in_a_name_is_refused_before_generating(server: RunningServer, pg_dsn: str) -> None:
    """A name PostgreSQL cannot store was generated and charged (49 credits), then answered 503."""
    raw, key_id = create_credit_key(pg_dsn, "design-surrogate")
    balance = asyncio.run(_state(pg_dsn, key_id, "-"))[1]
    answer = httpx.post(
        f"{server.base_url}/v1/audio/voices/design",
        headers={"Authorization": f"Bearer {raw}", "Content-Type": "application/json"},
        content=json.dumps({**DESIGN, "name": "x"}).replace('"x"', '"\\ud800"'),
        timeout=120,
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "VALIDATION_ERROR", answer.text
    time.sleep(0.5)
    assert asyncio.run(_state(pg_dsn, key_id, answer.headers["X-Request-ID"]))[1:] == (balance, 0)
