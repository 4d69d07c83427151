"""The Wyoming server's caps (api/protocols/wyoming/server.py), with the `wyoming` package's own client on a real server
(uvicorn in a thread): a flood of empty `synthesize-chunk` events is cut off with a clear reason, and a few hundred
connections are capped (the extra ones told why and closed at once) while HTTP health keeps answering."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event, async_write_events
from wyoming.tts import SynthesizeChunk, SynthesizeStart

from api.protocols.wyoming.server import FLOOD_COOLDOWN_S
from tests.e2e.conftest import wyoming_server

pytestmark = pytest.mark.e2e

CAP = 24  # Wyoming connections the server holds
BURST = 200  # events a connection may send at once
CONNECTIONS = 300


@dataclass
class Live:
    app: FastAPI
    port: int
    base_url: str

    def client(self, address: str = "127.0.0.1") -> AsyncTcpClient:
        return FromAddress(address, "127.0.0.1", self.port)


class FromAddress(AsyncTcpClient):
    """The package's client, connecting from a given local address (every 127.x address is loopback on Linux), so
    many clients fill the server's cap without one address going over its share."""

    def __init__(self, address: str, host: str, port: int) -> None:
        super().__init__(host, port)
        self.address = address

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, local_addr=(self.address, 0)
        )


@pytest.fixture(scope="module")
def live(demo_model_dir: Path) -> Iterator[Live]:
    with wyoming_server(
        demo_model_dir,
        "uvicorn-wyoming-limits",
        wyoming_max_connections=CAP,
        ws_messages_per_s=20,
        ws_message_burst=BURST,
        wyoming_admission_wait_s=0,  # over the cap: refused at once (test_wyoming_addresses.py waits)
    ) as server:
        yield Live(server.app, server.port, server.base_url)


async def _events_until_closed(client: AsyncTcpClient, timeout_s: float = 10) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(timeout_s):
        while (event := await client.read_event()) is not None:
            events.append(event)
    return events


async def _settled(live: Live, timeout_s: float = 5.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while live.app.state.wyoming.connections:
        assert time.perf_counter() < deadline, "connections still open"
        await asyncio.sleep(0.02)


async def test_a_flood_of_empty_chunks_is_cut_off_with_a_reason(live: Live) -> None:
    client = live.client()
    await client.connect()
    try:
        await client.write_event(SynthesizeStart().event())
        # Past the burst in one write, all of it read by the server before it closes (so the close is no reset
        # that would lose its answer here); the events are the package's own.
        flood = [SynthesizeChunk(text="").event() for _ in range(BURST + 100)]
        await async_write_events(flood, client._writer)  # noqa: SLF001 - one write, not one drain per event
        events = await _events_until_closed(client)
    finally:
        await client.disconnect()
    errors = [Error.from_event(e) for e in events if Error.is_type(e.type)]
    assert [e.code for e in errors] == ["RATE_LIMIT_EXCEEDED"], events
    assert "messages per second" in errors[0].text
    assert events[-1].type == "synthesize-stopped"  # a stream is told it ended, then the connection closes
    await _settled(live)
    # An attacker reconnects: the flooding address is refused at once, for FLOOD_COOLDOWN_S, with no fresh burst.
    again = live.client()
    await again.connect()
    try:
        events = await _events_until_closed(again)
    finally:
        await again.disconnect()
    assert [Error.from_event(e).code for e in events] == ["RATE_LIMIT_EXCEEDED"], events
    assert "connect again in" in Error.from_event(events[0]).text
    await asyncio.sleep(FLOOD_COOLDOWN_S)  # then it may connect again (the next test does)


async def test_connections_over_the_cap_are_refused_and_health_answers(live: Live) -> None:
    # From 30 addresses: each holds fewer than its share (half the cap), so the cap itself is what refuses.
    clients = [live.client(f"127.0.1.{i % 30 + 1}") for i in range(CONNECTIONS)]
    try:
        for client in clients:
            await client.connect()
        async with httpx.AsyncClient(base_url=live.base_url, timeout=5) as http:
            started = time.perf_counter()
            health = await http.get("/v1/tts/health")
            assert health.status_code == 200 and time.perf_counter() - started < 2
        refused = await asyncio.gather(*(_events_until_closed(c) for c in clients[CAP:]))
        for events in refused:  # each told why, then closed (not held open)
            assert [Error.from_event(e).code for e in events] == ["TOO_MANY_CONCURRENT_REQUESTS"]
        assert len(live.app.state.wyoming.connections) == CAP
    finally:
        for client in clients:
            await client.disconnect()
    await _settled(live)
    client = live.client()  # the cap frees as connections close
    await client.connect()
    try:
        await client.write_event(SynthesizeStart().event())
        await asyncio.sleep(0.3)
        assert len(live.app.state.wyoming.connections) == 1
    finally:
        await client.disconnect()
