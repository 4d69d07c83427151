"""WS /v1/tts/ws against a real uvicorn server and a real WebSocket client.

The server runs in this process (uvicorn.Server on a background thread, its own event loop) so the tests can
look at the engine's active requests: a cancel or a closed socket must stop generation, not just the audio.
Auth is on, and the main key may hold one synthesis at a time, so a concurrency slot that is not given back
after an utterance (completed, cancelled, disconnected) shows up as a refusal in the next test.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from api import create_app
from services.access import AccessServices, Authenticator, StaticKeyStore
from shared.settings import Settings
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e

KEY = "ws-test-key"
LIMITED_KEY = "ws-limited-key"  # 2 requests per minute
IDLE_S = 4.0
LONG_TEXT = " ".join(
    ["This sentence is here to keep the model talking for a good while, so that there is time to stop it."]
    * 4
)


@dataclass
class InProcessServer:
    app: Any
    server: uvicorn.Server
    thread: threading.Thread
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/tts/ws"

    def active_requests(self) -> set[str]:
        return self.app.state.runtime.engine.active_requests()


@pytest.fixture(scope="module")
def ws_server(demo_model_dir: Path) -> Iterator[InProcessServer]:
    settings = Settings(
        model_dir=demo_model_dir,
        ws_idle_timeout_s=IDLE_S,
        device="cpu",
        warmup=False,
        sr_enabled=False,
        auth_enabled=True,
        max_concurrent_streams=1,
        rate_limit_per_minute=1000,
        ws_max_connections_per_key=4,
        log_json=False,
        log_level="WARNING",
    )
    store = StaticKeyStore()
    store.add_plain_key(KEY, key_id="ws-main")
    store.add_plain_key(LIMITED_KEY, key_id="ws-limited", rate_limit_per_minute=2)
    access = AccessServices(settings, authenticator=Authenticator(store, ttl_s=30.0))
    root = logging.getLogger()
    root_state = (root.level, list(root.handlers))
    app = create_app(settings, access=access)  # configures the root logger; given back below
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="ws-test-server", daemon=True)
    thread.start()
    running = InProcessServer(app, server, thread, port)
    try:
        deadline = time.monotonic() + 180
        while not (server.started and app.state.runtime.ready):
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"server did not start (runtime state {app.state.services.deployment.runtime.state})"
                )
            time.sleep(0.1)
        yield running
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        root.setLevel(root_state[0])
        root.handlers[:] = root_state[1]


def _open(server: InProcessServer, key: str | None = KEY, *, query: str = "") -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return connect(server.url + query, additional_headers=headers, max_size=None, open_timeout=20)


@dataclass
class Received:
    events: list[dict[str, Any]] = field(default_factory=list)
    frames: list[tuple[float, bytes]] = field(default_factory=list)  # (monotonic arrival time, data)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    @property
    def audio(self) -> bytes:
        return b"".join(data for _, data in self.frames)


async def receive_until(
    ws: ClientConnection,
    kinds: set[str],
    into: Received | None = None,
    *,
    timeout_s: float = 90.0,
    stop_at_first_frame: bool = False,
) -> Received:
    """Read events and frames until an event of one of `kinds` arrives (or the first binary frame)."""
    got = into or Received()
    deadline = time.monotonic() + timeout_s
    while True:
        message = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(message, bytes):
            got.frames.append((time.monotonic(), message))
            if stop_at_first_frame:
                return got
            continue
        event = json.loads(message)
        got.events.append(event)
        if event.get("type") in kinds:
            return got


async def send(ws: ClientConnection, **message: Any) -> float:
    await ws.send(json.dumps(message))
    return time.monotonic()


def _sample(name: str, **labels: str) -> float:
    from shared.metrics import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def wait_until(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


async def speak(ws: ClientConnection, text: str, **start: Any) -> Received:
    """One whole utterance on an open connection."""
    await send(ws, type="start", **start)
    await send(ws, type="text", text=text)
    await send(ws, type="end")
    return await receive_until(ws, {"done", "error"})


# ---------------------------------------------------------------------------------------------- tests
async def test_audio_starts_before_end_and_done_carries_totals(ws_server: InProcessServer) -> None:
    pieces = ["Hello", " there", " friend.", " How are", " you doing today"]
    monitor = ws_server.app.state.services.access.monitor
    completed_before = monitor.snapshot()["requests"]["completed"]
    counted_before = _sample("veena3_tts_requests_total", speaker="default", stream="true", format="pcm")
    async with _open(ws_server) as ws:
        await send(ws, type="start", seed=3)
        for piece in pieces:
            await send(ws, type="text", text=piece)
        got = await receive_until(ws, set(), stop_at_first_frame=True)
        end_sent = await send(ws, type="end")
        await receive_until(ws, {"done", "error"}, got)

    first_frame_at = got.frames[0][0]
    assert first_frame_at < end_sent, "the first sentence's audio should arrive before 'end' is sent"
    assert [e["type"] for e in got.events][0] == "started"
    assert not got.of("error"), got.of("error")
    started, done = got.of("started")[0], got.of("done")[0]
    assert started["format"] == "pcm" and started["sample_rate"] == 16000
    assert done["utterance_id"] == started["utterance_id"]
    assert done["audio_bytes"] == len(got.audio) > 0
    assert len(got.audio) % 2 == 0  # s16le samples
    assert done["audio_seconds"] == pytest.approx(len(got.audio) / 2 / 16000, abs=0.002)
    assert done["text_chunks"] == 2 and done["text_chunked"] is True  # the first sentence, then the rest
    assert done["characters"] == sum(len(p) for p in pieces)
    assert done["ttfb_ms"] > 0 and done["rtf"] > 0 and done["model_version"]
    assert wait_until(lambda: not ws_server.active_requests(), 5)
    # Counted like HTTP requests, and the flow monitor saw every stage complete with nothing lost.
    assert (
        _sample("veena3_tts_requests_total", speaker="default", stream="true", format="pcm")
        == counted_before + 1
    )
    assert wait_until(lambda: monitor.snapshot()["requests"]["completed"] == completed_before + 1, 5)
    assert monitor.snapshot()["losses"]["total"] == 0


async def test_cancel_stops_audio_within_200_ms_and_aborts_generation(ws_server: InProcessServer) -> None:
    async with _open(ws_server) as ws:
        await send(ws, type="start")
        await send(ws, type="text", text=LONG_TEXT + " ")
        got = await receive_until(ws, set(), stop_at_first_frame=True)
        assert ws_server.active_requests(), "generation should be running while audio streams"
        cancel_sent = await send(ws, type="cancel")
        before = len(got.frames)
        await receive_until(ws, {"cancelled"}, got, timeout_s=10)
        ack_at = time.monotonic()
        late = [t - cancel_sent for t, _ in got.frames[before:]]
        assert all(delay < 0.2 for delay in late), f"audio frames kept coming after cancel: {late}"
        assert ack_at - cancel_sent < 1.0
        cancelled = got.of("cancelled")[0]
        assert cancelled["utterance_id"] == got.of("started")[0]["utterance_id"]
        assert not got.of("done")
        assert wait_until(lambda: not ws_server.active_requests(), 2.0), ws_server.active_requests()

        # Nothing of the cancelled utterance follows, and the connection (and the key's one slot) is usable.
        again = await speak(ws, "Short and sweet.")
        assert again.of("done"), again.events
        assert all(e.get("utterance_id") != cancelled["utterance_id"] for e in again.events)


async def test_closing_the_socket_aborts_generation(ws_server: InProcessServer) -> None:
    async with _open(ws_server) as ws:
        await send(ws, type="start")
        await send(ws, type="text", text=LONG_TEXT + " ")
        await receive_until(ws, set(), stop_at_first_frame=True)
        assert ws_server.active_requests()
    assert wait_until(lambda: not ws_server.active_requests(), 3.0), ws_server.active_requests()
    async with _open(ws_server) as ws:  # the slot came back
        assert (await speak(ws, "Still here.")).of("done")


async def test_bad_messages_get_an_error_and_the_connection_stays_usable(ws_server: InProcessServer) -> None:
    async def error_for(message: str | bytes) -> dict[str, Any]:
        await ws.send(message)
        got = await receive_until(ws, {"error"}, timeout_s=10)
        error = got.of("error")[0]
        assert set(error["error"]) == {"message", "type", "param", "code"}
        return error["error"]

    async with _open(ws_server) as ws:
        assert (await error_for("not json"))["code"] == "INVALID_JSON"
        assert (await error_for("[1, 2]"))["code"] == "VALIDATION_ERROR"
        unknown = await error_for(json.dumps({"type": "speak"}))
        assert unknown["param"] == "type" and "flush" in unknown["message"]
        assert (await error_for(b"\x00\x01"))["code"] == "VALIDATION_ERROR"
        assert (await error_for(json.dumps({"type": "text", "text": "no start yet"})))["param"] == "type"
        hot = await error_for(json.dumps({"type": "start", "temperature": 5}))
        assert hot["param"] == "temperature"
        assert (await error_for(json.dumps({"type": "start", "speaker": "nobody-at-all"})))[
            "code"
        ] == "INVALID_SPEAKER"
        mulaw = await error_for(json.dumps({"type": "start", "format": "mulaw", "sample_rate": 16000}))
        assert mulaw["code"] == "VALIDATION_ERROR" and "8000" in mulaw["message"]
        assert (await error_for(json.dumps({"type": "start", "colour": "blue"})))["param"] == "colour"
        # A second start while the first is open, and an end with nothing to speak.
        await send(ws, type="start")
        assert (await error_for(json.dumps({"type": "start"})))["code"] == "VALIDATION_ERROR"
        empty = await error_for(json.dumps({"type": "end"}))
        assert empty["param"] == "text"

        got = await speak(ws, "After all that, this works.")
        assert got.of("done") and got.audio


async def test_two_utterances_in_a_row_both_complete(ws_server: InProcessServer) -> None:
    async with _open(ws_server) as ws:
        first = await speak(ws, "The first one.")
        second = await speak(ws, "And the second one.", format="wav")
        assert first.of("done") and second.of("done")
        assert first.of("done")[0]["utterance_id"] != second.of("done")[0]["utterance_id"]
        assert second.audio[:4] == b"RIFF" and second.audio[8:12] == b"WAVE"

        # Pipelined: the next start right after an end; the second waits its turn, nothing interleaves.
        for text in ("One more.", "And the last."):
            await send(ws, type="start")
            await send(ws, type="text", text=text)
            await send(ws, type="end")
        got = await receive_until(ws, {"done"})
        await receive_until(ws, {"done"}, got)
        kinds = [e["type"] for e in got.events if e["type"] in ("started", "done")]
        assert kinds == ["started", "done", "started", "done"]
        assert len(got.of("done")) == 2


async def test_oneshot_request_flush_and_ping(ws_server: InProcessServer) -> None:
    async with _open(ws_server) as ws:
        await send(ws, type="ping", id=7)
        pong = (await receive_until(ws, {"pong"}, timeout_s=10)).of("pong")[0]
        assert pong["id"] == 7

        # The one-shot form existing clients send: {"text", "speaker", ...} without a type.
        await ws.send(json.dumps({"text": "One shot.", "stream": True, "seed": 1}))
        got = await receive_until(ws, {"done", "error"})
        assert got.of("done") and got.audio

        # flush: text without a sentence end is synthesised when asked.
        await send(ws, type="start")
        await send(ws, type="text", text="no full stop here")
        await send(ws, type="flush")
        got = await receive_until(ws, {"flushed"}, timeout_s=10)
        assert got.of("flushed")[0]["text_chunks"] == 1
        await receive_until(ws, set(), got, stop_at_first_frame=True)
        await send(ws, type="end")
        await receive_until(ws, {"done"}, got)


async def test_handshake_needs_a_valid_key(ws_server: InProcessServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with _open(ws_server, key=None):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["code"] == "INVALID_API_KEY"
    with pytest.raises(InvalidStatus) as wrong:
        async with _open(ws_server, key="wrong"):
            pass
    assert wrong.value.response.status_code == 401
    async with _open(ws_server, key=None, query=f"?api_key={KEY}") as ws:  # browsers: the query parameter
        await send(ws, type="ping")
        assert (await receive_until(ws, {"pong"}, timeout_s=10)).of("pong")


async def test_rate_limit_counts_utterances(ws_server: InProcessServer) -> None:
    async with _open(ws_server, key=LIMITED_KEY) as ws:  # the connection counts 1 and covers utterance 1
        assert (await speak(ws, "First.")).of("done")
        assert (await speak(ws, "Second.")).of("done")
        third = await speak(ws, "Third.")
        assert third.of("error")[0]["error"]["code"] == "RATE_LIMIT_EXCEEDED"
        await send(ws, type="ping")  # refused, not disconnected
        assert (await receive_until(ws, {"pong"}, timeout_s=10)).of("pong")
    with pytest.raises(InvalidStatus) as refused:
        async with _open(ws_server, key=LIMITED_KEY):
            pass
    assert refused.value.response.status_code == 429
    assert refused.value.response.headers["Retry-After"]


async def test_idle_connection_is_closed(ws_server: InProcessServer) -> None:
    async with _open(ws_server) as ws:
        started = time.monotonic()
        got = await receive_until(ws, {"error"}, timeout_s=IDLE_S + 10)
        assert got.of("error")[0]["error"]["code"] == "IDLE_TIMEOUT"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=5)
        assert time.monotonic() - started >= IDLE_S - 0.5


async def test_connections_per_key_are_capped(ws_server: InProcessServer) -> None:
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        for _ in range(4):
            ws = await stack.enter_async_context(_open(ws_server))
            await send(ws, type="ping")
            assert (await receive_until(ws, {"pong"}, timeout_s=10)).of("pong")
        with pytest.raises(InvalidStatus) as refused:
            async with _open(ws_server):
                pass
        assert refused.value.response.status_code == 429
        assert json.loads(refused.value.response.body)["error"]["code"] == "TOO_MANY_CONCURRENT_REQUESTS"
    deadline = time.monotonic() + 5  # closed connections free their places
    while True:
        try:
            async with _open(ws_server) as ws:
                await send(ws, type="ping")
                assert (await receive_until(ws, {"pong"}, timeout_s=10)).of("pong")
            break
        except InvalidStatus:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
