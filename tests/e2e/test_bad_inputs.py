"""Bad requests against the real server: each gets a 4xx with the error envelope, a request id, and a message
that says what was wrong; where one field is at fault, `param` names it and so does the message."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

GENERATE = "/v1/tts/generate"
SPEECH = "/v1/audio/speech"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        yield http


def assert_envelope(response: httpx.Response, status: int, code: str, param: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text[:400]
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-request-id")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str) and len(error["message"]) > 10
    if param is not None:
        assert f"'{param}'" in error["message"], f"message does not name {param!r}: {error['message']}"
    return error


FIELD_CASES = [
    # (id, body, status, code, param, words the message must contain)
    ("empty-text", {"text": ""}, 400, "VALIDATION_ERROR", "text", ["at least 1 character"]),
    ("whitespace-text", {"text": "  \n\t  "}, 400, "VALIDATION_ERROR", "text", ["empty or whitespace"]),
    ("text-50001", {"text": "a" * 50_001}, 413, "TEXT_TOO_LONG", "text", ["50000"]),
    ("bell-character", {"text": "hello\x07world"}, 400, "VALIDATION_ERROR", "text", ["U+0007", "position 5"]),
    ("escape-sequence", {"text": "red \x1b[31m text"}, 400, "VALIDATION_ERROR", "text", ["U+001B"]),
    ("nul-character", {"text": "a\x00b"}, 400, "VALIDATION_ERROR", "text", ["U+0000"]),
    ("missing-text", {"speaker": "default"}, 400, "VALIDATION_ERROR", "text", ["required"]),
    ("text-not-string", {"text": 5}, 400, "VALIDATION_ERROR", "text", ["string"]),
    (
        "unknown-voice",
        {"text": "Hi.", "speaker": "nobody"},
        400,
        "INVALID_SPEAKER",
        "speaker",
        ["nobody", "default"],
    ),
    ("unknown-format", {"text": "Hi.", "format": "wma"}, 400, "VALIDATION_ERROR", "format", ["wav", "mulaw"]),
    ("unknown-output", {"text": "Hi.", "output": "96khz"}, 400, "VALIDATION_ERROR", "output", ["48khz"]),
    ("temperature-high", {"text": "Hi.", "temperature": 5}, 400, "VALIDATION_ERROR", "temperature", ["2"]),
    (
        "temperature-negative",
        {"text": "Hi.", "temperature": -0.1},
        400,
        "VALIDATION_ERROR",
        "temperature",
        ["0"],
    ),
    (
        "temperature-not-number",
        {"text": "Hi.", "temperature": "hot"},
        400,
        "VALIDATION_ERROR",
        "temperature",
        ["number"],
    ),
    ("top-k-zero", {"text": "Hi.", "top_k": 0}, 400, "VALIDATION_ERROR", "top_k", ["1"]),
    ("top-p-zero", {"text": "Hi.", "top_p": 0}, 400, "VALIDATION_ERROR", "top_p", ["0"]),
    ("top-p-high", {"text": "Hi.", "top_p": 1.5}, 400, "VALIDATION_ERROR", "top_p", ["1"]),
    ("max-tokens-zero", {"text": "Hi.", "max_tokens": 0}, 400, "VALIDATION_ERROR", "max_tokens", ["1"]),
    (
        "max-tokens-huge",
        {"text": "Hi.", "max_tokens": 100_000},
        400,
        "VALIDATION_ERROR",
        "max_tokens",
        ["8192"],
    ),
    (
        "repetition-penalty",
        {"text": "Hi.", "repetition_penalty": 9},
        400,
        "VALIDATION_ERROR",
        "repetition_penalty",
        ["2"],
    ),
    ("seed-negative", {"text": "Hi.", "seed": -1}, 400, "VALIDATION_ERROR", "seed", ["0"]),
    (
        "sample-rate",
        {"text": "Hi.", "sample_rate": 12345},
        400,
        "VALIDATION_ERROR",
        "sample_rate",
        ["12345", "16000"],
    ),
    (
        "mulaw-at-16k",
        {"text": "Hi.", "format": "mulaw", "sample_rate": 16000},
        400,
        "VALIDATION_ERROR",
        "sample_rate",
        ["mulaw", "8000"],
    ),
    (
        "opus-at-44k",
        {"text": "Hi.", "format": "opus", "sample_rate": 44100},
        400,
        "VALIDATION_ERROR",
        "sample_rate",
        ["opus", "48000"],
    ),
    ("stream-not-bool", {"text": "Hi.", "stream": "maybe"}, 400, "VALIDATION_ERROR", "stream", ["boolean"]),
    (
        "unknown-field",
        {"text": "Hi.", "voices": "alloy"},
        400,
        "VALIDATION_ERROR",
        "voices",
        ["not permitted"],
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "code", "param", "words"),
    [c[1:] for c in FIELD_CASES],
    ids=[c[0] for c in FIELD_CASES],
)
def test_generate_rejects_bad_fields(
    client: httpx.Client, body: dict, status: int, code: str, param: str, words: list[str]
) -> None:
    error = assert_envelope(client.post(GENERATE, json=body), status, code, param)
    for word in words:
        assert word in error["message"], error["message"]


OPENAI_CASES = [
    ("empty-input", {"input": ""}, 400, "VALIDATION_ERROR", "input"),
    ("missing-input", {"model": "tts-1", "voice": "alloy"}, 400, "VALIDATION_ERROR", "input"),
    ("input-50001", {"input": "a" * 50_001}, 413, "TEXT_TOO_LONG", "input"),
    ("control-character", {"input": "a\x07b"}, 400, "VALIDATION_ERROR", "input"),
    ("unknown-voice", {"input": "Hi.", "voice": "zzz"}, 400, "INVALID_SPEAKER", "voice"),
    (
        "unknown-format",
        {"input": "Hi.", "response_format": "wma"},
        400,
        "VALIDATION_ERROR",
        "response_format",
    ),
    ("speed", {"input": "Hi.", "speed": 9}, 400, "VALIDATION_ERROR", "speed"),
    ("stream-format", {"input": "Hi.", "stream_format": "chunks"}, 400, "VALIDATION_ERROR", "stream_format"),
]


@pytest.mark.parametrize(
    ("body", "status", "code", "param"), [c[1:] for c in OPENAI_CASES], ids=[c[0] for c in OPENAI_CASES]
)
def test_openai_speech_rejects_bad_fields(
    client: httpx.Client, body: dict, status: int, code: str, param: str
) -> None:
    assert_envelope(client.post(SPEECH, json=body), status, code, param)


def test_body_that_is_not_json(client: httpx.Client) -> None:
    error = assert_envelope(
        client.post(GENERATE, content=b'{"text": "Hi.",', headers=JSON), 400, "INVALID_JSON", None
    )
    assert "JSON" in error["message"]


def test_body_that_is_not_an_object(client: httpx.Client) -> None:
    error = assert_envelope(client.post(GENERATE, json=["Hi."]), 400, "VALIDATION_ERROR", None)
    assert "JSON object" in error["message"]


def test_empty_body(client: httpx.Client) -> None:
    error = assert_envelope(client.post(GENERATE, content=b"", headers=JSON), 400, "VALIDATION_ERROR", None)
    assert "empty" in error["message"]


@pytest.mark.parametrize(
    ("content_type", "shown"),
    [("text/plain", "text/plain"), (None, "none"), ("application/x-www-form-urlencoded", "form-urlencoded")],
)
def test_wrong_content_type(client: httpx.Client, content_type: str | None, shown: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(GENERATE, content=b'{"text": "Hi."}', headers=headers)
    error = assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type")
    assert shown in error["message"] and "application/json" in error["message"]


def test_oversize_body_with_content_length(client: httpx.Client) -> None:
    body = b'{"text": "' + b"a" * 1_100_000 + b'"}'
    error = assert_envelope(client.post(GENERATE, content=body, headers=JSON), 413, "PAYLOAD_TOO_LARGE", None)
    assert "1000000 bytes" in error["message"]


def test_oversize_chunked_body(client: httpx.Client) -> None:
    # No Content-Length: the limit has to be enforced while the body streams in.
    parts = [b'{"text": "'] + [b"a" * 100_000] * 12 + [b'"}']
    response = client.post(GENERATE, content=iter(parts), headers=JSON)
    error = assert_envelope(response, 413, "PAYLOAD_TOO_LARGE", None)
    assert "1000000 bytes" in error["message"]


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/tts/nothing"), ("GET", "/v9/tts/generate"), ("GET", "/nothing")]
)  # "/" redirects to the playground
def test_unknown_route(client: httpx.Client, method: str, path: str) -> None:
    error = assert_envelope(client.request(method, path), 404, "NOT_FOUND", None)
    assert path in error["message"]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", GENERATE), ("PUT", GENERATE), ("DELETE", SPEECH), ("POST", "/v1/tts/health")]
)
def test_wrong_method(client: httpx.Client, method: str, path: str) -> None:
    error = assert_envelope(client.request(method, path), 405, "METHOD_NOT_ALLOWED", None)
    assert method in error["message"] and path in error["message"]


def test_server_still_serves_after_bad_requests(client: httpx.Client) -> None:
    response = client.post(GENERATE, json={"text": "Still fine.", "max_tokens": 5})
    assert response.status_code == 200
    assert len(response.content) == 44 + 5 * 320 * 2
