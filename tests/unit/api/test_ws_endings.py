"""How a WebSocket ended decides what its unfinished utterances pay (docs/api/credits.md, "A socket the server ends"):
the client's own close is a hang-up; a connection lost without its close frame (the network, a vanished client, the
server's keepalive) or ended by the server is charged for the audio that reached the socket."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api import create_app
from api.socket_guard import SocketGuard
from api.ws_connection import (
    SERVER_ENDED,
    SERVER_FAILED,
    connection_lost,
    reader_failure_ending,
    writer_ending,
)
from processing.normalize import normalize_text
from services.access import AccessServices, Authenticator, StaticKeyStore
from services.access.socket_limits import MessageLimiter
from services.deployment.runtime import ModelRuntime
from services.sessions.ws_outbox import ClientStalled
from services.usage.request_log import RequestLogger
from services.usage.request_record import RequestRecord
from shared.settings import Settings
from tests.conftest import wait_in_portal


def test_a_lost_connection_is_told_from_the_clients_own_close() -> None:
    # uvicorn's websockets-sansio protocol: a lost connection (keepalive timeout, TCP reset) has no reason ...
    assert connection_lost({"type": "websocket.disconnect", "code": 1005})
    # ... a received close frame always has one, also without a code (a browser's ws.close()).
    assert not connection_lost({"type": "websocket.disconnect", "code": 1005, "reason": ""})
    assert not connection_lost({"type": "websocket.disconnect", "code": 1000, "reason": ""})
    assert not connection_lost({"type": "websocket.disconnect", "code": 1001, "reason": "going away"})
    # The legacy websockets protocol: an abnormal closure.
    assert connection_lost({"type": "websocket.disconnect", "code": 1006, "reason": ""})


def test_only_endings_the_client_did_not_choose_charge_for_the_audio_sent() -> None:
    assert {"stalled", "over_budget", "lost", "send_failed"} == SERVER_ENDED
    assert not SERVER_ENDED & {"disconnect", "close", "idle", "server_error"}
    assert not SERVER_FAILED & SERVER_ENDED


def test_a_writer_stopped_by_our_own_bug_is_a_server_error_not_a_dead_connection() -> None:
    assert writer_ending(ClientStalled()) == "stalled"
    for dead in (WebSocketDisconnect(1006), ConnectionResetError(), RuntimeError("closed"), None):
        assert writer_ending(dead) == "send_failed"
    assert writer_ending(TypeError("Object of type bytes is not JSON serializable")) == "server_error"
    assert SERVER_FAILED == {"server_error"}


def test_a_reader_failure_is_ours_only_when_the_client_did_not_cause_it() -> None:
    bug = InjectedBug("a bug of ours")
    assert reader_failure_ending(bug, None) == "server_error"
    assert reader_failure_ending(bug, TypeError("cannot encode")) == "server_error"
    # The connection went under the reader, or the writer had already stopped for the client's reason: no refund.
    assert reader_failure_ending(ConnectionResetError(), None) == "lost"
    assert reader_failure_ending(WebSocketDisconnect(1006), None) == "lost"
    assert reader_failure_ending(bug, ClientStalled()) == "stalled"
    assert reader_failure_ending(bug, ConnectionResetError()) == "send_failed"


# ---------------------------------------------------------------------------------------------- through the app
# Each case: a metered key of its own, a real app on the demo model, the dialect's wire messages; the request log's
# rows are kept in memory and the books checked: balance == initial - sum(credits_charged) over the key's rows.
INITIAL = 100_000
TEXT = (
    "The quick brown fox jumps over the lazy dog. It was a sunny day, and everyone in the small town was happy "
    "to be outside. The children played in the park while their parents talked. "
)


class Rows:
    """A request-log sink that keeps each request's last row (writing one twice replaces it, as the real ones do)."""

    name = "memory"

    def __init__(self) -> None:
        self.rows: dict[str, RequestRecord] = {}

    async def write(self, records: Sequence[RequestRecord]) -> None:
        for record in records:
            self.rows[record.request_id] = record

    async def close(self) -> None:
        return None

    def of(self, key_id: str) -> list[RequestRecord]:
        return [r for r in self.rows.values() if r.key_id == key_id and r.status != "in_progress"]


