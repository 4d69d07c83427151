"""A hostile client against a real server: unbreakable words, nested control tokens, giant digit strings, slow
bodies, hang-ups and connection floods get a 4xx or their audio, never a 5xx, and leave nothing running."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def hostile_server(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = {"TTS_BODY_TIMEOUT_S": "1", "TTS_MAX_TEXT_CHUNKS": "40", "TTS_SR_ENABLED": "false"}
    running = start_server(demo_model_dir, tmp_path_factory.mktemp("hostile") / "server.log", env)
    yield running
    stop_server(running)


def active_streams(server: RunningServer) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    line = next(line for line in text.splitlines() if line.startswith("veena3_tts_active_streams "))
    return float(line.split()[1])


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("a" * 25_000, {200, 413}),  # one unbreakable word: sliced, or refused for its chunk count
        ("1," * 12_500, {413}),  # normalises to far more chunks than allowed: 413 before any GPU work
        ("https://example.com/" + "p/" * 4_000, {200, 413}),
        ("hello <<|x|>|end_content|> there <|im_end|><tool_call>", {200}),
    ],
    ids=["aaaa", "digits", "url", "nested-control-tokens"],
)
def test_hostile_texts_never_get_a_5xx(hostile_server: RunningServer, text: str, accepted: set[int]) -> None:
    response = httpx.post(
        f"{hostile_server.base_url}/v1/tts/generate",
        json={"text": text, "max_tokens": 4, "stream": False},
        timeout=300,
    )
    assert response.status_code in accepted, response.text[:300]
    if response.status_code != 200:
        assert response.json()["error"]["code"] == "TEXT_TOO_LONG"


def test_a_slow_body_gets_408_and_frees_the_connection(hostile_server: RunningServer) -> None:
    host, port = hostile_server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/tts/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"text": '
        )
        data = b""
        while chunk := sock.recv(4096):  # the server answers without waiting for the rest, then closes
            data += chunk
        reply = data.decode(errors="replace")
    assert reply.startswith("HTTP/1.1 408") and "REQUEST_TIMEOUT" in reply


def test_a_connection_flood_leaves_nothing_running(hostile_server: RunningServer) -> None:
    base = hostile_server.base_url
    body = {"text": "A flood of clients that all hang up at once.", "stream": True}

    def hang_up() -> None:
        try:
            with (
                httpx.Client(timeout=30) as client,
                client.stream("POST", f"{base}/v1/tts/generate", json=body) as r,
            ):
                next(r.iter_raw())  # first audio, then leave
        except httpx.HTTPError:
            pass

    threads = [threading.Thread(target=hang_up) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    deadline = time.monotonic() + 15
    while active_streams(hostile_server) > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert active_streams(hostile_server) == 0
    assert (
        httpx.post(
            f"{base}/v1/tts/generate", json={"text": "Still serving.", "max_tokens": 5}, timeout=60
        ).status_code
        == 200
    )


def test_hanging_up_during_realtime_pacing_frees_the_slot(demo_model_dir: Path, tmp_path: Path) -> None:
    env = {
        "TTS_REALTIME_PACING": "true",
        "TTS_AUTH_ENABLED": "true",
        "TTS_API_KEYS": "pace-key",
        "TTS_MAX_CONCURRENT_STREAMS": "1",
        "TTS_SR_ENABLED": "false",
    }
    server = start_server(demo_model_dir, tmp_path / "server.log", env)
    headers = {"Authorization": "Bearer pace-key"}
    body = {
        "text": "Paced speech keeps running ahead of playback by about one second only. " * 3,
        "stream": True,
    }
    try:
        with httpx.Client(timeout=60) as client:
            with client.stream("POST", f"{server.base_url}/v1/tts/generate", json=body, headers=headers) as r:
                assert r.status_code == 200
                pieces = r.iter_raw()
                received = 0
                while received < 48_000:  # past the 1 s lead: the server is now sleeping between sends
                    received += len(next(pieces))
        deadline = time.monotonic() + 10
        while True:
            again = httpx.post(
                f"{server.base_url}/v1/tts/generate",
                json={"text": "Next.", "max_tokens": 5},
                headers=headers,
                timeout=60,
            )
            if again.status_code == 200:
                break
            assert again.json()["error"]["code"] == "TOO_MANY_CONCURRENT_REQUESTS"
            assert time.monotonic() < deadline, "the slot of the hung-up paced stream was never released"
            time.sleep(0.2)
        assert active_streams(server) == 0
    finally:
        stop_server(server)
