"""A PostgreSQL outage while a real server serves traffic: every request gets its audio, no record is lost.

    export $(scripts/start_services)
    .venv/bin/python -m pytest tests/integration/test_http_request_log_outage.py -q -s

The server (uvicorn subprocess) writes its request log to PostgreSQL. The database is stopped with
scripts/stop_postgres, 200 streaming requests are served, then it is started again; all 200 records must reach
`tts_requests`. Time to first audio is measured by the client with the database up and down and printed.
This test stops the shared test database for about a minute; it always starts it again.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.integration

BASELINE_REQUESTS = 40
OUTAGE_REQUESTS = 200
CONCURRENCY = 4
TEXTS = ("Hi.", "Yes.", "Okay.", "Thanks.")


@dataclass
class Served:
    request_id: str
    status: int
    audio_bytes: int
    ttfb_ms: float
    server_id: str = ""


@pytest.fixture(scope="module")
def log_server(
    pg_dsn: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    spool = tmp_path_factory.mktemp("spool")
    env = {
        "TTS_REQUEST_LOG_SINK": "postgres",
        "TTS_DATABASE_URL": pg_dsn,
        "TTS_REQUEST_LOG_FLUSH_S": "0.2",
        "TTS_REQUEST_LOG_SPOOL_DIR": str(spool),
    }
    server = start_server(demo_model_dir, tmp_path_factory.mktemp("outage") / "server.log", env)
    yield server
    stop_server(server)


def serve(client: httpx.Client, server: RunningServer, request_id: str, text: str) -> Served:
    # The "fixed" voice carries its 32 global tokens, so the LLM only generates the short text's speech.
    body = {"text": text, "speaker": "fixed", "stream": True, "format": "wav"}
    started = time.perf_counter()
    ttfb = None
    size = 0
    with client.stream(
        "POST", f"{server.base_url}/v1/tts/generate", json=body, headers={"X-Request-ID": request_id}
    ) as response:
        for chunk in response.iter_bytes():
            if ttfb is None and chunk:
                ttfb = (time.perf_counter() - started) * 1000
            size += len(chunk)
    assert response.headers.get("X-Request-ID") == request_id
    return Served(
        request_id,
        response.status_code,
        size,
        ttfb or float("nan"),
        response.headers.get("X-Server-Request-ID", ""),
    )


def serve_many(server: RunningServer, tag: str, count: int) -> list[Served]:
    with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=CONCURRENCY)) as client:
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            futures = [
                pool.submit(serve, client, server, f"{tag}-{i:04d}", TEXTS[i % len(TEXTS)])
                for i in range(count)
            ]
            return [f.result() for f in futures]


def logged_ids(dsn: str, tag: str) -> set[str]:
    async def query() -> set[str]:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            rows = await conn.fetch(
                "SELECT client_request_id AS request_id, status, stream, text_length, ttfb_ms FROM tts_requests "
                "WHERE client_request_id LIKE $1",
                f"{tag}-%",
            )
        finally:
            await conn.close()
        for row in rows:
            assert row["status"] == "completed" and row["stream"] is True
            assert row["text_length"] in {len(t) for t in TEXTS} and row["ttfb_ms"] > 0
        return {row["request_id"] for row in rows}

    return asyncio.run(query())


def wait_until_logged(dsn: str, tag: str, expected: int, timeout_s: float) -> tuple[set[str], float]:
    started = time.monotonic()
    while True:
        try:
            ids = logged_ids(dsn, tag)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            ids = set()  # still starting up
        if len(ids) >= expected or time.monotonic() - started > timeout_s:
            return ids, time.monotonic() - started
        time.sleep(0.5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def metric(server: RunningServer, name: str, **labels: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_every_request_is_served_and_logged_through_a_postgres_outage(
    log_server: RunningServer, pg_dsn: str, pg_control
) -> None:
    tag = f"outage-{uuid.uuid4().hex[:10]}"
    # Database up: the writer has live pooled connections when the server goes away.
    baseline = serve_many(log_server, f"{tag}-up", BASELINE_REQUESTS)
    assert all(s.status == 200 for s in baseline)
    ids, _ = wait_until_logged(pg_dsn, f"{tag}-up", BASELINE_REQUESTS, 30)
    assert len(ids) == BASELINE_REQUESTS

    errors_before = metric(log_server, "veena3_tts_request_log_write_errors_total", sink="postgres")
    try:
        stop_s = pg_control.stop()
        outage_started = time.monotonic()
        during = serve_many(log_server, f"{tag}-down", OUTAGE_REQUESTS)
        outage_serving_s = time.monotonic() - outage_started
        # The writer saw the outage: failed writes, records waiting in memory.
        pending = metric(log_server, "veena3_tts_request_log_queue_depth")
        write_errors = metric(log_server, "veena3_tts_request_log_write_errors_total", sink="postgres")
    finally:
        start_s = pg_control.start()
    outage_s = time.monotonic() - outage_started

    ids, recovery_s = wait_until_logged(pg_dsn, f"{tag}-down", OUTAGE_REQUESTS, 60)
    up = [s.ttfb_ms for s in baseline]
    down = [s.ttfb_ms for s in during]
    print(
        f"\nrequest log through a PostgreSQL outage of {outage_s:.1f} s (stop {stop_s:.1f} s, start {start_s:.1f} s):"
        f"\n  {OUTAGE_REQUESTS} streaming requests served in {outage_serving_s:.1f} s at concurrency {CONCURRENCY}; "
        f"{pending:.0f} records pending and {write_errors - errors_before:.0f} failed writes at the end of it"
        f"\n  {len(ids)}/{OUTAGE_REQUESTS} records in tts_requests {recovery_s:.1f} s after the restart"
        f"\n  time to first audio (client, ms)   p50      p95     n"
        f"\n    database up                    {percentile(up, 0.5):7.1f}  {percentile(up, 0.95):7.1f}  {len(up)}"
        f"\n    database down                  {percentile(down, 0.5):7.1f}  {percentile(down, 0.95):7.1f}  {len(down)}"
        f"\n    mean up / down                 {statistics.mean(up):7.1f}  {statistics.mean(down):7.1f}"
    )
    assert all(s.status == 200 and s.audio_bytes > 44 for s in during), "a request failed during the outage"
    assert pending > 0 and write_errors > errors_before, "the outage did not reach the request log writer"
    missing = {s.request_id for s in during} - ids
    assert not missing, f"{len(missing)} request records lost, e.g. {sorted(missing)[:3]}"


def rows_for(dsn: str, server_ids: list[str]) -> list[tuple[str, str]]:
    async def query() -> list[tuple[str, str]]:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            rows = await conn.fetch(
                "SELECT request_id, client_request_id FROM tts_requests WHERE request_id = ANY($1::text[])",
                server_ids,
            )
        finally:
            await conn.close()
        return [(r["request_id"], r["client_request_id"]) for r in rows]

    return asyncio.run(query())


def test_spooled_records_survive_sigterm_during_an_outage_exactly_once(
    pg_dsn: str, pg_control, demo_model_dir: Path, tmp_path: Path
) -> None:
    """PostgreSQL down, requests served (three reusing one client X-Request-ID), the server stopped with SIGTERM
    while the database is still down, database and server restarted: every request is in tts_requests exactly
    once, under its own server id."""
    tag = f"sigterm-{uuid.uuid4().hex[:10]}"
    spool = tmp_path / "spool"
    env = {
        "TTS_REQUEST_LOG_SINK": "postgres",
        "TTS_DATABASE_URL": pg_dsn,
        "TTS_REQUEST_LOG_FLUSH_S": "0.2",
        "TTS_REQUEST_LOG_SPOOL_DIR": str(spool),
    }
    first = start_server(demo_model_dir, tmp_path / "first.log", env)
    served: list[Served] = []
    try:
        pg_control.stop()
        with httpx.Client(timeout=120) as client:
            for i in range(9):
                served.append(serve(client, first, f"{tag}-{i}", TEXTS[i % len(TEXTS)]))
            for _ in range(3):
                served.append(serve(client, first, f"{tag}-dup", "Hi."))
        assert all(s.status == 200 for s in served)
        assert list(spool.glob("spool-*.sqlite3")), "records are on disk"
    finally:
        stop_server(first)  # SIGTERM while the database is down
        pg_control.start()
    server_ids = [s.server_id for s in served]
    assert len(set(server_ids)) == len(served) and all(server_ids)
    assert "request log closed with records still spooled" in first.log_text()

    second = start_server(demo_model_dir, tmp_path / "second.log", env)  # adopts the first one's spool
    try:
        deadline = time.monotonic() + 60
        rows: list[tuple[str, str]] = []
        while time.monotonic() < deadline:
            rows = rows_for(pg_dsn, server_ids)
            if len(rows) >= len(server_ids):
                break
            time.sleep(0.5)
    finally:
        stop_server(second)
    assert sorted(r[0] for r in rows) == sorted(server_ids)  # each exactly once (request_id is unique)
    assert sum(1 for _, client in rows if client == f"{tag}-dup") == 3
