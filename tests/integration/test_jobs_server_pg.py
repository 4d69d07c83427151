"""The job routes through a real server (uvicorn subprocess) on PostgreSQL as deployed: keys and jobs in the
database, credits on.

- A fuzz of every job route's path and body fields and the upload part with NUL, `%00`, control characters, lone
  surrogates and huge values answers no 5xx, each refusal in the error envelope, and the kept-alive connection
  stays open.
- A 0-credit key stores nothing (403 INSUFFICIENT_CREDITS), nor a 10-credit key a job of 2,000 characters (refused
  at submission, not failed at its first chapter and kept); an unknown `[voice:NAME]` and a huge title are refused
  at submission.
- SIGTERM with a progress stream (SSE) open: the stream ends with a final `shutdown` event inside the graceful
  window, the server exits promptly and logs no traceback.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.access import PostgresKeyStore, hash_key
from tests.e2e.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.integration

BAD_STRINGS = [
    "a\x00b",
    "\x00",
    "x\x07y",
    "\ud800",
    "ok\udfff",
    "x" * 200_000,
]
BAD_PATHS = [
    "%00",
    "job_%00",
    "a%00b",
    "%ED%A0%80",
    "x" * 5000,
    "job_" + "0" * 32 + "%00",
    "%C0%AF",
    "..%2F..",
]
READS_PER_MINUTE = 200
# A job id's shape that exists nowhere: reaches the store.
UNKNOWN = "job_" + "f" * 32


def run(coro):
    return asyncio.run(coro)


def server_env(pg_dsn: str, root: Path) -> dict[str, str]:
    return {
        "TTS_AUTH_ENABLED": "true",
        "TTS_KEY_BACKEND": "postgres",
        "TTS_DATABASE_URL": pg_dsn,
        "TTS_CREDITS_ENABLED": "true",
        "TTS_JOBS_DIR": str(root / "jobs"),
        "TTS_REQUEST_LOG_SPOOL_DIR": str(root / "spool"),
        "TTS_RATE_LIMIT_PER_MINUTE": "100000",
        "TTS_JOBS_READS_PER_MINUTE": str(READS_PER_MINUTE),
    }


@pytest.fixture(scope="module")
def pg_server(
    pg_dsn: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("jobs-pg")
    server = start_server(demo_model_dir, root / "server.log", server_env(pg_dsn, root))
    yield server
    stop_server(server)


@pytest.fixture
def make_key(pg_dsn: str) -> Iterator[Callable[..., str]]:
    """Create a key in PostgreSQL (the raw key); its jobs are deleted after the test (the database is shared)."""
    made: list[str] = []

    def make(**fields) -> str:
        async def create() -> str:
            store = PostgresKeyStore(pg_dsn)
            try:
                raw, _ = await store.create_key("jobs-test", key_id=f"jobs-{uuid.uuid4().hex[:12]}", **fields)
            finally:
                await store.close()
            return raw

        made.append(run(create()))
        return made[-1]

    yield make

    async def drop() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(
                "DELETE FROM tts_jobs WHERE key_hash = ANY($1::text[])", [hash_key(k) for k in made]
            )
        finally:
            await conn.close()

    run(drop())


def _json_body(field: str, value: str) -> bytes:
    body = {"text": "Hello there.", field: value}
    return json.dumps(body).encode()  # ensure_ascii: a lone surrogate travels as \\ud800


def test_no_5xx_from_any_job_route_input(pg_server: RunningServer, make_key) -> None:
    key = make_key(
        credit_balance=1_000_000
    )  # pays for the 200,000-character text: the fuzz reaches the queue
    headers = {"Authorization": f"Bearer {key}"}
    answers: list[tuple[str, int]] = []
    with httpx.Client(base_url=pg_server.base_url, headers=headers, timeout=60) as client:

        def check(label: str, response: httpx.Response) -> None:
            answers.append((label, response.status_code))
            assert response.status_code < 500, (label, response.status_code, response.text[:300])
            if response.status_code >= 400:
                assert "error" in response.json(), (label, response.text[:300])

        for path in [*BAD_PATHS, UNKNOWN]:
            for method, suffix in [
                ("GET", ""),
                ("DELETE", ""),
                ("POST", "/resume"),
                ("GET", "/events"),
                ("GET", "/book"),
                ("GET", "/chapters/1"),
                ("GET", "/chapters/%00"),
                ("GET", "/chapters/99999999999999999999999"),
            ]:
                check(f"{method} {path[:20]}{suffix}", client.request(method, f"/v1/tts/jobs/{path}{suffix}"))
        for field in ("text", "title", "voice", "format", "book_format", "input_format"):
            for value in BAD_STRINGS:
                check(
                    f"json {field}",
                    client.post(
                        "/v1/tts/jobs",
                        content=_json_body(field, value),
                        headers={"Content-Type": "application/json"},
                    ),
                )
        for value in ("a\x00b", "x" * 100_000):
            check("json key", client.post("/v1/tts/jobs", json={"text": "Hi.", value: 1}))
            check(
                "lexicon",
                client.post(
                    "/v1/tts/jobs", json={"text": "Hi.", "lexicon": [{"text": value, "alias": value}]}
                ),
            )
            check(
                "locators",
                client.post(
                    "/v1/tts/jobs",
                    json={
                        "text": "Hi.",
                        "pronunciation_dictionary_locators": [{"pronunciation_dictionary_id": value}],
                    },
                ),
            )
        for number in ("sample_rate", "speed"):
            check(number, client.post("/v1/tts/jobs", json={"text": "Hi.", number: 10**400}))
        check("raw NUL body", client.post("/v1/tts/jobs", content=b'{"text": "a\x00"}'))
        check("invalid utf-8", client.post("/v1/tts/jobs", content=b'{"text": "\xed\xa0\x80"}'))
        for data in (
            b"Hello\x00there.",
            "Chapter \udc80".encode("utf-8", "surrogatepass"),
            b"\xff\xfe\x00\x00",
        ):
            check("upload", client.post("/v1/tts/jobs", files={"file": ("book.txt", data, "text/plain")}))
        check(
            "upload name", client.post("/v1/tts/jobs", files={"file": ("bo\x00ok.txt", b"Hi.", "text/plain")})
        )
        check(
            "form field",
            client.post("/v1/tts/jobs", data={"title": "T\x00"}, files={"file": ("b.txt", b"Hi.")}),
        )
        # The kept-alive connection is still the same one: no 500 made uvicorn close it.
        assert client.get("/v1/tts/jobs").status_code == 200
    assert len(answers) > 100
    assert all(status in (400, 404, 405, 413, 415, 422, 429) or status < 300 for _, status in answers), (
        answers
    )


def test_nothing_is_stored_for_free_or_unchecked(pg_server: RunningServer, make_key) -> None:
    broke = {"Authorization": f"Bearer {make_key(credit_balance=0)}"}
    refused = httpx.post(
        f"{pg_server.base_url}/v1/tts/jobs", json={"text": "Hello."}, headers=broke, timeout=30
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "INSUFFICIENT_CREDITS"
    assert httpx.get(f"{pg_server.base_url}/v1/tts/jobs", headers=broke, timeout=30).json()["jobs"] == []
    poor = {"Authorization": f"Bearer {make_key(credit_balance=10)}"}
    for body in (
        {"json": {"text": "Hello there. " * 154}},
        {"files": {"file": ("a.txt", b"Hello there. " * 154)}},
    ):
        short = httpx.post(f"{pg_server.base_url}/v1/tts/jobs", headers=poor, timeout=30, **body)
        assert short.status_code == 403, short.text
        error = short.json()["error"]
        assert error["code"] == "INSUFFICIENT_CREDITS" and "10" in error["message"], error
    assert httpx.get(f"{pg_server.base_url}/v1/tts/jobs", headers=poor, timeout=30).json()["jobs"] == []
    rich = {"Authorization": f"Bearer {make_key(credit_balance=10_000)}"}
    voice = httpx.post(
        f"{pg_server.base_url}/v1/tts/jobs",
        json={"text": "Hi. [voice:nobody-here] Bye."},
        headers=rich,
        timeout=30,
    )
    assert voice.status_code in (400, 404) and "nobody-here" in voice.json()["error"]["message"]
    title = httpx.post(
        f"{pg_server.base_url}/v1/tts/jobs",
        json={"text": "Hi.", "title": "T" * 501},
        headers=rich,
        timeout=30,
    )
    assert title.status_code == 400 and title.json()["error"]["param"] == "title"
    assert httpx.get(f"{pg_server.base_url}/v1/tts/jobs", headers=rich, timeout=30).json()["jobs"] == []


def test_job_reads_are_rate_limited_per_key(pg_server: RunningServer, make_key) -> None:
    headers = {"Authorization": f"Bearer {make_key(credit_balance=10)}"}
    with httpx.Client(base_url=pg_server.base_url, headers=headers, timeout=30) as client:
        codes = [client.get("/v1/tts/jobs").status_code for _ in range(READS_PER_MINUTE)]
        assert codes == [200] * READS_PER_MINUTE
        refused = client.get(f"/v1/tts/jobs/{UNKNOWN}")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
        assert "Retry-After" in refused.headers
    other = {"Authorization": f"Bearer {make_key(credit_balance=10)}"}
    assert httpx.get(f"{pg_server.base_url}/v1/tts/jobs", headers=other, timeout=30).status_code == 200


def test_sigterm_ends_an_open_progress_stream_with_a_final_event(
    pg_dsn: str, demo_model_dir: Path, tmp_path: Path, make_key
) -> None:
    server = start_server(demo_model_dir, tmp_path / "server.log", server_env(pg_dsn, tmp_path))
    try:
        headers = {"Authorization": f"Bearer {make_key(credit_balance=1_000_000)}"}
        text = "The boats came in at dawn and nobody was waiting on the quay. " * 40
        job = httpx.post(
            f"{server.base_url}/v1/tts/jobs", json={"text": text}, headers=headers, timeout=30
        ).json()
        events: list[str] = []
        with httpx.stream(
            "GET", f"{server.base_url}/v1/tts/jobs/{job['id']}/events", headers=headers, timeout=30
        ) as stream:
            lines = stream.iter_lines()
            for line in lines:
                if line.startswith("event: "):
                    events.append(line[7:])
                    break
            sent = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            for line in lines:
                if line.startswith("event: "):
                    events.append(line[7:])
            ended = time.monotonic() - sent
        assert events[0] == "progress" and events[-1] == "shutdown", events
        assert ended < 5.0, ended
        server.process.wait(timeout=15)
        exited = time.monotonic() - sent
        print(f"SIGTERM: final event after {ended:.2f} s, exit after {exited:.2f} s")
        assert exited < 9.0, exited  # inside the 10 s graceful window, with room
        log = server.log_text()
        assert "Traceback" not in log and "CancelledError" not in log, log[-3000:]
    finally:
        stop_server(server)
