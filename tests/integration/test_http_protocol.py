"""The request-head deadline (api/http_protocol.py) on a real uvicorn: a slow head is cut off, a prompt request and
a kept-alive connection are served, and an upgraded WebSocket outlives the deadline."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import uvicorn
from websockets.sync.client import connect

from api.http_protocol import H11HeadDeadline, HeadDeadline
from services.access import FailedAuthThrottle
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


class _GatedApp:
    """The bare app with what the upgrade check reads on a service app's state: an address throttled for wrong
    keys (one failure allowed a minute, one recorded) and one real key. Counts the WebSocket scopes it is given."""

    def __init__(self) -> None:
        throttle = FailedAuthThrottle(limit=1)
        throttle.failed("127.0.0.1", "wrong")
        access = SimpleNamespace(
            auth_throttle=throttle, authenticator=SimpleNamespace(is_known=lambda key: key == "real")
        )
        self.state = SimpleNamespace(
            services=SimpleNamespace(access=access), socket_auth_paths={"/v1/tts/ws"}
        )
        self.sockets = 0

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - a bare ASGI app
        self.sockets += scope["type"] == "websocket"
        await app(scope, receive, send)


@pytest.fixture(params=[HeadDeadline, H11HeadDeadline], ids=["default", "h11"])
def gated(request: pytest.FixtureRequest) -> Iterator[tuple[int, _GatedApp]]:
    gated_app = _GatedApp()
    protocol = type("Gated", (request.param,), {"refusal_hold_s": 0.05})
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(gated_app, host="127.0.0.1", port=port, http=protocol, log_level="warning")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield port, gated_app
    server.should_exit = True
    thread.join(timeout=10)


def _upgrade(port: int, target: str, *headers: str) -> bytes:
    with _open(port) as sock:
        sock.sendall(
            (
                f"GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                + "".join(f"{h}\r\n" for h in headers)
                + "\r\n"
            ).encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer or answer.startswith(b"HTTP/1.1 4"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer


def test_a_throttled_addresss_upgrade_is_refused_before_the_app(gated: tuple[int, _GatedApp]) -> None:
    """An upgrade the app's first layer would refuse (api/socket_guard.py handshake_refusal) gets its 429 from the
    protocol and never reaches the app; a real key, another path and a forwarded client still do."""
    port, gated_app = gated
    for target, header in (("/v1/tts/ws?api_key=wrong", "X-Trace: 1"), ("/v1/tts/ws", "X-API-Key: other")):
        answer = _upgrade(port, target, header)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 429"), answer
        assert b"\r\nretry-after: " in head.lower() and b"connection: close" in head.lower()
        assert json.loads(body)["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert gated_app.sockets == 0
    assert _upgrade(port, "/v1/tts/ws", "Authorization: Bearer real").startswith(b"HTTP/1.1 101")
    assert _upgrade(port, "/elsewhere?api_key=wrong").startswith(b"HTTP/1.1 101")
    assert _upgrade(port, "/v1/tts/ws?api_key=wrong", "X-Forwarded-For: 10.0.0.9").startswith(b"HTTP/1.1 101")
    assert gated_app.sockets == 3
