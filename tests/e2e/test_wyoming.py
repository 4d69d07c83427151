"""The Wyoming server (api/protocols/wyoming) against the `wyoming` package's own client, on a real server (uvicorn in a
thread of this process, so the test can see the engine's requests): describe, a one-shot and a streamed synthesize
as Home Assistant sends them, refusals, a hang-up mid-stream, the loopback-only rule without a key, and the zeroconf
announcement found with the `zeroconf` package's own browser."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi import FastAPI
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)
from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from api.app import create_app
from api.protocols.wyoming import WyomingConfigError, check_settings
from services.access import AccessServices
from services.keys.records import hash_key
from services.usage.request_log import RequestRecord, build_request_logger
from shared import metrics
from shared.settings import Settings
from tests.conftest import PROJECT_ROOT
from tests.e2e.conftest import free_port, in_process_server

pytestmark = pytest.mark.e2e

RATE = 16000
KEY = "wyoming-test-key"
LONG_TEXT = (
    "The quick brown fox jumps over the lazy dog near the river bank. Every morning the baker opens his shop at "
    "six and sells fresh bread to the villagers. Children walk to school along the narrow road, laughing and "
    "talking about their games. In the afternoon the sun warms the stone walls of the old church."
)


@dataclass
class Live:
    app: FastAPI
    port: int

    def client(self) -> AsyncTcpClient:
        return AsyncTcpClient("127.0.0.1", self.port)

    def active_requests(self) -> set[str]:
        return set(self.app.state.runtime.engine.active_requests())

    async def settled(self, timeout_s: float = 2.0) -> None:
        """Until no connection is open and every request is settled (slot released, record written)."""
        access = self.app.state.services.access
        deadline = time.perf_counter() + timeout_s
        while self.app.state.wyoming.connections or access.open_grants or access._tasks:  # noqa: SLF001
            assert time.perf_counter() < deadline, "the server did not settle"
            await asyncio.sleep(0.01)


class RecordingSink:
    """The request log's sink, kept in memory."""

    name = "memory"

    def __init__(self) -> None:
        self.rows: dict[str, RequestRecord] = {}

    async def write(self, records: Sequence[RequestRecord]) -> None:
        self.rows.update((r.request_id, r) for r in records)

    async def close(self) -> None:
        return None


def _serve(demo_model_dir: Path, sink: RecordingSink | None = None, **values: object) -> Iterator[Live]:
    port = free_port()
    settings = Settings(
        model_dir=demo_model_dir,
        device="cpu",
        sr_enabled=False,
        log_json=False,
        log_level="WARNING",
        wyoming_enabled=True,
        wyoming_port=port,
        **values,  # type: ignore[arg-type]
    )
    access = AccessServices(
        settings, request_logger=build_request_logger(settings, sink=sink or RecordingSink())
    )
    app = create_app(settings, access=access)
    with in_process_server(app, "uvicorn-wyoming"):
        yield Live(app, port)


@pytest.fixture(scope="module")
def live(demo_model_dir: Path) -> Iterator[Live]:
    yield from _serve(demo_model_dir, auth_enabled=False)


