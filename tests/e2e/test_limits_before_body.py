"""Limits before bodies, against a real uvicorn server (issue 98): on the upload routes a key's concurrency and
per-minute rate are checked from the headers, so a key over them is answered at once and holds no body. Before, the
body middleware read every upload whole (up to 50 MB) before the route looked at the limits: 64 uploads of 48 MB at
once from one key took the server from 1.2 to 3.1 GB, though 60 were refused."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.e2e.conftest import RunningServer, start_server, stop_server

HOLDER, COUNTED, FLOODER = "limits-holder-key", "limits-counted-key", "limits-flooder-key"
CONCURRENT, PER_MINUTE = 2, 8
SIZE = 19 * 2**20


@pytest.fixture(scope="module")
def server(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        demo_model_dir,
        tmp_path_factory.mktemp("limits") / "server.log",
        {
            "TTS_AUTH_ENABLED": "true",
            "TTS_API_KEYS": f"{HOLDER},{COUNTED},{FLOODER}",
            "TTS_MAX_CONCURRENT_STREAMS": str(CONCURRENT),
            "TTS_RATE_LIMIT_PER_MINUTE": str(PER_MINUTE),
            "TTS_BODY_TIMEOUT_S": "20",
            "TTS_VOICE_DIR": str(tmp_path_factory.mktemp("voices")),
        },
    )
    try:
        yield running
    finally:
        stop_server(running)


def _open(server: RunningServer, key: str, path: str, size: int) -> socket.socket:
    """A connection that sent an upload's request line and headers, and no body yet."""
    url = urlparse(server.base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    sock.sendall(
        (
            f"POST {path} HTTP/1.1\r\nHost: {url.hostname}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {size}\r\n\r\n"
        ).encode()
    )
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict]:
    answer = b""
    while piece := sock.recv(65536):  # every refusal here ends with Connection: close
        answer += piece
    sock.close()
    return int(answer.split(b" ", 2)[1]), json.loads(answer.split(b"\r\n\r\n", 1)[1] or b"{}")


def _small(server: RunningServer, key: str, path: str) -> tuple[int, dict]:
    """A whole upload of an empty form: refused by the route (400/422) when the limits let it through."""
    body = b"--x--\r\n"
    sock = _open(server, key, path, len(body))
    sock.sendall(body)
    return _answer(sock)


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("path", ["/v1/tts/jobs", "/v1/audio/voices"])
def test_a_key_at_its_concurrency_is_refused_before_its_body(server: RunningServer, path: str) -> None:
    held = [_open(server, HOLDER, path, SIZE) for _ in range(CONCURRENT)]
    try:
        time.sleep(0.5)  # both hold their slots, waiting for bodies
        started = time.monotonic()
        status, body = _answer(_open(server, HOLDER, path, SIZE))
        assert (status, body["error"]["code"]) == (429, "TOO_MANY_CONCURRENT_REQUESTS")
        assert time.monotonic() - started < 5  # answered from the headers, not after a body or its deadline
    finally:
        for sock in held:
            sock.close()
    # The held uploads went away: their slots came back with them.
    deadline = time.monotonic() + 10
    while True:
        status, body = _small(server, HOLDER, path)
        if status != 429 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert status in (400, 422), body


def test_a_key_over_its_rate_is_refused_before_its_body(server: RunningServer) -> None:
    for _ in range(PER_MINUTE):
        status, _ = _small(server, COUNTED, "/v1/audio/voices")
        assert status != 429
    started = time.monotonic()
    status, body = _answer(_open(server, COUNTED, "/v1/audio/voices", SIZE))
    assert (status, body["error"]["code"]) == (429, "RATE_LIMIT_EXCEEDED")
    assert time.monotonic() - started < 5


def test_uploads_refused_for_their_limits_are_not_buffered(server: RunningServer) -> None:
    """24 uploads of 19 MiB at once from one key allowed 2: the server's memory grows by about two bodies, not 24."""
    payload = b"\0" * SIZE
    before = _rss_bytes(server.process.pid)
    peak = before
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes(server.process.pid))
            time.sleep(0.02)

    statuses: list[int] = []

    def upload() -> None:
        sock = _open(server, FLOODER, "/v1/tts/jobs", SIZE)
        try:
            sock.sendall(payload)
        except OSError:
            pass  # refused and closed while sending: what a refused upload should see
        try:
            statuses.append(_answer(sock)[0])
        except (OSError, ValueError, IndexError):
            statuses.append(0)

    watcher = threading.Thread(target=watch)
    watcher.start()
    senders = [threading.Thread(target=upload) for _ in range(24)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(120)
    done.set()
    watcher.join()
    assert statuses.count(429) >= 24 - CONCURRENT - 4, statuses  # a few may come after the first two ended
    assert peak - before < 8 * SIZE, f"grew {(peak - before) / 2**20:.0f} MiB"
