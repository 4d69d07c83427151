"""A Wyoming connection as the one connection loop's transport (api/protocols/wyoming/handler.py): the loop's idle
deadline may cut a receive short, never an event half read."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from api.protocols.wyoming.handler import EventTransport
from api.sockets.loop import Incoming


class _Sink:
    """The writer side the transport is built with; these receives never write."""

    def get_extra_info(self, _name: str) -> Any:
        return None


def _transport(reader: asyncio.StreamReader, max_bytes: int = 1 << 16) -> EventTransport:
    return EventTransport(reader, _Sink(), None, 16000, max_bytes)  # type: ignore[arg-type]


def _event(kind: str, data: dict[str, Any]) -> bytes:
    body = json.dumps(data).encode()
    return json.dumps({"type": kind, "data_length": len(body)}).encode() + b"\n" + body


async def test_an_event_half_read_when_the_deadline_passes_is_taken_whole_by_the_next_receive() -> None:
    reader = asyncio.StreamReader()
    transport = _transport(reader)
    wire = _event("synthesize", {"text": "Hello there."})
    reader.feed_data(wire[:10])
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await transport.receive()
    reader.feed_data(wire[10:])
    message = await asyncio.wait_for(transport.receive(), 2)
    assert isinstance(message, Incoming)
    assert message.payload.type == "synthesize" and message.payload.data == {"text": "Hello there."}
    assert message.size == len("Hello there.")


async def test_the_client_side_ends_are_words() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(json.dumps({"type": "synthesize", "data_length": 10_000}).encode() + b"\n")
    assert await _transport(reader, max_bytes=100).receive() == "too_large"
    closed = asyncio.StreamReader()
    closed.feed_eof()
    assert await _transport(closed).receive() == "disconnect"
