"""Every refusal on the dialects' HTTP routes comes back in that vendor's documented shape, with our status code,
Retry-After and request ids kept: ElevenLabs `{"detail": {"type", "code", "message", "status", "request_id",
"param"}}`, Cartesia `{"error_code", "title", "message", "request_id"}`. Our own routes keep our envelope.

The real app on the demo checkpoint with static keys (one rich, one with no credits, one allowed one request a
minute); load shedding runs on a test clock, and the 500 comes from a speech service made to raise."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from services.access import hash_key
from services.deployment.runtime import ModelRuntime
from services.pipeline.load_shed import BACKLOG
from shared.settings import Settings
from tests.conftest import wait_in_portal

KEYS = {"rich": {}, "poor": {"credit_balance": 0}, "limited": {"rate_limit_per_minute": 1}}
CLIENT_ID = "client-request-7"


def _eleven(path: str) -> tuple[str, str, Callable[..., dict]]:
    return ("elevenlabs", path, lambda text="Hello.", voice="default": {"text": text})


def _cartesia(path: str) -> tuple[str, str, Callable[..., dict]]:
    return (
        "cartesia",
        path,
        lambda text="Hello.", voice="default": {
            "model_id": "sonic-3",
            "transcript": text,
            "voice": {"mode": "id", "id": voice},
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        },
    )


# (dialect, path with {voice}, body(text, voice))
SYNTHESIS_ROUTES = [
    _eleven("/v1/text-to-speech/{voice}?output_format=pcm_16000"),
    _eleven("/v1/text-to-speech/{voice}/stream?output_format=pcm_16000"),
    _eleven("/v1/text-to-speech/{voice}/with-timestamps?output_format=pcm_16000"),
    _eleven("/v1/text-to-speech/{voice}/stream/with-timestamps?output_format=pcm_16000"),
    _cartesia("/tts/bytes"),
    _cartesia("/tts/sse"),
]
IDS = [f"{d}:{p.split('?')[0]}" for d, p, _ in SYNTHESIS_ROUTES]


@pytest.fixture(scope="module")
def client(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    keys_file = tmp_path_factory.mktemp("keys") / "keys.json"
    keys_file.write_text(
        json.dumps(
            [{"key_id": name, "key_hash": hash_key(f"key-{name}"), **fields} for name, fields in KEYS.items()]
        )
    )
    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=True,
        api_keys_file=keys_file,
        credits_enabled=True,
        warmup=False,
        log_json=False,
        sr_enabled=False,
        shed_first_audio_s=5.0,
        rate_limit_per_minute=10_000,
    )
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime), raise_server_exceptions=False) as test_client:
        wait_in_portal(test_client, lambda: runtime.ready)
        yield test_client


def _headers(dialect: str, key: str | None) -> dict[str, str]:
    headers = {"X-Request-ID": CLIENT_ID, "Cartesia-Version": "2026-03-01"}
    if key is not None:
        headers["xi-api-key" if dialect == "elevenlabs" else "Authorization"] = (
            key if dialect == "elevenlabs" else f"Bearer {key}"
        )
    return headers


def _post(
    client: TestClient,
    route: tuple,
    *,
    key: str | None = "key-rich",
    voice: str = "default",
    text: str = "Hello.",
    content: bytes | None = None,
):
    dialect, path, body = route
    url = path.format(voice=voice)
    if content is not None:
        return client.post(
            url, content=content, headers={**_headers(dialect, key), "Content-Type": "application/json"}
        )
    return client.post(url, json=body(text, voice), headers=_headers(dialect, key))


def _refusal(
    response, dialect: str, status: int | tuple[int, ...], vendor_code: str, vendor_type: str | None = None
) -> dict:
    """The vendor's shape, our status and request ids; returns the error object."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["X-Request-ID"] == CLIENT_ID and response.headers["X-Server-Request-ID"]
    body = response.json()
    if dialect == "elevenlabs":
        assert set(body) == {"detail"}
        detail = body["detail"]
        assert set(detail) == {"type", "code", "message", "status", "request_id", "param"}
        assert detail["code"] == vendor_code and detail["message"]
        assert vendor_type is None or detail["type"] == vendor_type
        assert detail["request_id"] == response.headers["X-Server-Request-ID"]
        return detail
    assert set(body) == {"error_code", "title", "message", "request_id"}
    assert body["error_code"] == vendor_code and body["title"] and body["message"]
    assert body["request_id"] == response.headers["X-Server-Request-ID"]
    return body


@pytest.mark.parametrize("route", SYNTHESIS_ROUTES, ids=IDS)
def test_request_errors_in_the_dialects_shape(client: TestClient, route: tuple) -> None:
    dialect = route[0]
    eleven = dialect == "elevenlabs"
    # body validation (FastAPI's, before the route runs)
    error = _refusal(
        _post(client, route, text=""), dialect, 400, "invalid_parameters" if eleven else "validation_error"
    )
    assert (error["param"] == "text") if eleven else ("transcript" in error["message"])
    _refusal(
        _post(client, route, content=b"{not json"),
        dialect,
        400,
        "malformed_json" if eleven else "invalid_json",
    )
    # a control character (the fuzz test found it answered 500 on ElevenLabs' routes)
    _refusal(
        _post(client, route, text="\x1f"),
        dialect,
        400,
        "invalid_parameters" if eleven else "validation_error",
    )
    # an unknown voice
    _refusal(
        _post(client, route, voice="nobody"),
        dialect,
        (400, 404),
        "voice_not_found" if eleven else "invalid_speaker",
        "not_found",
    )
    # text over the limit, and a body over the body-size cap (refused by the middleware before the app)
    error = _refusal(
        _post(client, route, text="x" * 50_001), dialect, 413, "text_too_long" if eleven else "text_too_long"
    )
    if eleven:
        assert error["status"] == "max_character_limit_exceeded"  # the legacy field older clients match on
    _refusal(
        _post(client, route, content=b" " * 1_000_001),
        dialect,
        413,
        "request_too_large" if eleven else "payload_too_large",
    )