@pytest.fixture(scope="module")
def keyed(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Keys on: the Wyoming server runs as one key with 200 credits, one request at a time, three a minute."""
    keys = tmp_path_factory.mktemp("keys") / "keys.json"
    record = {"key_id": "wyoming", "key_hash": hash_key(KEY), "credit_balance": 200}
    keys.write_text(json.dumps({"keys": [record]}))
    yield from _serve(
        demo_model_dir,
        RecordingSink(),
        auth_enabled=True,
        api_keys_file=keys,
        credits_enabled=True,
        wyoming_api_key=KEY,
        max_concurrent_streams=1,
        rate_limit_per_minute=3,
    )


@dataclass
class Heard:
    events: list[Event] = field(default_factory=list)
    pcm: bytearray = field(default_factory=bytearray)

    def types(self) -> list[str]:
        return [e.type for e in self.events if not AudioChunk.is_type(e.type)]

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / RATE


async def _read_until(
    client: AsyncTcpClient, last: str, heard: Heard | None = None, timeout_s: float = 120
) -> Heard:
    """Events until one of type `last` (or the connection's end)."""
    heard = heard or Heard()
    async with asyncio.timeout(timeout_s):
        while True:
            event = await client.read_event()
            if event is None:
                heard.events.append(Event("closed"))
                return heard
            heard.events.append(event)
            if AudioChunk.is_type(event.type):
                chunk = AudioChunk.from_event(event)
                assert (chunk.rate, chunk.width, chunk.channels) == (RATE, 2, 1)
                heard.pcm.extend(chunk.audio)
            if event.type == last:
                return heard


async def test_describe_lists_the_voices_and_streaming(live: Live) -> None:
    async with live.client() as client:
        await client.write_event(Describe().event())
        info = Info.from_event(await client.read_event())
    (program,) = info.tts
    assert program.supports_synthesize_streaming
    names = {voice.name for voice in program.voices}
    assert live.app.state.runtime.voices.default_voice_id in names
    assert all(voice.languages == ["en", "zh"] for voice in program.voices)


async def test_one_shot_synthesize(live: Live) -> None:
    async with live.client() as client:
        await client.write_event(Synthesize(text="Hello from the kitchen speaker.").event())
        heard = await _read_until(client, AudioStop().event().type)
    assert heard.types() == ["audio-start", "audio-stop"]
    start = AudioStart.from_event(heard.events[0])
    assert (start.rate, start.width, start.channels) == (RATE, 2, 1)
    assert sum(AudioChunk.is_type(e.type) for e in heard.events) >= 1
    assert len(heard.pcm) % 2 == 0
    assert 0.2 < heard.seconds < 30, heard.seconds


async def test_streamed_synthesize_as_home_assistant_sends_it(live: Live) -> None:
    """Text in as an LLM writes it; audio of the first sentence arrives before the stream ends; Home Assistant's
    compatibility `synthesize` inside the stream is not spoken twice."""
    voice = SynthesizeVoice(name=live.app.state.runtime.voices.default_voice_id)
    async with live.client() as client:
        await client.write_event(SynthesizeStart(voice=voice).event())
        for piece in ("Good evening. The living room ", "lights are now off. "):
            await client.write_event(SynthesizeChunk(text=piece).event())
        heard = await _read_until(
            client, "audio-chunk"
        )  # the first sentence speaks while the text still comes
        await client.write_event(SynthesizeChunk(text="Sleep well.").event())
        full = "Good evening. The living room lights are now off. Sleep well."
        await client.write_event(Synthesize(text=full, voice=voice).event())
        await client.write_event(SynthesizeStop().event())
        await _read_until(client, SynthesizeStopped().event().type, heard)
        with pytest.raises(TimeoutError):  # nothing after synthesize-stopped: the copy was ignored
            async with asyncio.timeout(1.0):
                await client.read_event()
    assert heard.types() == ["audio-start", "audio-stop", "synthesize-stopped"]
    assert 0.5 < heard.seconds < 60, heard.seconds


async def test_unknown_voice_is_refused(live: Live) -> None:
    async with live.client() as client:
        await client.write_event(Synthesize(text="Hi.", voice=SynthesizeVoice(name="no-such-voice")).event())
        heard = await _read_until(client, "closed", timeout_s=30)
    error = Error.from_event(heard.events[0])
    assert error.code == "INVALID_SPEAKER" and "no-such-voice" in error.text
    assert heard.types() == ["error", "closed"]


async def test_a_refused_stream_still_says_stopped(live: Live) -> None:
    async with live.client() as client:
        await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name="no-such-voice")).event())
        heard = await _read_until(client, "closed", timeout_s=30)
    assert heard.types() == ["error", "synthesize-stopped", "closed"]


async def test_empty_text_is_refused(live: Live) -> None:
    async with live.client() as client:
        await client.write_event(Synthesize(text="   ").event())
        heard = await _read_until(client, "closed", timeout_s=30)
    assert Error.from_event(heard.events[0]).code == "VALIDATION_ERROR"


