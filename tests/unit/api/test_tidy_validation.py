"""Small request checks, through the real app: a NaN speed is named as such, `speed: true` is refused, a repeated
previous request id is refused, and a body that is not UTF-8 is INVALID_JSON (ElevenLabs' `malformed_json`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.demo_runtime import demo_client

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def client(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with demo_client(demo_model_dir, tmp_path_factory.mktemp("voices")) as test_client:
        yield test_client


def error(response) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    return response.json()["error"]


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/audio/speech", b'{"input": "Hi.", "speed": NaN}'),
        ("/v1/tts/generate", b'{"text": "Hi.", "speed": NaN}'),
        ("/v1/tts/generate", b'{"text": "Hi.", "speed": Infinity}'),
    ],
)
def test_a_speed_that_is_not_a_finite_number_is_named_as_such(
    client: TestClient, path: str, body: bytes
) -> None:
    found = error(client.post(path, content=body, headers=JSON))
    assert found["code"] == "VALIDATION_ERROR" and found["param"] == "speed"
    assert (
        "finite number from 0.25 to 4.0" in found["message"] and "less than or equal" not in found["message"]
    )


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/audio/speech", {"input": "Hi.", "speed": True}),
        ("/v1/tts/generate", {"text": "Hi.", "speed": False}),
    ],
)
def test_a_boolean_speed_is_refused(client: TestClient, path: str, body: dict) -> None:
    found = error(client.post(path, json=body))
    assert found["code"] == "VALIDATION_ERROR" and found["param"] == "speed" and "not " in found["message"]


def test_a_boolean_speed_is_refused_on_the_elevenlabs_route(client: TestClient) -> None:
    response = client.post(
        "/v1/text-to-speech/default", json={"text": "Hi.", "voice_settings": {"speed": True}}
    )
    assert response.status_code in (400, 422)
    assert response.json()["detail"]["code"] == "invalid_parameters"


def test_a_repeated_previous_request_id_is_refused(client: TestClient) -> None:
    found = error(
        client.post("/v1/tts/generate", json={"text": "Hi.", "previous_request_ids": ["abc", "abc"]})
    )
    assert found["code"] == "VALIDATION_ERROR" and found["param"] == "previous_request_ids"
    assert "twice" in found["message"]


@pytest.mark.parametrize("body", [b'{"text": "caf\xe9"}', b'\xff{"text": "Hi."}', b'{"text": "\xc3\x28"}'])
def test_a_body_that_is_not_utf8_is_invalid_json(client: TestClient, body: bytes) -> None:
    found = error(client.post("/v1/tts/generate", content=body, headers=JSON))
    assert found["code"] == "INVALID_JSON" and "UTF-8" in found["message"]
    response = client.post("/v1/text-to-speech/default", content=body, headers=JSON)
    assert response.status_code == 400 and response.json()["detail"]["code"] == "malformed_json"