def _use_the_limited_keys_minute(client: TestClient) -> None:
    """Its one request of the minute (refused after the limits, so no synthesis): the next is over the rate."""
    client.post(
        "/v1/tts/generate",
        json={"text": "Hi.", "speaker": "nobody"},
        headers={"Authorization": "Bearer key-limited"},
    )


@pytest.mark.parametrize("route", SYNTHESIS_ROUTES, ids=IDS)
def test_access_refusals_in_the_dialects_shape(client: TestClient, route: tuple) -> None:
    dialect = route[0]
    eleven = dialect == "elevenlabs"
    missing = _refusal(
        _post(client, route, key=None),
        dialect,
        401,
        "missing_api_key" if eleven else "invalid_api_key",
        "authentication_error",
    )
    if eleven:
        assert "xi-api-key" in missing["message"]  # the header ElevenLabs' clients know
    _refusal(_post(client, route, key="key-wrong"), dialect, 401, "invalid_api_key", "authentication_error")
    error = _refusal(
        _post(client, route, key="key-poor"), dialect, 403, "insufficient_credits", "payment_required"
    )
    if eleven:
        assert error["status"] == "quota_exceeded"
    _use_the_limited_keys_minute(client)
    refused = _post(client, route, key="key-limited")
    _refusal(refused, dialect, 429, "rate_limit_exceeded", "rate_limit_error")
    assert int(refused.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("route", SYNTHESIS_ROUTES, ids=IDS)
def test_server_errors_in_the_dialects_shape(
    client: TestClient, route: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    dialect = route[0]
    eleven = dialect == "elevenlabs"
    stuck = object()  # load shedding: an admitted request has waited past the bound for its first audio
    clock = {"now": 1000.0}
    monkeypatch.setattr(BACKLOG, "clock", lambda: clock["now"])
    BACKLOG.enter(stuck)
    try:
        clock["now"] += 6.0
        shed = _post(client, route)
    finally:
        BACKLOG.leave(stuck)
    _refusal(shed, dialect, 503, "system_busy" if eleven else "server_overloaded", "rate_limit_error")
    assert int(shed.headers["Retry-After"]) >= 1

    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(client.app.state.services.speech, "open", broken)
    _refusal(_post(client, route), dialect, 500, "internal_error", "internal_error")


def test_elevenlabs_voices_refusals(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def get(key: str):  # Bearer: the voice list reads a key from Authorization / X-API-Key only
        return client.get("/v1/voices", headers={"Authorization": f"Bearer {key}", "X-Request-ID": CLIENT_ID})

    assert get("key-rich").status_code == 200
    _refusal(get("key-wrong"), "elevenlabs", 401, "invalid_api_key", "authentication_error")
    # ElevenLabs' own header counts here too: a wrong key is refused, not answered with the built-in voices
    _refusal(
        client.get("/v1/voices", headers={"xi-api-key": "key-wrong", "X-Request-ID": CLIENT_ID}),
        "elevenlabs",
        401,
        "invalid_api_key",
        "authentication_error",
    )
    assert client.get("/v1/voices", headers={"xi-api-key": "key-rich"}).status_code == 200
    _use_the_limited_keys_minute(client)
    refused = get("key-limited")
    _refusal(refused, "elevenlabs", 429, "rate_limit_exceeded", "rate_limit_error")
    assert int(refused.headers["Retry-After"]) >= 1
    _refusal(
        client.post("/v1/voices", headers=_headers("elevenlabs", "key-rich")),
        "elevenlabs",
        405,
        "bad_request",
        "invalid_request",
    )

    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(client.app.state.services.library, "list", broken)
    _refusal(get("key-rich"), "elevenlabs", 500, "internal_error", "internal_error")
    monkeypatch.undo()
    _our_routes_keep_our_envelope(client)


def _our_routes_keep_our_envelope(client: TestClient) -> None:
    headers = {"Authorization": "Bearer key-wrong", "X-Request-ID": CLIENT_ID}
    for response in (
        client.post("/v1/tts/generate", json={"text": "Hi."}, headers=headers),
        client.post(
            "/v1/audio/speech", json={"input": "Hi.", "model": "tts-1", "voice": "alloy"}, headers=headers
        ),
        client.get("/v1/audio/voices", headers=headers),
    ):
        assert response.status_code == 401 and response.headers["X-Request-ID"] == CLIENT_ID
        assert response.json()["error"]["code"] == "INVALID_API_KEY"
    rich = {"Authorization": "Bearer key-rich"}
    missing = client.post("/v1/tts/generate", json={}, headers=rich)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "text"
    assert (
        client.post("/v1/tts/generate", json={"text": "Hi.", "speaker": "nobody"}, headers=rich).json()[
            "error"
        ]["code"]
        == "INVALID_SPEAKER"
    )