async def test_a_streamed_text_over_the_limit_ends_the_request(live: Live) -> None:
    """A refused piece of a stream (here: past TTS_MAX_TEXT_CHARS) ends the request; nothing is spoken with a gap."""
    limit = live.app.state.services.settings.limits.max_text_chars
    async with live.client() as client:
        await client.write_event(SynthesizeStart().event())
        await client.write_event(SynthesizeChunk(text="a " * (limit // 2 + 1)).event())
        heard = await _read_until(client, "closed", timeout_s=30)
    assert heard.types() == ["error", "synthesize-stopped", "closed"], heard.events[0]


async def test_a_malformed_event_is_refused(live: Live) -> None:
    async with live.client() as client:
        await client.write_event(Event(type="synthesize", data={"voice": {"name": "x"}}))
        heard = await _read_until(client, "closed", timeout_s=30)
    assert heard.types() == ["error", "closed"]
    assert Error.from_event(heard.events[0]).code == "VALIDATION_ERROR"


WRONG_TYPES = [
    ("synthesize", {"text": "Hello.", "voice": {"name": 7}}),
    ("synthesize", {"text": "Hello.", "voice": {"name": ["fixed"]}}),
    ("synthesize", {"text": "Hello.", "voice": {"name": {"a": 1}}}),
    ("synthesize", {"text": "Hello.", "voice": {"name": "fixed", "speaker": 3}}),
    ("synthesize", {"text": "Hello.", "voice": {"language": [1]}}),
    ("synthesize", {"text": "Hello.", "voice": "fixed"}),
    ("synthesize", {"text": 5}),
    ("synthesize", {"text": "Hello.", "context": [1]}),
    ("synthesize", {"text": "Hello.", "text_format": {"a": 1}}),
    ("synthesize-start", {"voice": {"name": 1.5}}),
    ("synthesize-start", {"voice": {"name": None, "language": {"x": 1}}}),
]


@pytest.mark.parametrize(("kind", "data"), WRONG_TYPES)
async def test_a_field_of_the_wrong_type_is_a_validation_error(live: Live, kind: str, data: dict) -> None:
    """Every event field of the wrong type is the client's mistake (issue 98: a `voice.name` that was a number,
    list or object was an INTERNAL_ERROR and an ERROR log line)."""
    async with live.client() as client:
        await client.write_event(Event(type=kind, data=data))
        if kind == "synthesize-start":
            await client.write_event(Event(type="synthesize-stop"))
        heard = await _read_until(client, "closed", timeout_s=60)
    errors = [Error.from_event(e) for e in heard.events if Error.is_type(e.type)]
    assert errors and all(e.code in ("VALIDATION_ERROR", "INVALID_SPEAKER") for e in errors), heard.types()


async def test_an_event_too_long_is_refused_before_it_is_read(live: Live) -> None:
    """A client naming a gigabyte of data gets an error at once (the server reads none of it) and is closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    try:
        writer.write(json.dumps({"type": "synthesize", "data_length": 10**9}).encode() + b"\n")
        await writer.drain()
        async with asyncio.timeout(30):
            answer = await reader.read()  # everything up to the server's close
    finally:
        writer.close()
    header = json.loads(answer.split(b"\n", 1)[0])
    assert header["type"] == "error"
    assert b"PAYLOAD_TOO_LARGE" in answer


async def test_hanging_up_mid_stream_stops_the_work(live: Live) -> None:
    active_before = metrics.ACTIVE_STREAMS._value.get()  # noqa: SLF001 - the gauge's own value
    async with live.client() as client:
        await client.write_event(SynthesizeStart().event())
        await client.write_event(SynthesizeChunk(text=LONG_TEXT).event())
        await _read_until(client, "audio-chunk")
        assert live.active_requests(), "generation should still be running after the first chunk"
    hung_up = time.perf_counter()
    while live.active_requests():
        assert time.perf_counter() - hung_up < 2.0, f"still running: {live.active_requests()}"
        await asyncio.sleep(0.01)
    await live.settled()
    assert metrics.ACTIVE_STREAMS._value.get() == active_before  # noqa: SLF001


async def test_keyed_server_applies_the_keys_limits(keyed: Live) -> None:
    """The key's credits, concurrency slot and per-minute rate apply: a text longer than its balance is refused, a
    hang-up gives the one slot back (the next requests run), and past the rate the request is refused."""
    async with keyed.client() as client:
        await client.write_event(Synthesize(text=LONG_TEXT).event())  # ~390 characters, 200 credits
        heard = await _read_until(client, "closed", timeout_s=30)
    assert heard.types() == ["error", "closed"]
    assert Error.from_event(heard.events[0]).code == "INSUFFICIENT_CREDITS"
    async with keyed.client() as client:
        await client.write_event(SynthesizeStart().event())
        await client.write_event(SynthesizeChunk(text=LONG_TEXT[:150]).event())
        await _read_until(client, "audio-chunk")
    await keyed.settled()
    for _ in range(2):
        async with keyed.client() as client:
            await client.write_event(Synthesize(text="One more.").event())
            heard = await _read_until(client, "audio-stop")
        assert heard.types() == ["audio-start", "audio-stop"], heard.events[0]
    async with keyed.client() as client:
        await client.write_event(Synthesize(text="Too many.").event())
        heard = await _read_until(client, "closed", timeout_s=30)
    assert Error.from_event(heard.events[0]).code == "RATE_LIMIT_EXCEEDED"
    # One record per request that reached synthesis, under the key; the refused ones have none.
    sink = keyed.app.state.services.access.request_logger.sink
    deadline = time.perf_counter() + 10
    while len(sink.rows) < 3:
        assert time.perf_counter() < deadline, sink.rows
        await asyncio.sleep(0.05)
    rows = sorted(sink.rows.values(), key=lambda r: r.request_id)
    assert {r.key_id for r in rows} == {"wyoming"}
    assert {r.transport for r in rows} == {"wyoming"}  # its own transport, not the WebSocket's
    assert [r.status for r in rows].count("completed") == 2
    assert all(r.credits_charged > 0 for r in rows if r.status == "completed")


def test_without_a_key_only_loopback_may_be_bound() -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        check_settings(Settings(wyoming_host=host))
    with pytest.raises(WyomingConfigError, match="TTS_WYOMING_API_KEY"):
        check_settings(Settings(wyoming_host="0.0.0.0"))
    check_settings(Settings(wyoming_host="0.0.0.0", wyoming_api_key="some-key"))
    with pytest.raises(WyomingConfigError, match="TTS_AUTH_ENABLED=false"):  # a key nothing checks
        check_settings(Settings(wyoming_host="0.0.0.0", wyoming_api_key="some-key", auth_enabled=False))
    check_settings(Settings(wyoming_host="127.0.0.1", wyoming_api_key="some-key", auth_enabled=False))


async def test_an_unkeyed_wide_bind_fails_start_up(demo_model_dir: Path) -> None:
    app = create_app(
        Settings(model_dir=demo_model_dir, device="cpu", wyoming_enabled=True, wyoming_host="0.0.0.0")
    )
    with pytest.raises(WyomingConfigError):
        async with app.router.lifespan_context(app):
            pass


async def test_python_m_api_wyoming_serves_alone(demo_model_dir: Path, tmp_path: Path) -> None:
    """`python -m api.protocols.wyoming`: the Wyoming server without the HTTP port, on the same settings; it stops on SIGTERM."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_")}
    env.update(
        TTS_MODEL_DIR=str(demo_model_dir),
        TTS_DEVICE="cpu",
        TTS_AUTH_ENABLED="false",
        TTS_SR_ENABLED="false",
        TTS_WYOMING_PORT=str(port),
        OMP_NUM_THREADS="1",
    )
    log = tmp_path / "wyoming.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.protocols.wyoming"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        voices: list[str] = []
        while not voices:  # the voices are listed once the model has loaded
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "no voices in 120 s"
            try:
                async with AsyncTcpClient("127.0.0.1", port) as client:
                    await client.write_event(Describe().event())
                    event = await client.read_event()
                    assert event is not None
                    voices = [voice.name for voice in Info.from_event(event).tts[0].voices]
            except OSError:
                await asyncio.sleep(0.3)
        while True:  # refused with MODEL_NOT_LOADED until the warm-up is done
            async with AsyncTcpClient("127.0.0.1", port) as client:
                await client.write_event(Synthesize(text="Standing alone.").event())
                heard = await _read_until(client, "audio-stop")
            if heard.types()[0] != "error" or Error.from_event(heard.events[0]).code != "MODEL_NOT_LOADED":
                break
            assert time.monotonic() < deadline, "not ready in 120 s"
            await asyncio.sleep(0.5)
        assert heard.types() == ["audio-start", "audio-stop"] and heard.pcm, heard.events[0]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=30) == 0, log.read_text(errors="replace")[-3000:]
        finally:
            process.kill()


