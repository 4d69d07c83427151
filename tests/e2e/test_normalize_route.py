"""POST /v1/tts/normalize and normalize_verbose on a real server: the text the model would be asked to speak."""

from __future__ import annotations

from urllib.parse import unquote

import httpx
import pytest

from tests.e2e.conftest import RunningServer
from tests.texts import LONG_ENGLISH

pytestmark = pytest.mark.e2e


def test_normalize_returns_text_languages_and_the_synthesis_chunks(server: RunningServer) -> None:
    response = httpx.post(
        f"{server.base_url}/v1/tts/normalize",
        json={"text": "I paid $5 for 3 apples. नमस्ते दुनिया। 你好"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "five dollars" in body["normalized"] and "3" not in body["normalized"]
    assert body["languages"] == ["en", "hi", "zh"] and body["chunks"] == [body["normalized"]]
    long = httpx.post(f"{server.base_url}/v1/tts/normalize", json={"text": LONG_ENGLISH}, timeout=30).json()
    assert len(long["chunks"]) > 1 and " ".join(long["chunks"]).split() == long["normalized"].split()
    raw = httpx.post(
        f"{server.base_url}/v1/tts/normalize", json={"text": "5 apples", "normalize": False}, timeout=30
    ).json()
    assert raw["normalized"] == "5 apples"


def test_normalize_refuses_bad_input_in_the_envelope(server: RunningServer) -> None:
    for body, code in (
        ({"text": "   "}, "VALIDATION_ERROR"),
        ({"text": "x", "bogus": 1}, "VALIDATION_ERROR"),
    ):
        response = httpx.post(f"{server.base_url}/v1/tts/normalize", json=body, timeout=30)
        assert response.status_code == 400 and response.json()["error"]["code"] == code


def test_normalize_verbose_returns_the_normalised_text_with_the_audio(server: RunningServer) -> None:
    response = httpx.post(
        f"{server.base_url}/v1/tts/generate",
        json={"text": "It costs $12.", "normalize_verbose": True, "max_tokens": 5},
        timeout=60,
    )
    assert response.status_code == 200
    shown = unquote(response.headers["X-Normalized-Text"])
    assert "twelve dollars" in shown and "X-Normalized-Text-Truncated" not in response.headers
    quiet = httpx.post(
        f"{server.base_url}/v1/tts/generate", json={"text": "It costs $12.", "max_tokens": 5}, timeout=60
    )
    assert "X-Normalized-Text" not in quiet.headers
