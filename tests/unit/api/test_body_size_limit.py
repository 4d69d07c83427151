"""The body cap answers a readable 413: a body over its cap is read to its end (within the drain allowance) before
the refusal, so the server's close resets nothing the client is still sending; a client waiting for 100 Continue is
refused before it sends anything. Order of events only, no clocks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from api.middleware import MAX_DRAIN_BYTES, BodySizeLimitMiddleware

CAP = 1000


class Wire:
    """A client sending its body in `pieces`, and a log of what the server did in which order."""

    def __init__(self, pieces: list[bytes | None]) -> None:  # None: the client goes away
        self.pieces = list(pieces)
        self.events: list[str] = []

    async def receive(self) -> dict[str, Any]:
        if not self.pieces:
            self.events.append("waited")
            return {"type": "http.disconnect"}
        body = self.pieces.pop(0)
        if body is None:
            self.events.append("gone")
            return {"type": "http.disconnect"}
        self.events.append(f"read {len(body)}")
        return {"type": "http.request", "body": body, "more_body": bool(self.pieces)}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.events.append(f"status {message['status']}")
        else:
            self.events.append(json.loads(message["body"])["error"]["code"])


async def _app(scope: dict, receive: Any, send: Any) -> None:
    raise AssertionError("the app must not see a body over its cap")


def _serve(wire: Wire, headers: list[tuple[bytes, bytes]]) -> list[str]:
    middleware = BodySizeLimitMiddleware(_app, max_bytes=CAP)
    scope = {"type": "http", "method": "POST", "path": "/v1/tts/generate", "headers": headers}
    asyncio.run(middleware(scope, wire.receive, wire.send))
    return wire.events


def test_a_declared_oversize_body_is_read_to_its_end_before_the_413() -> None:
    wire = Wire([b"x" * 700] * 3)
    events = _serve(wire, [(b"content-length", b"2100")])
    assert events == ["read 700", "read 700", "read 700", "status 413", "PAYLOAD_TOO_LARGE"]


def test_a_chunked_body_past_its_cap_is_read_to_its_end_before_the_413() -> None:
    wire = Wire([b"x" * 600] * 4)
    events = _serve(wire, [(b"transfer-encoding", b"chunked")])
    assert events == ["read 600"] * 4 + ["status 413", "PAYLOAD_TOO_LARGE"]


def test_a_client_waiting_for_100_continue_is_refused_before_it_sends() -> None:
    wire = Wire([b"x" * 700] * 3)
    events = _serve(wire, [(b"content-length", b"2100"), (b"expect", b"100-continue")])
    assert events == ["status 413", "PAYLOAD_TOO_LARGE"]


def test_a_body_past_the_drain_allowance_is_refused_without_reading_it() -> None:
    wire = Wire([b"x" * 700] * 3)
    events = _serve(wire, [(b"content-length", str(CAP + MAX_DRAIN_BYTES + 1).encode())])
    assert events == ["status 413", "PAYLOAD_TOO_LARGE"]


def test_reading_stops_at_the_drain_allowance() -> None:
    piece = b"x" * (MAX_DRAIN_BYTES // 4)
    wire = Wire([piece] * 10)
    events = _serve(wire, [(b"transfer-encoding", b"chunked")])
    assert events.count(f"read {len(piece)}") == 5 and events[-2:] == ["status 413", "PAYLOAD_TOO_LARGE"]


def test_a_client_gone_while_its_body_is_drained_gets_no_answer() -> None:
    wire = Wire([b"x" * 700, None])
    events = _serve(wire, [(b"content-length", b"2100")])
    assert events == ["read 700", "gone"]