# ----------------------------------------------------------------------------------------------- zeroconf (mDNS)

WYOMING_MDNS = "_wyoming._tcp.local."  # the type Home Assistant's wyoming integration browses


@contextlib.asynccontextmanager
async def _announced(demo_model_dir: Path) -> AsyncIterator[FastAPI]:
    """The service with its Wyoming server announced, on this test's loop; stopped (and withdrawn) on exit."""
    settings = Settings(
        model_dir=demo_model_dir,
        device="cpu",
        sr_enabled=False,
        auth_enabled=False,
        log_json=False,
        log_level="WARNING",
        wyoming_enabled=True,
        wyoming_port=free_port(),
        wyoming_zeroconf=True,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


async def _describe(host: str, port: int) -> Info:
    async with AsyncTcpClient(host, port) as client:
        await client.write_event(Describe().event())
        event = await client.read_event()
    assert event is not None
    return Info.from_event(event)


async def _why_no_mdns() -> str | None:
    """Why mDNS cannot carry an announcement on this machine, or None: a probe service registered on one Zeroconf
    (every interface) is looked up from another, as the test's own browser would."""
    name = f"probe-{uuid.uuid4().hex[:12]}.{WYOMING_MDNS}"
    probe = AsyncServiceInfo(WYOMING_MDNS, name, addresses=[b"\x7f\x00\x00\x01"], port=9)
    try:
        announcer = AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only)
    except OSError as exc:
        return f"no multicast socket can be opened here ({exc})"
    try:
        await announcer.async_register_service(probe)
        async with AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only) as looker:
            if await looker.async_get_service_info(WYOMING_MDNS, name, timeout=3000) is None:
                return "no interface here carries mDNS (a probe service was not seen from a second Zeroconf)"
    finally:
        await announcer.async_close()
    return None


