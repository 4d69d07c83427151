"""Two replicas as a Modal fleet runs them: two service processes on the device stand-in (`python -m
bench.standin.serve`), one PostgreSQL (keys, credits, the request log, jobs, continuity) and one Redis (limits), behind
the local stand-in for Modal's router (bench/standin/router.py: a request goes to a replica with a free input slot).

- A key's rate limit and concurrency limit hold across both (Redis), and its balance is the start less the sum of
  what both charged.
- A request made on one is continued on the other (`previous_request_ids`).
- A job submitted on one is rendered once: one request per chapter between the two replicas' workers.
- A stream refused by a full replica is served by the other: replica A's device holds one stream (`--hold-streams
  1`); with it under way, the OpenAI SDK's request lands on A, is refused (503 SERVER_OVERLOADED, Retry-After), A's
  input gate closes its slots, and the SDK's own retry is routed to B.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from bench.standin.fleet import SlotsFile
from bench.standin.router import REPLICA_HEADER, Replica, create_router
from tests.e2e.conftest import RunningServer, in_process_server, start_server, stop_server
from tests.integration.conftest import create_credit_key

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
COST_MODEL = ROOT / "bench" / "cost_models" / "h200-graphs-vllm-step.json"
HELLO = {"text": "Hello there.", "speaker": "fixed", "seed": 1}
# About a minute of audio: its response is under way for as long as the test needs A full.
LONG = " ".join(["The quick brown fox jumps over the lazy dog near the riverbank today."] * 12)


@dataclass
class Fleet:
    a: RunningServer
    b: RunningServer
    router: str
    slots: dict[str, SlotsFile]


@pytest.fixture(scope="module")
def fleet(
    pg_dsn: str, redis_url: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    shared = {
        "TTS_AUTH_ENABLED": "true",
        "TTS_KEY_BACKEND": "postgres",
        "TTS_DATABASE_URL": pg_dsn,
        "TTS_REDIS_URL": redis_url,
        "TTS_CREDITS_ENABLED": "true",
        "TTS_REQUEST_LOG_SINK": "postgres",
        "TTS_VOICE_STORE": "postgres",
        "TTS_JOBS_DIR": str(root / "jobs"),  # the jobs Volume both containers mount
        "TTS_LOG_JSON": "true",
        "TTS_LOG_LEVEL": "INFO",
        "TTS_SR_ENABLED": "false",
    }
    slots = {name: SlotsFile(root / f"{name}.slots") for name in ("a", "b")}
    hold = {"a": ["--hold-streams", "1"], "b": []}

    def start(name: str) -> RunningServer:
        env = {**shared, "TTS_REQUEST_LOG_SPOOL_DIR": str(root / f"spool-{name}")}
        standin = ["--cost-model", str(COST_MODEL), "--slots-file", str(slots[name].path), *hold[name]]
        return start_server(demo_model_dir, root / f"{name}.log", env, standin=standin)

    with ThreadPoolExecutor(2) as pool:
        started = [pool.submit(start, name) for name in ("a", "b")]
        servers = [future.result() for future in started]
    a, b = servers
    replicas = [Replica("a", a.base_url, slots["a"]), Replica("b", b.base_url, slots["b"])]
    try:
        with in_process_server(create_router(replicas), "router") as router:
            yield Fleet(a, b, router.base_url, slots)
    finally:
        for server in servers:
            stop_server(server)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _charges(dsn: str, key_id: str) -> tuple[list[int], int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT credits_charged FROM tts_requests WHERE key_id = $1", key_id)
        balance = await conn.fetchval("SELECT credit_balance FROM api_keys WHERE key_id = $1", key_id)
    finally:
        await conn.close()
    return [r["credits_charged"] or 0 for r in rows], balance


def _rows_for(dsn: str, key_id: str, count: int) -> tuple[list[int], int]:
    deadline = time.monotonic() + 30
    while len((state := asyncio.run(_charges(dsn, key_id)))[0]) < count:
        assert time.monotonic() < deadline, f"request-log rows for {key_id}: {state[0]}, want {count}"
        time.sleep(0.2)
    return state


def test_limits_and_credits_hold_across_both_replicas(fleet: Fleet, pg_dsn: str) -> None:
    raw, key_id = create_credit_key(pg_dsn, "fleet-rate", credit_balance=10_000)
    asyncio.run(_set_limits(pg_dsn, key_id, rate_limit_per_minute=4))
    answers = []
    for server in (fleet.a, fleet.b, fleet.a, fleet.b, fleet.a):
        answers.append(
            httpx.post(f"{server.base_url}/v1/tts/generate", headers=_auth(raw), json=HELLO, timeout=60)
        )
    assert [r.status_code for r in answers] == [200, 200, 200, 200, 429], [r.text[:200] for r in answers]
    assert answers[-1].json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"  # 4 a minute, counted across both
    charges, balance = _rows_for(pg_dsn, key_id, 4)
    assert sum(charges) > 0 and balance == 10_000 - sum(charges), (charges, balance)


def test_a_keys_concurrency_limit_holds_across_both_replicas(fleet: Fleet, pg_dsn: str) -> None:
    raw, key_id = create_credit_key(pg_dsn, "fleet-conc", credit_balance=10_000)
    asyncio.run(_set_limits(pg_dsn, key_id, max_concurrent=1))
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST",
            f"{fleet.b.base_url}/v1/tts/generate",
            headers=_auth(raw),
            json={"text": LONG, "stream": True},
        ) as held,
    ):
        assert held.status_code == 200
        chunks = held.iter_bytes()  # kept: a dropped iterator closes the response
        next(chunks)
        other = client.post(f"{fleet.a.base_url}/v1/tts/generate", headers=_auth(raw), json=HELLO)
        assert other.status_code == 429, other.text[:300]
        assert other.json()["error"]["code"] == "TOO_MANY_CONCURRENT_REQUESTS"  # one at a time, across both


def test_a_request_made_on_one_replica_is_continued_on_the_other(fleet: Fleet, pg_dsn: str) -> None:
    raw, _ = create_credit_key(pg_dsn, "fleet-cont", credit_balance=10_000)
    made = httpx.post(f"{fleet.a.base_url}/v1/tts/generate", headers=_auth(raw), json=HELLO, timeout=60)
    assert made.status_code == 200, made.text[:300]
    stitched = httpx.post(
        f"{fleet.b.base_url}/v1/tts/generate",
        headers=_auth(raw),
        json={"text": "And on the other one.", "previous_request_ids": [made.headers["X-Server-Request-ID"]]},
        timeout=60,
    )
    assert stitched.status_code == 200, stitched.text[:300]


def test_a_job_is_rendered_once_between_the_replicas(fleet: Fleet, pg_dsn: str) -> None:
    raw, key_id = create_credit_key(pg_dsn, "fleet-job", credit_balance=10_000)
    text = (
        "[chapter: One]\nThe first chapter.\n[chapter: Two]\nThe second chapter.\n[chapter: Three]\nThe end."
    )
    submitted = httpx.post(
        f"{fleet.a.base_url}/v1/tts/jobs",
        headers=_auth(raw),
        json={"text": text, "format": "wav", "book_format": None},
        timeout=60,
    )
    assert submitted.status_code == 202, submitted.text[:300]
    job_id = submitted.json()["id"]
    deadline = time.monotonic() + 90
    while True:
        job = httpx.get(f"{fleet.b.base_url}/v1/tts/jobs/{job_id}", headers=_auth(raw), timeout=30).json()
        if job["status"] in ("done", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, f"job not done in 90 s: {job}"
        time.sleep(0.5)
    assert job["status"] == "done", job
    # The request log is written after each response ends (a background write): a chapter's row may land just after
    # the job reads done. Each chapter once, by one replica, once every row is in.
    expected = [c["index"] for c in job["chapters"]]
    deadline = time.monotonic() + 30
    while True:
        rendered = asyncio.run(_job_requests(pg_dsn, key_id, job_id))
        chapters = sorted(int(request_id.split("-")[2]) for request_id in rendered)
        if len(chapters) >= len(expected) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert chapters == expected, rendered
    served_by = {name: _log_mentions(server, job_id) for name, server in (("a", fleet.a), ("b", fleet.b))}
    assert sum(served_by.values()) >= 1, served_by


def test_a_stream_refused_by_a_full_replica_is_served_by_the_other(fleet: Fleet, pg_dsn: str) -> None:
    from openai import OpenAI

    raw, _ = create_credit_key(pg_dsn, "fleet-full", credit_balance=100_000)
    refusals_before = _refusals(fleet.a)
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST", f"{fleet.router}/v1/tts/generate", headers=_auth(raw), json={"text": LONG, "stream": True}
        ) as held,
    ):
        assert held.status_code == 200 and held.headers[REPLICA_HEADER] == "a"  # the router fills A first
        chunks = held.iter_bytes()  # kept: a dropped iterator closes the response
        next(chunks)  # A's device now holds its one stream
        sdk = OpenAI(base_url=f"{fleet.router}/v1", api_key=raw, max_retries=2, timeout=60)
        started = time.monotonic()
        spoken = sdk.audio.speech.with_raw_response.create(model="tts-1", voice="fixed", input="Hello there.")
        waited = time.monotonic() - started
        assert spoken.http_response.status_code == 200
        assert spoken.headers[REPLICA_HEADER] == "b", "the retry must go to the replica with room"
        assert spoken.content
        assert _refusals(fleet.a) == refusals_before + 1  # A refused the first try once, for capacity
        assert fleet.slots["a"].read(0) == 1  # A's gate closed its slots: only the held stream
        assert waited >= 1.0  # the SDK waited Retry-After before its retry
    deadline = time.monotonic() + 10
    while fleet.slots["a"].read(0) != 256:  # the held stream over, A has headroom and opens again
        assert time.monotonic() < deadline, "A's input slots never opened again"
        time.sleep(0.1)


async def _set_limits(dsn: str, key_id: str, **limits: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for column, value in limits.items():
            await conn.execute(f"UPDATE api_keys SET {column} = $1 WHERE key_id = $2", value, key_id)
    finally:
        await conn.close()


async def _job_requests(dsn: str, key_id: str, job_id: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT request_id FROM tts_requests WHERE key_id = $1 AND request_id LIKE $2",
            key_id,
            f"job-{job_id}-%",
        )
    finally:
        await conn.close()
    return [r["request_id"] for r in rows]


def _log_events(server: RunningServer) -> list[dict]:
    events = []
    for line in server.log_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def _refusals(server: RunningServer) -> int:
    return sum(1 for e in _log_events(server) if e.get("event") == "admission_refused")


def _log_mentions(server: RunningServer, job_id: str) -> int:
    return sum(1 for e in _log_events(server) if e.get("job_id") == job_id)
