"""Every client message of every WebSocket dialect, fuzzed: hostile JSON (integers over Python's digit limit,
infinite floats, deep nesting, wrong types, unknown fields) is refused with the protocol's 4xx error, never a
server error. The parsers are fuzzed in process (fast); the sockets get the worst frames end to end."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.websockets import WebSocketDisconnect

from api import create_app
from api.errors import ApiError
from api.protocols.cartesia.requests import parse_client_message as parse_cartesia
from api.protocols.elevenlabs.requests import parse_client_message as parse_elevenlabs
from api.protocols.native.requests import MESSAGE_TYPES
from api.protocols.native.requests import parse_message as parse_native
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings
from tests.conftest import wait_in_portal


@dataclass(frozen=True)
class Raw:
    """JSON text written as is: what `json.dumps` cannot make (a 5,000-digit integer, 1e400, 10,000 brackets)."""

    text: str


def _dumps(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    return json.dumps(value)


HUGE = [
    Raw("9" * 5000),
    Raw("-" + "1" * 4301),
    Raw("1e400"),
    Raw("-1e400"),
    Raw("1e-400"),
    Raw("1" * 4300),
    Raw("[" * 5000 + "]" * 5000),
    Raw('{"a":' * 3000 + "1" + "}" * 3000),
    Raw("0." + "1" * 5000),
]
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(HUGE),
    st.sampled_from(["pcm", "wav", "fixed", "id", "raw", "pcm_s16le", " "]),
)
VALUES = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

NATIVE_FIELDS = [
    "type",
    "speaker",
    "voice",
    "format",
    "sample_rate",
    "output",
    "normalize",
    "speed",
    "latency",
    "normalize_verbose",
    "timestamps",
    "text",
    "id",
    "temperature",
    "top_k",
    "top_p",
    "max_tokens",
    "repetition_penalty",
    "seed",
    "stream",
    "chunking",
]
ELEVENLABS_FIELDS = [
    "text",
    "context_id",
    "voice_settings",
    "generation_config",
    "flush",
    "try_trigger_generation",
    "close_context",
    "immediate",
    "close_socket",
    "xi_api_key",
]
CARTESIA_FIELDS = [
    "context_id",
    "cancel",
    "transcript",
    "model_id",
    "voice",
    "output_format",
    "language",
    "add_timestamps",
    "use_normalized_timestamps",
    "max_buffer_delay_ms",
    "generation_config",
    "speed",
    "flush",
    "continue",
]
NESTED = {
    "voice_settings": ["speed", "stability", "similarity_boost", "style", "use_speaker_boost"],
    "voice": ["mode", "id"],
    "output_format": ["container", "encoding", "sample_rate"],
    "generation_config": ["speed", "volume", "emotion", "chunk_length_schedule"],
}


@st.composite
def messages(draw: st.DrawFn, fields: list[str], types: tuple[str, ...] = ()) -> str:
    """One frame: usually an object of the dialect's fields (a known `type` where the dialect has one), some of
    them nested objects of their own fields, any of them hostile; sometimes not an object at all."""
    if draw(st.integers(0, 9)) == 0:
        return _dumps(draw(VALUES))
    names = draw(st.lists(st.sampled_from(fields), max_size=6, unique=True))
    message: dict[str, Any] = {}
    if types and draw(st.booleans()):
        message["type"] = draw(st.sampled_from(types))
    for name in names:
        if name in NESTED and draw(st.booleans()):
            inner = draw(st.lists(st.sampled_from(NESTED[name]), max_size=3, unique=True))
            message[name] = {sub: draw(VALUES) for sub in inner}
        else:
            message[name] = draw(VALUES)
    if draw(st.integers(0, 4)) == 0:
        message[draw(st.text(max_size=8))] = draw(VALUES)
    return _dumps(message)


def _refused_as_client_error(parse: Callable[[str], Any], raw: str) -> None:
    try:
        parse(raw)
    except ApiError as err:
        assert err.code != "INTERNAL_ERROR" and 400 <= err.status < 500, (err.code, err.status, raw[:200])


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(messages(NATIVE_FIELDS, MESSAGE_TYPES))
def test_native_messages_are_parsed_or_refused_with_a_4xx(raw: str) -> None:
    _refused_as_client_error(parse_native, raw)


@FUZZ
@given(messages(ELEVENLABS_FIELDS))
def test_elevenlabs_messages_are_parsed_or_refused_with_a_4xx(raw: str) -> None:
    _refused_as_client_error(parse_elevenlabs, raw)


@FUZZ
@given(messages(CARTESIA_FIELDS))
def test_cartesia_messages_are_parsed_or_refused_with_a_4xx(raw: str) -> None:
    _refused_as_client_error(parse_cartesia, raw)


@pytest.mark.parametrize("parse", [parse_native, parse_elevenlabs, parse_cartesia])
@pytest.mark.parametrize(
    "raw",
    [h.text for h in HUGE] + ['{"text": ' + "9" * 5000 + "}", '{"type": "ping", "id": ' + "9" * 5000 + "}"],
)
def test_numbers_past_the_digit_limit_and_deep_nesting_are_invalid_json(
    parse: Callable[[str], Any], raw: str
) -> None:
    _refused_as_client_error(parse, raw)


# ------------------------------------------------------------------------------------------ end to end, per socket
SOCKETS = {
    "native": ("/v1/tts/ws", {"type": "ping", "id": 1}),
    "elevenlabs": (
        "/v1/text-to-speech/fixed/multi-stream-input?output_format=pcm_16000",
        {"text": "", "context_id": "c1"},
    ),
    "cartesia": ("/tts/websocket?cartesia_version=2026-03-01", {"context_id": "c1", "cancel": True}),
}
HOSTILE_FRAMES = [
    '{"text": ' + "9" * 5000 + "}",
    '{"type": "start", "sample_rate": ' + "9" * 5000 + "}",
    '{"context_id": "c1", "text": " ", "voice_settings": {"speed": ' + "9" * 5000 + "}}",
    '{"context_id": "c1", "transcript": "hi", "max_buffer_delay_ms": ' + "9" * 5000 + "}",
    '{"context_id": "c1", "speed": 1e400, "voice_settings": {"speed": -1e400}}',
    "[" * 5000 + "]" * 5000,
    '{"context_id": ' + "[" * 3000 + "]" * 3000 + "}",
    '{"type": ["start"], "text": {"a": 1}, "context_id": 7, "voice": 3, "output_format": "x"}',
    '{"context_id": "c2", "transcript": "x", "voice": {"mode": "id", "id": ' + "9" * 5000 + "}}",
    "null",
    "7",
    '"text"',
]


@pytest.fixture(scope="module")
def client(demo_model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=demo_model_dir,
        warmup=False,
        log_json=False,
        sr_enabled=False,
        auth_enabled=False,
        rate_limit_per_minute=10_000,
        ws_idle_timeout_s=60,
    )
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as test_client:
        wait_in_portal(test_client, lambda: runtime.ready)
        yield test_client


@pytest.mark.parametrize("dialect", list(SOCKETS))
def test_hostile_frames_get_a_client_error_and_the_socket_serves_on(client: TestClient, dialect: str) -> None:
    """Each hostile frame is answered on the socket (or closes it with a policy code), never with an internal error
    or 1011; a socket that survives still answers an ordinary message."""
    path, ordinary = SOCKETS[dialect]
    for frame in HOSTILE_FRAMES:
        with client.websocket_connect(path) as ws:
            ws.send_text(frame)
            ws.send_text(json.dumps(ordinary))
            ws.send_text(json.dumps({"type": "end"} if dialect == "native" else {"close_socket": True}))
            seen: list[str] = []
            try:
                for _ in range(20):
                    message = ws.receive()
                    if message["type"] == "websocket.close":
                        assert message.get("code") != 1011, (dialect, frame[:80], seen)
                        break
                    seen.append(message.get("text") or "")
                    if dialect == "cartesia" and len(seen) >= 2:
                        break
                    if dialect == "native" and '"pong"' in seen[-1]:
                        break
            except WebSocketDisconnect as exc:
                assert exc.code != 1011, (dialect, frame[:80], seen)
            assert seen or dialect == "elevenlabs", (dialect, frame[:80])
            assert not any("internal" in text.lower() for text in seen), (dialect, frame[:80], seen)
