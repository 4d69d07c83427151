"""kill -9 of a real server with a long stream in flight, just after answering short requests: after a restart every
admitted request is in `tts_requests` exactly once, the cut stream marked `interrupted` and charged nothing.

    export $(scripts/start_services env)
    .venv/bin/python -m pytest tests/integration/test_kill9_request_log.py -q

Before intent records, the stream had no row at all and the answered requests' rows could be lost
(their record was spooled after the response). PostgreSQL stays up throughout.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import start_server, stop_server

pytestmark = pytest.mark.integration

LONG_TEXT = " ".join(
    f"This is sentence number {i} of a long story that keeps the stream busy." for i in range(60)
)


def rows(dsn: str, tag: str) -> list[asyncpg.Record]:
    async def query() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return await conn.fetch(
                "SELECT request_id, client_request_id, status, credits_charged, text_length, "
                "audio_duration_seconds FROM tts_requests WHERE client_request_id LIKE $1",
                f"{tag}-%",
            )
        finally:
            await conn.close()

    return asyncio.run(query())


def test_kill9_mid_stream_leaves_exactly_one_row_per_request(
    pg_dsn: str, demo_model_dir: Path, tmp_path: Path
) -> None:
    tag = f"kill9-{uuid.uuid4().hex[:10]}"
    env = {
        "TTS_REQUEST_LOG_SINK": "postgres",
        "TTS_DATABASE_URL": pg_dsn,
        "TTS_REQUEST_LOG_FLUSH_S": "0.2",
        "TTS_REQUEST_LOG_SPOOL_DIR": str(tmp_path / "spool"),
    }
    first = start_server(demo_model_dir, tmp_path / "first.log", env)
    streaming = threading.Event()
    stream_ids: list[str] = []

    def long_stream() -> None:
        body = {"text": LONG_TEXT, "speaker": "fixed", "stream": True, "format": "pcm"}
        try:
            with httpx.stream(
                "POST",
                f"{first.base_url}/v1/tts/generate",
                json=body,
                timeout=120,
                headers={"X-Request-ID": f"{tag}-stream"},
            ) as response:
                stream_ids.append(response.headers.get("X-Server-Request-ID", ""))
                for chunk in response.iter_bytes():
                    if chunk:
                        streaming.set()
                        time.sleep(0.2)  # a slow listener: the stream is still running at the kill
        except httpx.HTTPError:
            pass  # the server was killed under it
        finally:
            streaming.set()

    reader = threading.Thread(target=long_stream, daemon=True)
    try:
        reader.start()
        assert streaming.wait(120)
        with httpx.Client(timeout=60) as client:
            for i in range(4):
                r = client.post(
                    f"{first.base_url}/v1/tts/generate",
                    headers={"X-Request-ID": f"{tag}-{i}"},
                    json={"text": "Hi.", "speaker": "fixed", "format": "wav"},
                )
                assert r.status_code == 200
    finally:
        first.process.kill()  # SIGKILL right after the last answer: no shutdown code runs
        first.process.wait()
        reader.join(10)
    assert stream_ids and stream_ids[0]

    second = start_server(demo_model_dir, tmp_path / "second.log", env)  # adopts the killed server's spool
    try:
        deadline = time.monotonic() + 60
        found: list[asyncpg.Record] = []
        while time.monotonic() < deadline:
            found = rows(pg_dsn, tag)
            if len(found) >= 5:
                break
            time.sleep(0.5)
        time.sleep(1.0)  # any duplicate would have arrived by now
        found = rows(pg_dsn, tag)
    finally:
        stop_server(second)
    by_client = {}
    for row in found:
        by_client.setdefault(row["client_request_id"], []).append(row)
    assert sorted(by_client) == sorted([f"{tag}-stream"] + [f"{tag}-{i}" for i in range(4)])
    assert all(len(v) == 1 for v in by_client.values()), "a request has more than one row"
    stream_row = by_client[f"{tag}-stream"][0]
    assert stream_row["request_id"] == stream_ids[0]
    assert stream_row["status"] == "interrupted" and stream_row["credits_charged"] == 0
    # Its audio had reached the client before the kill: the row says what was delivered (the last progress note).
    assert stream_row["audio_duration_seconds"] > 0 and stream_row["text_length"] > 0
    assert all(by_client[f"{tag}-{i}"][0]["status"] == "completed" for i in range(4))


def test_sigterm_beyond_the_graceful_window_marks_cut_streams_interrupted_once(
    pg_dsn: str, demo_model_dir: Path, tmp_path: Path
) -> None:
    """SIGTERM with streams longer than the graceful window left 0 of 6 rows, each charged as a
    client hang-up. Now each cut stream settles as `interrupted` (refunded) before the spool closes, and after a
    restart has exactly one row."""
    tag = f"term-{uuid.uuid4().hex[:10]}"
    env = {
        "TTS_REQUEST_LOG_SINK": "postgres",
        "TTS_DATABASE_URL": pg_dsn,
        "TTS_REQUEST_LOG_FLUSH_S": "0.2",
        "TTS_REQUEST_LOG_SPOOL_DIR": str(tmp_path / "spool"),
        "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN": "1",
    }
    first = start_server(demo_model_dir, tmp_path / "first.log", env)
    streams = 3
    started = threading.Semaphore(0)

    def long_stream(i: int) -> None:
        body = {"text": LONG_TEXT, "speaker": "fixed", "stream": True, "format": "pcm"}
        got = False
        try:
            with httpx.stream(
                "POST",
                f"{first.base_url}/v1/tts/generate",
                json=body,
                timeout=120,
                headers={"X-Request-ID": f"{tag}-{i}"},
            ) as response:
                for chunk in response.iter_bytes():
                    if chunk and not got:
                        got = True
                        started.release()
                    time.sleep(0.2)
        except httpx.HTTPError:
            pass
        finally:
            if not got:
                started.release()

    readers = [threading.Thread(target=long_stream, args=(i,), daemon=True) for i in range(streams)]
    try:
        for reader in readers:
            reader.start()
        for _ in range(streams):
            assert started.acquire(timeout=120)
    finally:
        first.process.terminate()  # SIGTERM: the streams outlive the 1 s graceful window
        first.process.wait(60)
        for reader in readers:
            reader.join(10)
    log = first.log_text()
    assert "timeout graceful shutdown exceeded" in log

    second = start_server(demo_model_dir, tmp_path / "second.log", env)
    try:
        deadline = time.monotonic() + 60
        found: list[asyncpg.Record] = []
        while time.monotonic() < deadline and len(found) < streams:
            found = rows(pg_dsn, tag)
            time.sleep(0.5)
        time.sleep(1.0)
        found = rows(pg_dsn, tag)
    finally:
        stop_server(second)
    assert sorted(r["client_request_id"] for r in found) == [f"{tag}-{i}" for i in range(streams)]
    assert {r["status"] for r in found} == {"interrupted"} and {r["credits_charged"] for r in found} == {0}
    assert "request_interrupted" in log  # settled by the first process itself, not only recovered
