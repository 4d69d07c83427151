"""Wyoming connections shared per address (api/protocols/wyoming/server.py), as an attacker takes them: on a real
server (uvicorn in a thread), raw TCP connections from several loopback addresses (127.0.0.x, all local on Linux)
speaking the `wyoming` package's own events. One address holding its share cannot keep another address out; idle
connections from many addresses holding the whole cap are closed after the contended idle timeout once a
connection waits, and that connection is served; nothing is left held."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from wyoming.audio import AudioChunk, AudioStart
from wyoming.error import Error
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize

from tests.e2e.conftest import wyoming_server

pytestmark = pytest.mark.e2e

CAP = 8  # Wyoming connections the server holds
SHARE = 4  # of which one address may hold
CONTENDED_IDLE_S = 1.0  # an idle connection's life while another waits (the normal idle timeout is 60 s)
IDLE_S = 60


@dataclass
class Live:
    app: FastAPI
    port: int


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, event: Event) -> None:
        await async_write_event(event, self.writer)

    async def read(self, timeout_s: float = 10) -> Event | None:
        async with asyncio.timeout(timeout_s):
            return await async_read_event(self.reader)

    async def until_closed(self, timeout_s: float = 10) -> list[Event]:
        events: list[Event] = []
        while (event := await self.read(timeout_s)) is not None:
            events.append(event)
        return events

    def close(self) -> None:
        self.writer.close()


@pytest.fixture(scope="module")
def live(demo_model_dir: Path) -> Iterator[Live]:
    with wyoming_server(
        demo_model_dir,
        "uvicorn-wyoming-addresses",
        wyoming_max_connections=CAP,
        wyoming_max_connections_per_address=SHARE,
        wyoming_contended_idle_timeout_s=CONTENDED_IDLE_S,
        wyoming_admission_wait_s=5.0,
        ws_idle_timeout_s=IDLE_S,
    ) as server:
        yield Live(server.app, server.port)


@asynccontextmanager
async def connections(live: Live, address: str, count: int) -> AsyncIterator[list[Conn]]:
    """`count` connections from `address`, each sure to be held (or refused) before the next opens."""
    conns: list[Conn] = []
    try:
        for _ in range(count):
            reader, writer = await asyncio.open_connection("127.0.0.1", live.port, local_addr=(address, 0))
            conns.append(Conn(reader, writer))
        yield conns
    finally:
        for conn in conns:
            conn.close()


async def _held(live: Live, count: int, timeout_s: float = 5.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while len(live.app.state.wyoming.connections) != count:
        assert time.perf_counter() < deadline, len(live.app.state.wyoming.connections)
        await asyncio.sleep(0.02)


async def _settled(live: Live) -> None:
    await _held(live, 0)
    server = live.app.state.wyoming
    assert len(server.addresses) == 0 and server.waiting == 0


async def _served(conn: Conn) -> float:
    """Seconds from a one-shot synthesize to its first audio chunk."""
    started = time.perf_counter()
    await conn.send(Synthesize(text="The kitchen light is on.").event())
    event = await conn.read(30)
    assert event is not None and AudioStart.is_type(event.type), event
    event = await conn.read(30)
    assert event is not None and AudioChunk.is_type(event.type), event
    return time.perf_counter() - started


async def test_one_address_holds_its_share_and_another_is_served(live: Live) -> None:
    async with connections(live, "127.0.0.2", CAP) as hog:  # an attacker opens the whole cap and idles
        await asyncio.sleep(0.3)
        refused = await asyncio.gather(*(c.until_closed() for c in hog[SHARE:]))
        for events in refused:  # over its share: told why, closed at once
            assert [Error.from_event(e).code for e in events] == ["TOO_MANY_CONCURRENT_REQUESTS"], events
            assert "its share" in Error.from_event(events[0]).text
        await _held(live, SHARE)
        async with connections(live, "127.0.0.3", 1) as (home,):  # Home Assistant, another address
            started = time.perf_counter()
            await home.send(Describe().event())
            info = await home.read()
            assert info is not None and Info.is_type(info.type)
            assert time.perf_counter() - started < 2  # at once: no wait for a slot
            await _served(home)
    await _settled(live)


async def test_idle_connections_are_closed_sooner_when_one_waits(live: Live) -> None:
    # Two addresses of one attacker together hold the whole cap, idle.
    async with connections(live, "127.0.0.4", SHARE) as a, connections(live, "127.0.0.5", SHARE) as b:
        await _held(live, CAP)
        await asyncio.sleep(CONTENDED_IDLE_S + 0.5)  # idle past the contended timeout, but nobody waits yet
        await _held(live, CAP)  # with nobody waiting the normal idle timeout stands
        async with connections(live, "127.0.0.6", 1) as (home,):
            started = time.perf_counter()
            await home.send(Describe().event())  # read once the connection holds a slot
            info = await home.read()
            waited = time.perf_counter() - started
            assert info is not None and Info.is_type(info.type)
            assert waited < CONTENDED_IDLE_S + 2, waited  # the idle hogs went at once, not after IDLE_S
            first_audio = await _served(home)
            for conn in a + b:  # each hog told why, then closed
                events = await conn.until_closed()
                assert [Error.from_event(e).code for e in events] == ["IDLE_TIMEOUT"], events
    print(f"waited for a slot {waited:.2f} s, first audio {first_audio:.2f} s")
    await _settled(live)


async def test_a_busy_connection_is_kept_while_one_waits_and_the_waiter_is_refused(live: Live) -> None:
    async with connections(live, "127.0.0.7", SHARE) as a, connections(live, "127.0.0.8", SHARE) as b:
        await _held(live, CAP)

        async def keep_talking(conn: Conn, stop: asyncio.Event) -> None:
            while not stop.is_set():
                await conn.send(Describe().event())
                assert await conn.read() is not None
                await asyncio.sleep(0.2)

        stop = asyncio.Event()
        talkers = [asyncio.create_task(keep_talking(c, stop)) for c in a + b]
        try:
            async with connections(live, "127.0.0.9", 1) as (late,):
                started = time.perf_counter()
                events = await late.until_closed(timeout_s=30)
                waited = time.perf_counter() - started
        finally:
            stop.set()
            await asyncio.gather(*talkers)
        assert [Error.from_event(e).code for e in events] == ["TOO_MANY_CONCURRENT_REQUESTS"], events
        assert 4.5 < waited < 20, waited  # it waited the admission wait for a slot nobody idle could give
        await _held(live, CAP)  # no busy connection was closed
    await _settled(live)
