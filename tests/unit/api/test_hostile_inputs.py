"""Input-driven errors are 4xx on every route (issue 98): Unicode digits in every numeric or token query field
(`"²".isdigit()` is true, `int("²")` raises), JSON nested 100,000 deep on every JSON route (`RecursionError` is not a
`ValueError`), and lone surrogates in every socket's first message (an ElevenLabs `xi_api_key: "\\ud800"` crashed
the socket without a close frame, before any key was checked, and was never throttled)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api import create_app
from api.lone_surrogates import has_lone_surrogate
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings
from tests.conftest import wait_in_portal

KEY = "hostile-inputs-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
DIGITS = ["²", "٣", "１", "1²"]  # superscript, Arabic-Indic, full-width: isdigit() true, not ASCII
NESTED = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def client(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=True,
        api_keys=KEY,
        warmup=False,
        log_json=False,
        sr_enabled=False,
        voice_dir=tmp_path_factory.mktemp("voices"),
        jobs_dir=tmp_path_factory.mktemp("jobs"),
        rate_limit_per_minute=100_000,
    )
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime), raise_server_exceptions=False) as test_client:
        wait_in_portal(test_client, lambda: runtime.ready)
        yield test_client


def _operations(client: TestClient, methods: set[str]) -> list[tuple[str, str, list[str]]]:
    """(method, path with its parameters named by themselves, query parameter names) of every documented route."""
    found = []
    for template, operations in client.app.openapi()["paths"].items():
        path = template.replace("{", "").replace("}", "")
        for method, operation in operations.items():
            if method.upper() in methods:
                query = [p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"]
                found.append((method.upper(), path, query))
    return found


def test_deep_json_nesting_is_a_client_error_on_every_json_route(client: TestClient) -> None:
    routes = _operations(client, {"POST", "PUT", "PATCH"})
    assert len(routes) >= 15
    for method, path, _ in routes:
        answer = client.request(
            method, path, content=NESTED, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert answer.status_code < 500, (method, path, answer.status_code, answer.text[:300])


def test_unicode_digits_are_a_client_error_in_every_query_field(client: TestClient) -> None:
    checked = 0
    for method, path, query in _operations(client, {"GET", "DELETE", "POST"}):
        for name in query:
            for digits in DIGITS:
                answer = client.request(method, path, params={name: digits}, headers=AUTH)
                assert answer.status_code < 500, (method, path, name, digits, answer.text[:300])
                checked += 1
    assert checked >= 20
    answer = client.get("/v2/voices", params={"next_page_token": "²"}, headers={"xi-api-key": KEY})
    assert answer.status_code == 400 and answer.json()["detail"]["param"] == "next_page_token"


SURROGATE = '"\\ud800"'  # JSON text: the escape of a lone surrogate, which json.loads turns into one
FIRST_MESSAGES = {
    "/v1/text-to-speech/fixed/multi-stream-input?output_format=pcm_16000": [
        '{"text": " ", "xi_api_key": ' + SURROGATE + "}",
        '{"text": ' + SURROGATE + ', "xi_api_key": "' + KEY + '"}',
        '{"text": " ", "xi_api_key": "' + KEY + '", "context_id": ' + SURROGATE + "}",
    ],
    "/v1/text-to-speech/fixed/stream-input?output_format=pcm_16000": [
        '{"text": " ", "xi_api_key": ' + SURROGATE + "}",
        '{"text": " ", "xi_api_key": "' + KEY + '", "voice_settings": {"speed": ' + SURROGATE + "}}",
    ],
    f"/v1/tts/ws?api_key={KEY}": [
        '{"type": "start", "speaker": ' + SURROGATE + "}",
        '{"text": ' + SURROGATE + "}",
    ],
    f"/tts/websocket?api_key={KEY}&cartesia_version=2026-03-01": [
        '{"context_id": ' + SURROGATE + ', "transcript": "hi", "voice": {"mode": "id", "id": "fixed"}}',
        '{"context_id": "c1", "transcript": ' + SURROGATE + ', "voice": {"mode": "id", "id": "fixed"}}',
    ],
}


@pytest.mark.parametrize(
    ("path", "frame"), [(path, frame) for path, frames in FIRST_MESSAGES.items() for frame in frames]
)
def test_a_lone_surrogate_in_a_sockets_first_message_is_refused_in_the_protocol(
    client: TestClient, path: str, frame: str
) -> None:
    seen: list[str] = []
    with client.websocket_connect(path, headers={}) as ws:
        ws.send_text(frame)
        try:
            for _ in range(30):
                message = ws.receive()
                if message["type"] == "websocket.close":
                    assert message.get("code") != 1011, (path, frame, seen)
                    break
                seen.append(message.get("text") or "")
                if any(word in seen[-1] for word in ('"error"', '"message"', "isFinal", '"done"')):
                    break
        except WebSocketDisconnect as exc:
            assert exc.code != 1011, (path, frame, seen)
    assert not any("internal" in text.lower() for text in seen), (path, frame, seen)
    assert seen or "elevenlabs" not in path, (path, frame)
    json.dumps(seen)  # whatever was sent back is text a client can read


@pytest.mark.parametrize(
    ("body", "lone"),
    [
        (rb'{"name": "\ud800"}', True),
        (rb'{"name": "\udc00"}', True),
        (rb'{"name": "\ud83d x \ude00"}', True),
        (rb'{"name": "\ud83d\ude00"}', False),  # a pair: one emoji
        (rb'{"name": "\\ud800"}', False),  # an escaped backslash, then text
        (rb'{"name": "\\\ud800"}', True),
        (rb'{"name": "\u0041 plain"}', False),
    ],
)
def test_lone_surrogate_escapes_are_found_in_one_pass(body: bytes, lone: bool) -> None:
    assert has_lone_surrogate(body) is lone


def test_a_stored_name_with_a_lone_surrogate_is_a_client_error(client: TestClient) -> None:
    answer = client.post(
        "/v1/pronunciation-dictionaries/add-from-rules",
        content=b'{"name": "\\ud800", "rules": [{"type": "alias", "string_to_replace": "a", "alias": "b"}]}',
        headers={"xi-api-key": KEY, "Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text


def test_the_markdown_attack_line_is_planned_in_the_engine_s_turns_and_answered_whole(
    client: TestClient,
) -> None:
    """A free `POST /v1/tts/normalize` of 40,000 `![` (the Markdown attack: after another, it slowed another key's
    first audio many times over) is a text step of the caller's key in the engine's step gate (services/device/
    key_share.py `TextTurns`), charged to that key, and still answers the whole text."""
    app = cast(FastAPI, client.app)
    gate = app.state.services.speech.models.pipeline_resources().engine.step_gate  # the CPU engine's
    before = {owner: gate.usage(owner) for owner in gate.account._used}  # noqa: SLF001 - the account's owners
    line = "![" * 20_000
    answer = client.post("/v1/tts/normalize", headers=AUTH, json={"text": line})
    assert answer.status_code == 200, answer.text
    assert answer.json()["normalized"] == line
    charged = {owner for owner in gate.account._used if gate.usage(owner) > before.get(owner, 0.0)}  # noqa: SLF001
    assert len(charged) == 1 and None not in charged  # the caller's key, charged its pieces' seconds
