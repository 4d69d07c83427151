"""Logs that trace, on a real server: every HTTP request leaves one `http_request` line, refused ones included, with
its status, error code, key id and the client's X-Request-ID (echoed too); a job chapter's lines carry its own
request id."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningServer, start_server, stop_server

KEY = "trace-key-0123456789"


@pytest.fixture(scope="module")
def server(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("trace")
    env = {
        "TTS_AUTH_ENABLED": "true",
        "TTS_API_KEYS": KEY,
        "TTS_LOG_JSON": "true",
        "TTS_WARMUP": "false",
        "TTS_JOBS_DIR": str(root / "jobs"),
        "TTS_REQUEST_LOG_SPOOL_DIR": str(root / "spool"),
    }
    running = start_server(demo_model_dir, root / "server.log", env)
    yield running
    stop_server(running)


def log_lines(server: RunningServer) -> list[dict]:
    lines = []
    for line in server.log_text().splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def access_line(server: RunningServer, client_id: str) -> dict:
    deadline = time.monotonic() + 10
    while True:
        found = [
            x
            for x in log_lines(server)
            if x.get("message") == "http_request" and x.get("client_request_id") == client_id
        ]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.1)


def test_refused_and_served_requests_each_leave_one_line_with_the_clients_id(server: RunningServer) -> None:
    base = server.base_url
    wrong = httpx.post(
        f"{base}/v1/tts/generate",
        headers={"Authorization": "Bearer nope", "X-Request-ID": "client-wrong-key"},
        json={"text": "hi"},
    )
    assert wrong.status_code == 401 and wrong.headers["x-request-id"] == "client-wrong-key"
    line = access_line(server, "client-wrong-key")
    assert (line["status"], line["error_code"], line["key_id"]) == (401, "INVALID_API_KEY", None)
    assert line["route"] == "/v1/tts/generate" and line["request_id"] == wrong.headers["x-server-request-id"]

    bad = httpx.post(
        f"{base}/v1/tts/generate",
        headers={"Authorization": f"Bearer {KEY}", "X-Request-ID": "client-bad-body"},
        json={"text": "hi", "format": "nonsense"},
    )
    assert bad.status_code in (400, 422)
    line = access_line(server, "client-bad-body")
    assert line["status"] == bad.status_code and line["error_code"] == bad.json()["error"]["code"]
    assert line["key_id"] and line["key_id"].startswith("key_")

    good = httpx.post(
        f"{base}/v1/tts/generate",
        headers={"Authorization": f"Bearer {KEY}", "X-Request-ID": "client-good"},
        json={"text": "Hello there.", "stream": False},
        timeout=120,
    )
    assert good.status_code == 200
    line = access_line(server, "client-good")
    assert (line["status"], line["error_code"]) == (200, None)
    # The request's lifecycle lines carry the client's id beside the server's.
    lifecycle = [x for x in log_lines(server) if x.get("request_id") == good.headers["x-server-request-id"]]
    assert any(x.get("event") == "request_completed" for x in lifecycle)
    assert all(x.get("client_request_id") == "client-good" for x in lifecycle)


def test_a_job_chapter_logs_with_its_own_request_id(server: RunningServer) -> None:
    base = server.base_url
    headers = {"Authorization": f"Bearer {KEY}"}
    job = httpx.post(
        f"{base}/v1/tts/jobs", headers=headers, json={"text": "One short chapter to read."}, timeout=30
    )
    assert job.status_code in (200, 201, 202), job.text
    job_id = job.json()["id"]
    deadline = time.monotonic() + 240
    while httpx.get(f"{base}/v1/tts/jobs/{job_id}", headers=headers).json()["status"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    chapter = [x for x in log_lines(server) if str(x.get("request_id") or "").startswith(f"job-{job_id}-")]
    events = {x.get("event") for x in chapter}
    assert {"request_received", "request_completed"} <= events, events
