"""A word no try can speak is refused on every socket before it is charged or reaches the model, as HTTP refuses it
with 400 (`check_words_speakable`): the dialect's own VALIDATION_ERROR shape, never GENERATION_FAILED after tries;
a word split over several text messages counts whole. The socket stays usable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import create_app
from services.deployment.runtime import ModelRuntime
from services.pipeline.text_plan import MAX_WORD_LETTERS
from shared.settings import Settings
from tests.conftest import wait_in_portal

LONG = "a" * 10_000
HALF = "b" * (MAX_WORD_LETTERS // 2 + 1)  # two of them make one word over the bound


@pytest.fixture(scope="module")
def client(demo_model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=False,
        warmup=False,
        log_json=False,
        sr_enabled=False,
        default_max_tokens=30,
        max_text_chars=20_000,
    )
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as test_client:
        wait_in_portal(test_client, lambda: runtime.ready)
        yield test_client


def _native(client: TestClient, pieces: list[str]) -> dict:
    with client.websocket_connect("/v1/tts/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "speaker": "fixed", "format": "pcm", "sample_rate": 16000}))
        for piece in pieces:
            ws.send_text(json.dumps({"type": "text", "text": piece}))
        ws.send_text(json.dumps({"type": "end"}))
        while True:
            message = ws.receive()
            if message.get("text") and json.loads(message["text"]).get("type") == "error":
                return json.loads(message["text"])["error"]


def _elevenlabs(client: TestClient, pieces: list[str]) -> dict:
    path = "/v1/text-to-speech/fixed/multi-stream-input?output_format=pcm_16000"
    with client.websocket_connect(path) as ws:
        ws.send_text(json.dumps({"text": " ", "context_id": "c"}))
        for piece in pieces:
            ws.send_text(json.dumps({"text": piece, "context_id": "c"}))
        ws.send_text(json.dumps({"context_id": "c", "flush": True}))
        error: dict[str, Any] = {}
        while not (message := json.loads(ws.receive_text())).get("isFinal"):
            error = message if message.get("error") else error
        ws.send_text(json.dumps({"close_socket": True}))
        return {"code": error.get("code"), "message": error.get("message")}


def _cartesia(client: TestClient, pieces: list[str]) -> dict:
    fields = {
        "model_id": "sonic-2",
        "voice": {"mode": "id", "id": "fixed"},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
    }
    with client.websocket_connect("/tts/websocket?cartesia_version=2026-03-01") as ws:
        for i, piece in enumerate(pieces):
            ws.send_text(
                json.dumps(
                    {"context_id": "c", "transcript": piece, "continue": i < len(pieces) - 1, **fields}
                )
            )
        while True:
            message = json.loads(ws.receive_text())
            if message.get("type") == "error" or message.get("error"):
                return {
                    "code": message.get("error_code") or message.get("code"),
                    "message": message.get("error"),
                }
            assert message.get("type") != "done", message


@pytest.mark.parametrize(
    "dialect", [_native, _elevenlabs, _cartesia], ids=["native", "elevenlabs", "cartesia"]
)
@pytest.mark.parametrize("pieces", [[LONG], ["Hello ", HALF, HALF + " there."]], ids=["one", "split"])
def test_an_unspeakable_word_is_refused_with_the_dialects_4xx(
    client: TestClient, dialect: Any, pieces: list[str]
) -> None:
    error = dialect(client, pieces)
    assert "validation_error" in json.dumps(error).lower(), error  # Cartesia writes its codes in lower case
    assert "letters" in json.dumps(error)