class InjectedBug(Exception):
    """Stands for a bug of ours in the socket's read loop."""


class FaultyGuard(SocketGuard):
    """Once armed, the next client message makes the read loop raise (a server-side failure mid-utterance)."""

    armed = False

    def message_limiter(self, key_id: str | None = None) -> MessageLimiter:
        guard, limiter = self, super().message_limiter(key_id)
        check = limiter.check

        def failing(size: int):  # noqa: ANN202 - MessageLimiter.check's own signature
            if guard.armed:
                guard.armed = False
                raise InjectedBug("injected")
            return check(size)

        limiter.check = failing  # type: ignore[method-assign]
        return limiter


@dataclass
class App:
    client: TestClient
    store: StaticKeyStore
    rows: Rows
    guard: FaultyGuard
    keys: itertools.count

    def new_key(self) -> tuple[str, str]:
        n = next(self.keys)
        self.store.add_plain_key(f"endings-key-{n}", key_id=f"endings-{n}", credit_balance=INITIAL)
        return f"endings-key-{n}", f"endings-{n}"

    def balance(self, key_id: str) -> int:
        async def read() -> int:
            return (await self.store.get_by_hash(self.store._hash_by_id[key_id])).credit_balance  # type: ignore[return-value]

        return self.client.portal.call(read)

    def settled(self, key_id: str, rows: int = 1) -> list[RequestRecord]:
        """Wait for the key's final rows; then the books must balance."""
        wait_in_portal(self.client, lambda: len(self.rows.of(key_id)) >= rows, timeout_s=30)
        done = self.rows.of(key_id)
        # The live settlement (a static key store) runs before the row is queued: the balance is final here.
        assert INITIAL - self.balance(key_id) == sum(r.credits_charged for r in done), done
        return done


@pytest.fixture(scope="module")
def app(demo_model_dir: Path) -> Iterator[App]:
    settings = Settings(
        model_dir=demo_model_dir,
        warmup=False,
        log_json=False,
        sr_enabled=False,
        auth_enabled=True,
        credits_enabled=True,
        rate_limit_per_minute=10_000,
        ws_idle_timeout_s=60,
        request_log_flush_s=0.05,
        max_text_chars=600,
    )
    store = StaticKeyStore()
    rows = Rows()
    access = AccessServices(
        settings,
        authenticator=Authenticator(store, ttl_s=30.0),
        request_logger=RequestLogger(rows, flush_s=0.05),
    )  # type: ignore[arg-type]
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime, access=access)) as client:
        wait_in_portal(client, lambda: runtime.ready)
        guard = client.app.state.socket_guard = FaultyGuard(settings)
        yield App(client, store, rows, guard, itertools.count())
        client.app.state.socket_guard = None


# dialect -> (path with the key, opening messages (unfinished: no end), a message that keeps it open, is_audio)
def _native_audio(message: dict | bytes) -> bool:
    return isinstance(message, bytes)


def _json_audio(message: dict | bytes) -> bool:
    return isinstance(message, dict) and bool(message.get("audio") or message.get("data"))


DIALECTS = {
    "native": (
        "/v1/tts/ws?api_key={key}",
        [
            {"type": "start", "speaker": "fixed", "format": "pcm", "sample_rate": 16000},
            {"type": "text", "text": TEXT},
        ],
        {"type": "ping", "id": 1},
        _native_audio,
    ),
    "elevenlabs": (
        "/v1/text-to-speech/fixed/multi-stream-input?output_format=pcm_16000&xi_api_key={key}",
        [{"text": " ", "context_id": "c1"}, {"text": TEXT, "context_id": "c1", "flush": True}],
        {"text": "", "context_id": "c1"},
        _json_audio,
    ),
    "elevenlabs-single": (
        "/v1/text-to-speech/fixed/stream-input?output_format=pcm_16000&xi_api_key={key}",
        [{"text": " "}, {"text": TEXT, "flush": True}],
        {"text": " more", "flush": False},
        _json_audio,
    ),
    "cartesia": (
        "/tts/websocket?api_key={key}&cartesia_version=2026-03-01",
        [
            {
                "context_id": "c1",
                "model_id": "sonic-2",
                "transcript": TEXT,
                "continue": True,
                "voice": {"mode": "id", "id": "fixed"},
                "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
            }
        ],
        {
            "context_id": "c1",
            "transcript": " and",
            "continue": True,
            "voice": {"mode": "id", "id": "fixed"},
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        },
        _json_audio,
    ),
}