async def test_zeroconf_registers_what_home_assistant_looks_for(demo_model_dir: Path) -> None:
    """The announcement as registered with zeroconf (needs no multicast delivery): Home Assistant's type, the
    machine's name as wyoming's own servers use it, the bound address and port; a client at that address gets
    `describe` answered; stopping the server unregisters it and closes the Zeroconf."""
    async with _announced(demo_model_dir) as app:
        server = app.state.wyoming
        aiozc: AsyncZeroconf | None = server._zeroconf  # noqa: SLF001 - the instance that announced
        if aiozc is None:  # acceptable only where zeroconf cannot open its multicast socket at all
            reason = await _why_no_mdns()
            assert reason is not None and reason.startswith("no multicast socket"), "not announced"
            pytest.skip(reason)
        (info,) = aiozc.zeroconf.registry.async_get_infos_type(WYOMING_MDNS)
        assert info.name == f"{uuid.getnode():012x}.{WYOMING_MDNS}"  # the MAC address, 12 hex digits
        assert (info.port, info.parsed_addresses()) == (server.port, ["127.0.0.1"])
        assert (await _describe(info.parsed_addresses()[0], info.port)).tts[0].name == "spark-tts"
    assert server._zeroconf is None  # noqa: SLF001
    assert aiozc.zeroconf.done and not aiozc.zeroconf.registry.async_get_service_infos()


async def test_home_assistant_discovers_the_server_over_mdns(demo_model_dir: Path) -> None:
    """As Home Assistant discovers it: a browser for `_wyoming._tcp.local.` sees the service added, resolves its
    address and port, and `describe` is answered there; stopping the server sends the goodbye (the service is
    removed)."""
    reason = await _why_no_mdns()
    if reason is not None:
        pytest.skip(reason)
    changes: asyncio.Queue[tuple[str, ServiceStateChange]] = asyncio.Queue()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        changes.put_nowait((name, state_change))

    async with AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only) as home_assistant:
        browser = AsyncServiceBrowser(home_assistant.zeroconf, WYOMING_MDNS, handlers=[on_change])
        try:
            async with _announced(demo_model_dir) as app:
                port = app.state.wyoming.port
                announced: str | None = None
                async with asyncio.timeout(10):
                    while announced is None:  # another Wyoming server on the network may be announced too
                        name, change = await changes.get()
                        if change is not ServiceStateChange.Added:
                            continue
                        info = AsyncServiceInfo(WYOMING_MDNS, name)
                        if await info.async_request(home_assistant.zeroconf, 3000) and info.port == port:
                            announced = name
                assert info.parsed_addresses() == ["127.0.0.1"]
                assert (await _describe(info.parsed_addresses()[0], port)).tts[0].name == "spark-tts"
            async with asyncio.timeout(5):
                while (await changes.get()) != (announced, ServiceStateChange.Removed):
                    pass
        finally:
            await browser.async_cancel()
