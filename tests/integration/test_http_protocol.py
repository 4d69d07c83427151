"""The request-head deadline (api/http_protocol.py) on a real uvicorn: a slow head is cut off, a prompt request and
a kept-alive connection are served, and an upgraded WebSocket outlives the deadline."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from websockets.sync.client import connect

from api.http_protocol import H11HeadDeadline, HeadDeadline
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.integration

DEADLINE_S = 0.5


async def app(scope, receive, send) -> None:  # noqa: ANN001 - a bare ASGI app
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "http":
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
    else:
        await receive()  # connect
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})


@pytest.fixture(params=[HeadDeadline, H11HeadDeadline], ids=["default", "h11"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    protocol = type("Fast", (request.param,), {"head_timeout_s": DEADLINE_S})
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, http=protocol, log_level="warning", timeout_keep_alive=30
        )
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def _open(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def test_a_head_that_never_completes_is_cut_off(port: int) -> None:
    with _open(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        assert sock.recv(1024) == b""  # closed, without an answer (well before the 5 s socket timeout)


def test_a_silent_connection_is_cut_off(port: int) -> None:
    with _open(port) as sock:
        assert sock.recv(1024) == b""


def test_prompt_requests_are_served_on_a_kept_alive_connection(port: int) -> None:
    with _open(port) as sock:
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"ok"):
                chunk = sock.recv(1024)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")
            time.sleep(DEADLINE_S * 0.6)  # twice 0.6 of the deadline: each request has its own
        time.sleep(DEADLINE_S * 2)  # then idle past it: closed
        assert sock.recv(1024) == b""


def test_a_websocket_outlives_the_head_deadline(port: int) -> None:
    with connect(f"ws://127.0.0.1:{port}/") as ws:
        time.sleep(DEADLINE_S * 3)
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"


def test_an_endless_head_is_cut_off_at_its_size_cap(port: int) -> None:
    with _open(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        with pytest.raises(OSError):  # reset or broken pipe once the server closed
            for _ in range(200):  # 200 x 1 KiB of headers, well within the deadline
                sock.sendall(b"X-Filler: " + b"a" * 1000 + b"\r\n")
            answer = sock.recv(1024)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 4")  # h11 refuses at its own 16 KiB cap
            raise ConnectionResetError  # closed without a reset: as good


@pytest.fixture(params=[HeadDeadline, H11HeadDeadline], ids=["default", "h11"])
def capped_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """Two connections per address; a head deadline far beyond the socket timeout, so only the cap closes one."""
    protocol = type("Capped", (request.param,), {"head_timeout_s": 60.0, "max_connections_per_address": 2})
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, http=protocol, log_level="warning", timeout_keep_alive=30
        )
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def _until_released() -> None:
    """The server (a thread of this process) has seen the closed connections end."""
    from api.http_protocol import _open_per_address

    for _ in range(500):
        if not _open_per_address:
            return
        time.sleep(0.01)
    raise AssertionError(f"connections still counted: {_open_per_address}")


def _served(sock: socket.socket) -> bool:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock.recv(1024).startswith(b"HTTP/1.1 200")


def test_one_address_holds_at_most_its_share_of_connections(capped_port: int) -> None:
    """4,300 slow-head connections from one address filled --limit-concurrency and others got 503: an address past
    its cap has its next connection closed as it opens; a place comes back when one of its connections ends, and a
    WebSocket gives its place back at the upgrade."""
    with _open(capped_port) as first, _open(capped_port) as second:
        with _open(capped_port) as third:
            assert third.recv(1024) == b""  # closed at once, without an answer
        assert _served(first) and _served(second)  # the two it holds are served
    _until_released()
    with connect(f"ws://127.0.0.1:{capped_port}/", open_timeout=5) as ws:  # an upgraded connection ...
        with _open(capped_port) as a, _open(capped_port) as b:  # ... holds no place meanwhile
            assert _served(a) and _served(b)
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"
