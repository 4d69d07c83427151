"""Nothing secret reaches the server's log: no API key, no key hash, no admin key, no request text.

A real server (uvicorn subprocess, DEBUG logging, auth on) serves requests that succeed, stream, fail
validation, use wrong keys and disconnect midway, all with a distinctive text; then its whole captured output
(stdout and stderr) is searched. Logs name a key only by its key_id and a text only by its length.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.access import derive_key_id, generate_api_key, hash_key
from tests.e2e.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e

API_KEY = generate_api_key()
WRONG_KEY = generate_api_key()
ADMIN_KEY = "admin-" + generate_api_key()
# Words that appear nowhere else in the code base or in library output.
TEXT = "Zanzibar quokkas juggle marmalade beside the Wrexham lighthouse tonight."
MARKERS = ("Zanzibar", "quokkas", "marmalade", "Wrexham")


@pytest.fixture(scope="module")
def logged_server(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = {
        "TTS_AUTH_ENABLED": "true",
        "TTS_API_KEYS": API_KEY,
        "TTS_ADMIN_KEY": ADMIN_KEY,
        "TTS_LOG_LEVEL": "DEBUG",
    }
    server = start_server(demo_model_dir, tmp_path_factory.mktemp("secrets") / "server.log", env)
    yield server
    stop_server(server)


def exercise(server: RunningServer) -> dict[str, int]:
    """Every kind of request that carries the key or the text; returns the status codes seen."""
    url = f"{server.base_url}/v1/tts/generate"
    bearer = {"Authorization": f"Bearer {API_KEY}"}
    seen: dict[str, int] = {}
    with httpx.Client(timeout=120) as client:
        seen["complete"] = client.post(
            url, json={"text": TEXT, "speaker": "default"}, headers=bearer
        ).status_code
        seen["stream"] = client.post(
            url, json={"text": TEXT, "stream": True, "format": "mp3"}, headers={"X-API-Key": API_KEY}
        ).status_code
        seen["openai"] = client.post(
            f"{server.base_url}/v1/audio/speech",
            json={"model": "tts-1", "input": TEXT, "voice": "default", "response_format": "pcm"},
            headers=bearer,
        ).status_code
        seen["wrong_key"] = client.post(
            url, json={"text": TEXT}, headers={"Authorization": f"Bearer {WRONG_KEY}"}
        ).status_code
        seen["wrong_x_api_key"] = client.post(
            url, json={"text": TEXT}, headers={"X-API-Key": WRONG_KEY}
        ).status_code
        seen["bad_field"] = client.post(
            url, json={"text": TEXT, "temperature": "warm", "speaker": "default"}, headers=bearer
        ).status_code
        seen["extra_field"] = client.post(url, json={"text": TEXT, "mood": TEXT}, headers=bearer).status_code
        seen["control_char"] = client.post(url, json={"text": TEXT + "\x07"}, headers=bearer).status_code
        seen["unknown_voice"] = client.post(
            url, json={"text": TEXT, "speaker": "no-such-voice"}, headers=bearer
        ).status_code
        seen["not_json"] = client.post(
            url, content=TEXT.encode(), headers={**bearer, "Content-Type": "application/json"}
        ).status_code
        seen["admin"] = client.get(
            f"{server.base_url}/v1/tts/debug/stats", headers={"X-Admin-Key": ADMIN_KEY}
        ).status_code
        seen["wrong_admin"] = client.get(
            f"{server.base_url}/v1/tts/debug/stats", headers={"X-Admin-Key": WRONG_KEY}
        ).status_code
        # A client that leaves after the first audio bytes.
        long_text = " ".join([TEXT] * 4)
        with client.stream("POST", url, json={"text": long_text, "stream": True}, headers=bearer) as response:
            seen["disconnect"] = response.status_code
            next(response.iter_bytes())
    return seen


def test_logs_hold_no_key_hash_admin_key_or_text(logged_server: RunningServer) -> None:
    seen = exercise(logged_server)
    assert seen == {
        "complete": 200,
        "stream": 200,
        "openai": 200,
        "wrong_key": 401,
        "wrong_x_api_key": 401,
        "bad_field": 400,
        "extra_field": 200,  # an unknown field is ignored and named in X-Ignored-Fields
        "control_char": 400,
        "unknown_voice": 400,
        "not_json": 400,
        "admin": 200,
        "wrong_admin": 403,
        "disconnect": 200,
    }
    # A request after the disconnect makes sure that request's accounting has run before the server stops.
    health = httpx.get(f"{logged_server.base_url}/v1/tts/health", timeout=10)
    assert health.status_code == 200
    stop_server(logged_server)  # flush everything the process had to say (the fixture's stop is then a no-op)
    log = logged_server.log_text()

    secrets = {
        "API key": API_KEY,
        "API key sha256": hash_key(API_KEY),
        "wrong key": WRONG_KEY,
        "wrong key sha256": hash_key(WRONG_KEY),
        "admin key": ADMIN_KEY,
        "admin key sha256": hash_key(ADMIN_KEY),
        "text": TEXT,
        **{f"text word {word!r}": word for word in MARKERS},
    }
    leaked = [name for name, value in secrets.items() if value.lower() in log.lower()]
    assert not leaked, f"found in the server log: {leaked}"

    # The log did record these requests: by key_id and text length, with the lifecycle events.
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    received = [e for e in events if e.get("event") == "request_received"]
    assert len(received) >= 4
    assert {e["text_length"] for e in received} >= {len(TEXT)}
    assert {e["key_id"] for e in received} == {derive_key_id(API_KEY)}
    assert any(e.get("event") == "client_disconnected" for e in events)
    assert any(e.get("message") == "auth refused" for e in events)
