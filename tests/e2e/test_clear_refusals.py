"""Requests a new user gets wrong, answered at once with what to do, against a real uvicorn
server with curl: an unknown OpenAI model id, a long non-streamed request, an unknown voice in a `[voice:NAME]` marker,
the favicon every browser asks for."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

LONG = ("The quick brown fox jumps over the lazy dog, and then it rests a while. " * 70)[:5000]


def curl(url: str, body: dict | None = None, *, max_time: float = 30) -> tuple[int, dict[str, str], bytes]:
    """POST `body` as JSON (GET without one); the status, the headers (lower-case names) and the body."""
    args = ["curl", "-sS", "-D", "-", "--max-time", str(max_time), url]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    done = subprocess.run(args, capture_output=True, timeout=max_time + 10)
    head, _, content = done.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, content


def _error(content: bytes) -> dict:
    error = json.loads(content)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    return error


def test_an_unknown_openai_model_is_a_400_naming_the_ids(server: RunningServer) -> None:
    status, _, content = curl(
        f"{server.base_url}/v1/audio/speech", {"model": "tts-9", "input": "Hi.", "voice": "alloy"}
    )
    error = _error(content)
    assert (status, error["code"], error["param"]) == (400, "VALIDATION_ERROR", "model")
    for named in ("'model'", "tts-9", "spark-tts", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"):
        assert named in error["message"], error["message"]


@pytest.mark.parametrize(
    "model", ["tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15", "spark-tts"]
)
def test_the_documented_model_ids_are_accepted(server: RunningServer, model: str) -> None:
    body = {"model": model, "input": "Hi.", "voice": "alloy", "response_format": "wav", "max_tokens": 20}
    status, headers, content = curl(f"{server.base_url}/v1/audio/speech", body)
    assert status == 200 and headers["content-type"] == "audio/wav" and content[:4] == b"RIFF", content[:300]


@pytest.mark.parametrize(
    ("route", "body", "field", "how"),
    [
        (
            "/v1/audio/speech",
            {"input": LONG, "voice": "alloy", "response_format": "wav"},
            "input",
            '"stream_format"',
        ),
        ("/v1/audio/speech", {"input": LONG, "voice": "alloy", "stream": False}, "input", '"stream": true'),
        ("/v1/tts/generate", {"text": LONG}, "text", '"stream": true'),
    ],
    ids=["openai-wav", "openai-stream-false", "native"],
)
def test_a_long_non_streamed_request_is_told_at_once_to_stream_or_queue_a_job(
    server: RunningServer, route: str, body: dict, field: str, how: str
) -> None:
    started = time.monotonic()
    status, _, content = curl(f"{server.base_url}{route}", body)
    waited = time.monotonic() - started
    error = _error(content)
    assert (status, error["code"], error["param"]) == (413, "PAYLOAD_TOO_LARGE", field)
    for named in (f"'{field}'", "5000 characters", "4096", how, "POST /v1/tts/jobs"):
        assert named in error["message"], error["message"]
    assert waited < 5, f"the refusal took {waited:.1f} s"


def test_the_same_long_text_streamed_starts_at_once(server: RunningServer) -> None:
    body = {"input": LONG, "voice": "alloy", "response_format": "pcm", "max_tokens": 20}
    # curl stops after 15 s (the whole text takes far longer on a CPU): the answer and its first audio came by then.
    status, headers, content = curl(f"{server.base_url}/v1/audio/speech", body, max_time=15)
    assert status == 200 and headers.get("transfer-encoding") == "chunked" and content, content[:300]


def test_the_favicon_is_served(server: RunningServer) -> None:
    status, headers, content = curl(f"{server.base_url}/favicon.ico")
    assert (status, headers["content-type"]) == (200, "image/x-icon")
    assert content[:4] == b"\x00\x00\x01\x00"  # an ICO file's header: reserved 0, type 1 (icon)


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/v1/tts/generate", {"text": "Hi. [voice:bob] There.", "speaker": "default"}, "text"),
        ("/v1/audio/speech", {"input": "Hi. [voice:bob] There.", "voice": "alloy"}, "input"),
    ],
    ids=["native", "openai"],
)
def test_an_unknown_voice_marker_is_named_with_its_position(
    server: RunningServer, route: str, body: dict, field: str
) -> None:
    status, _, content = curl(f"{server.base_url}{route}", body)
    error = _error(content)
    assert (status, error["code"], error["param"]) == (400, "INVALID_SPEAKER", field)
    assert f"Invalid '{field}': the voice marker '[voice:bob]' at position 4 " in error["message"], error[
        "message"
    ]
    assert "default" in error["message"]  # the voices there are


@pytest.mark.parametrize(
    ("route", "body", "field", "named"),
    [
        (
            "/v1/tts/generate",
            {"text": '<speak>Wait <break time="5s"/> now.</speak>'},
            "text",
            ['<break time="5s"/> at position 12', "at most 3 s"],
        ),
        (
            "/v1/audio/speech",
            {"input": '<sub alias="World Wide Web">WWW and the rest.', "voice": "alloy"},
            "input",
            ["never closed", "</sub>"],
        ),
        ("/v1/tts/normalize", {"text": 'Hello <break time="1s" there'}, "text", ["no closing '>'"]),
    ],
    ids=["long-break", "unclosed-sub", "no-closing-bracket"],
)
def test_ssml_that_would_not_be_spoken_as_written_is_a_400_naming_the_tag(
    server: RunningServer, route: str, body: dict, field: str, named: list[str]
) -> None:
    status, _, content = curl(f"{server.base_url}{route}", body)
    error = _error(content)
    assert (status, error["code"], error["param"]) == (400, "VALIDATION_ERROR", field)
    assert all(n in error["message"] for n in [f"Invalid '{field}'", *named]), error["message"]