def _receive(ws) -> dict | bytes:  # noqa: ANN001 - Starlette's test session
    message = ws.receive()
    if message["type"] == "websocket.close":
        raise WebSocketDisconnect(message.get("code", 1000))
    if message.get("bytes") is not None:
        return message["bytes"]
    return json.loads(message["text"])


def _until_audio(ws, is_audio) -> None:  # noqa: ANN001
    for _ in range(2000):
        message = _receive(ws)
        assert not (isinstance(message, dict) and message.get("error")), message
        if is_audio(message):
            return
    raise AssertionError("no audio")


def _close_code(ws) -> int:  # noqa: ANN001
    while True:
        try:
            _receive(ws)
        except WebSocketDisconnect as exc:
            return exc.code


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_a_server_error_mid_utterance_refunds_it_on_every_dialect(app: App, dialect: str) -> None:
    """The socket ended by our own failure (the read loop raised) under an utterance that has sent audio:
    its row is a 5xx failure (failed, INTERNAL_ERROR) charged nothing, as an HTTP request failing on a server error
    is, and its whole reservation comes back; the client sees 1011."""
    raw, key_id = app.new_key()
    path, opening, keep, is_audio = DIALECTS[dialect]
    with app.client.websocket_connect(path.format(key=raw)) as ws:
        for message in opening:
            ws.send_text(json.dumps(message))
        _until_audio(ws, is_audio)
        assert app.balance(key_id) < INITIAL  # the text is held
        app.guard.armed = True
        ws.send_text(json.dumps(keep))
        assert _close_code(ws) == 1011
    [row] = app.settled(key_id)
    assert (row.status, row.error_code, row.credits_charged) == ("failed", "INTERNAL_ERROR", 0), row
    assert row.audio_duration_seconds and row.audio_duration_seconds > 0  # it had made audio: refunded anyway
    assert app.balance(key_id) == INITIAL


@pytest.mark.parametrize("dialect", ["native", "cartesia"])
def test_the_clients_own_close_after_audio_pays_for_its_delivered_audio(app: App, dialect: str) -> None:
    """The control: the same utterance, the client closes the socket itself: cancelled, charged like a lost
    connection for the text its delivered audio covers, never more than its spoken text."""
    raw, key_id = app.new_key()
    path, opening, _, is_audio = DIALECTS[dialect]
    with app.client.websocket_connect(path.format(key=raw)) as ws:
        for message in opening:
            ws.send_text(json.dumps(message))
        _until_audio(ws, is_audio)
    [row] = app.settled(key_id)
    assert row.status == "cancelled" and row.error_code is None
    assert 0 < row.credits_charged <= len(normalize_text(TEXT).text) + 1, row


@pytest.mark.parametrize("dialect", ["elevenlabs", "cartesia"])
def test_a_context_refused_mid_way_pays_for_its_delivered_audio_not_nothing(app: App, dialect: str) -> None:
    """A context refused after its audio began (here: text past the utterance's length limit) is ended by the server
    for a broken rule: its row carries the refusal's code (a 4xx, not INTERNAL_ERROR) and it is charged for the
    audio that reached the socket. It was refunded in full as a server error: an over-long last piece made any
    context's audio free."""
    raw, key_id = app.new_key()
    path, opening, keep, is_audio = DIALECTS[dialect]
    key = "transcript" if dialect == "cartesia" else "text"
    with app.client.websocket_connect(path.format(key=raw)) as ws:
        for message in opening:
            ws.send_text(json.dumps(message))
        _until_audio(ws, is_audio)
        ws.send_text(
            json.dumps({**keep, key: " word" * 100})
        )  # 500 more characters: past max_text_chars (600)
        for _ in range(2000):
            message = _receive(ws)
            if isinstance(message, dict) and message.get("error"):
                break
        ws.close()
    [row] = app.settled(key_id)
    assert row.status == "failed" and row.error_code == "TEXT_TOO_LONG", row
    assert 0 < row.credits_charged <= len(normalize_text(TEXT).text), row
