"""API keys, credits and shared limits through real servers (uvicorn subprocesses), PostgreSQL and Redis.

    export $(scripts/start_services)
    .venv/bin/python -m pytest tests/integration/test_http_access.py -q

Keys live in PostgreSQL (TTS_KEY_BACKEND=postgres) for the auth and credit tests; the limit tests run two app
instances that share one Redis, as two Modal containers would. Every key and Redis key is unique to the run.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.access import PostgresKeyStore, generate_api_key, hash_key
from tests.e2e.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.integration

CACHE_TTL_S = 2.0
SPEECH = {
    "text": "Hi.",
    "speaker": "fixed",
    "seed": 1,
}  # a voice with its global tokens: the quickest request
CHEAP = {"text": "Hi.", "speaker": "no-such-voice"}  # passes auth and limits, refused before any model work


def run(coro):
    return asyncio.run(coro)


def post(
    server: RunningServer, body: dict, *, key: str | None = None, style: str = "bearer"
) -> httpx.Response:
    headers = {}
    if key is not None:
        headers = {"Authorization": f"Bearer {key}"} if style == "bearer" else {"X-API-Key": key}
    return httpx.post(f"{server.base_url}/v1/tts/generate", json=body, headers=headers, timeout=120)


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def metric(server: RunningServer, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def start_servers(model_dir: Path, tmp: Path, envs: list[dict[str, str]]) -> list[RunningServer]:
    """Start several servers at once (each loads the model for a few seconds)."""
    with ThreadPoolExecutor(len(envs)) as pool:
        futures = [
            pool.submit(start_server, model_dir, tmp / f"server{i}.log", env) for i, env in enumerate(envs)
        ]
        servers, errors = [], []
        for future in futures:
            try:
                servers.append(future.result())
            except Exception as exc:  # noqa: BLE001 - stop the others, then report
                errors.append(exc)
    if errors:
        for server in servers:
            stop_server(server)
        raise errors[0]
    return servers


# ---------------------------------------------------------------------------------------------------- PostgreSQL keys


@pytest.fixture(scope="module")
def key_server(
    pg_dsn: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    env = {
        "TTS_AUTH_ENABLED": "true",
        "TTS_KEY_BACKEND": "postgres",
        "TTS_DATABASE_URL": pg_dsn,
        "TTS_KEY_CACHE_TTL_S": str(CACHE_TTL_S),
        "TTS_CREDITS_ENABLED": "true",
    }
    [server] = start_servers(demo_model_dir, tmp_path_factory.mktemp("keys"), [env])
    yield server
    stop_server(server)


@pytest.fixture
def make_key(pg_dsn: str) -> Callable[..., tuple[str, str]]:
    """Create a key in PostgreSQL; returns (raw key, key_id)."""

    def make(**fields) -> tuple[str, str]:
        async def create() -> tuple[str, str]:
            store = PostgresKeyStore(pg_dsn)
            try:
                raw, record = await store.create_key(
                    "http-test", key_id=f"http-{uuid.uuid4().hex[:12]}", **fields
                )
            finally:
                await store.close()
            return raw, record.key_id

        return run(create())

    return make


async def _set_status(dsn: str, key_id: str, status: str) -> None:
    store = PostgresKeyStore(dsn)
    try:
        assert await store.set_status(key_id, status)
    finally:
        await store.close()


async def _balance(dsn: str, key_id: str) -> int | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT credit_balance FROM api_keys WHERE key_id = $1", key_id)
    finally:
        await conn.close()


def test_postgres_keys_valid_unknown_expired_suspended(key_server: RunningServer, make_key) -> None:
    good, _ = make_key()
    expired, _ = make_key(expires_at=datetime.now(UTC) - timedelta(minutes=1))
    suspended, _ = make_key(status="suspended")

    for style in ("bearer", "x-api-key"):
        ok = post(key_server, SPEECH, key=good, style=style)
        assert ok.status_code == 200 and ok.content[:4] == b"RIFF", ok.text
        assert ok.headers["X-RateLimit-Limit"] == "60"

        unknown = post(key_server, SPEECH, key=generate_api_key(), style=style)
        assert unknown.status_code == 401 and error_code(unknown) == "INVALID_API_KEY"
        assert unknown.headers["WWW-Authenticate"] == "Bearer"

        old = post(key_server, SPEECH, key=expired, style=style)
        assert old.status_code == 401 and error_code(old) == "EXPIRED_API_KEY"

        paused = post(key_server, SPEECH, key=suspended, style=style)
        assert paused.status_code == 403 and error_code(paused) == "KEY_SUSPENDED"

    missing = post(key_server, SPEECH)
    assert missing.status_code == 401 and error_code(missing) == "INVALID_API_KEY"


def test_revoked_key_works_until_the_cache_ttl_then_gets_401(
    key_server: RunningServer, make_key, pg_dsn: str
) -> None:
    raw, key_id = make_key()
    primed = post(key_server, CHEAP, key=raw)  # authenticates (and caches) the key
    assert primed.status_code == 400 and error_code(primed) == "INVALID_SPEAKER"
    primed_at = time.monotonic()

    run(_set_status(pg_dsn, key_id, "revoked"))
    still = post(key_server, SPEECH, key=raw)
    assert time.monotonic() - primed_at < CACHE_TTL_S, "the machine is too slow for this TTL"
    assert still.status_code == 200  # within the cache TTL the revocation is not yet seen

    while True:
        response = post(key_server, CHEAP, key=raw, style="x-api-key")
        if response.status_code == 401:
            break
        assert error_code(response) == "INVALID_SPEAKER"
        assert time.monotonic() - primed_at < CACHE_TTL_S + 3, "revocation not applied after the cache TTL"
        time.sleep(0.1)
    refused_after = time.monotonic() - primed_at
    print(f"\nrevoked key refused {refused_after:.2f} s after it was cached (TTL {CACHE_TTL_S} s)")
    assert refused_after >= CACHE_TTL_S - 0.1
    assert error_code(response) == "INVALID_API_KEY" and "revoked" in response.json()["error"]["message"]


def test_insufficient_credits_is_refused_before_any_model_work(
    key_server: RunningServer, make_key, pg_dsn: str
) -> None:
    poor, poor_id = make_key(credit_balance=5)
    tokens_before = metric(key_server, "veena3_tts_llm_tokens_generated_total")
    requests_before = metric(key_server, "veena3_tts_requests_total")

    refused = post(key_server, {"text": "Hello there, everyone.", "speaker": "default"}, key=poor)
    assert refused.status_code == 403 and error_code(refused) == "INSUFFICIENT_CREDITS"
    assert "5" in refused.json()["error"]["message"]
    assert metric(key_server, "veena3_tts_llm_tokens_generated_total") == tokens_before
    assert metric(key_server, "veena3_tts_requests_total") == requests_before
    assert run(_balance(pg_dsn, poor_id)) == 5  # nothing taken

    # A balance that covers the text pays for it (1 credit per character).
    rich, rich_id = make_key(credit_balance=100)
    paid = post(key_server, SPEECH, key=rich)
    assert paid.status_code == 200
    deadline = time.monotonic() + 10
    while run(_balance(pg_dsn, rich_id)) != 100 - len(SPEECH["text"]):
        assert time.monotonic() < deadline, f"balance is {run(_balance(pg_dsn, rich_id))}"
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------------- Redis limits

RATE_LIMIT = 4


@pytest.fixture(scope="module")
def limit_keys() -> dict[str, str]:
    return {"rate": generate_api_key(), "concurrency": generate_api_key()}


@pytest.fixture(scope="module")
def two_instances(
    redis_url: str, limit_keys: dict[str, str], demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[RunningServer]]:
    tmp = tmp_path_factory.mktemp("limits")
    run_tag = uuid.uuid4().hex[:8]
    records = [
        {
            "key_id": f"rate-{run_tag}",
            "key_hash": hash_key(limit_keys["rate"]),
            "rate_limit_per_minute": RATE_LIMIT,
            "max_concurrent": 4,
        },
        {
            "key_id": f"conc-{run_tag}",
            "key_hash": hash_key(limit_keys["concurrency"]),
            "rate_limit_per_minute": 60,
            "max_concurrent": 1,
        },
    ]
    keys_file = tmp / "keys.json"
    keys_file.write_text(json.dumps({"keys": records}))
    env = {"TTS_AUTH_ENABLED": "true", "TTS_API_KEYS_FILE": str(keys_file), "TTS_REDIS_URL": redis_url}
    servers = start_servers(demo_model_dir, tmp, [env, env])
    yield servers
    for server in servers:
        stop_server(server)


def test_two_instances_enforce_one_rate_limit(two_instances: list[RunningServer], limit_keys) -> None:
    key = limit_keys["rate"]
    remaining = []
    for i in range(RATE_LIMIT):
        response = post(two_instances[i % 2], SPEECH, key=key)
        assert response.status_code == 200, response.text
        assert response.headers["X-RateLimit-Limit"] == str(RATE_LIMIT)
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == list(range(RATE_LIMIT - 1, -1, -1))  # one count across both instances

    for server in two_instances:
        refused = post(server, SPEECH, key=key)
        assert refused.status_code == 429 and error_code(refused) == "RATE_LIMIT_EXCEEDED"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["X-RateLimit-Limit"] == str(RATE_LIMIT)
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert 0 < int(refused.headers["X-RateLimit-Reset"]) <= 60


def test_concurrency_cap_spans_instances_and_frees_when_the_stream_ends(
    two_instances: list[RunningServer], limit_keys
) -> None:
    key = limit_keys["concurrency"]
    first, second = two_instances
    long_text = "A long streamed answer keeps this request's slot busy for a few seconds while it plays. " * 2
    body = {"text": long_text.strip(), "speaker": "default", "stream": True, "format": "pcm"}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=120) as client:
        with client.stream("POST", f"{first.base_url}/v1/tts/generate", json=body, headers=headers) as held:
            assert held.status_code == 200  # headers arrive with the first audio: the stream is running
            for server in (second, first):
                refused = post(server, CHEAP, key=key)
                assert refused.status_code == 429 and error_code(refused) == "TOO_MANY_CONCURRENT_REQUESTS"
                assert int(refused.headers["Retry-After"]) >= 1
            audio = b"".join(held.iter_bytes())
        assert len(audio) > 32_000

    # The slot is released when the stream ends (just after its last byte).
    deadline = time.monotonic() + 5
    while True:
        response = post(second, SPEECH, key=key)
        if response.status_code == 200:
            break
        assert error_code(response) == "TOO_MANY_CONCURRENT_REQUESTS"
        assert time.monotonic() < deadline, "the concurrency slot was not released after the stream ended"
        time.sleep(0.2)


def test_refused_bodies_do_not_leak_concurrency_slots(two_instances: list[RunningServer], limit_keys) -> None:
    """Requests refused after the access check (bad body, unknown voice) give their slot back."""
    key = limit_keys["concurrency"]  # max_concurrent 1
    for _ in range(3):
        invalid = post(two_instances[0], {"text": "   ", "speaker": "default"}, key=key)
        assert invalid.status_code == 400 and error_code(invalid) == "VALIDATION_ERROR"
        unknown = post(two_instances[1], CHEAP, key=key)
        assert unknown.status_code == 400 and error_code(unknown) == "INVALID_SPEAKER"
    assert post(two_instances[0], SPEECH, key=key).status_code == 200
