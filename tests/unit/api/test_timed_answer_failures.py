"""Computing timestamps or captions never fails a request whose audio exists. Through the real app
(demo checkpoint): a failing aligner gives words spread evenly and marks the answer (`timestamps_status`,
`timestamps_fallbacks`, `X-Timestamps-Status`); failing captions are `null` with `captions_error`; the audio and
the guards' headers are there either way."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import api.timed_delivery
from api import create_app
from core.align import split_words
from core.align.incremental import IncrementalEstimate
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings
from tests.conftest import wait_in_portal

TEXT = "I paid $5 today, thanks."


@pytest.fixture(scope="module")
def client(demo_model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=False,
        warmup=False,
        log_json=False,
        sr_enabled=False,
        default_max_tokens=40,
    )
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as test_client:
        wait_in_portal(test_client, lambda: runtime.ready)
        yield test_client


def _ask(client: TestClient, **extra: object) -> tuple[dict, dict]:
    response = client.post("/v1/tts/generate", json={"text": TEXT, "format": "pcm", "seed": 2, **extra})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert base64.b64decode(answer["audio"])
    assert response.headers["X-Chunks-Retried"] == "0" and response.headers["X-Chunks-Cut"] == "0"
    return answer, dict(response.headers)


def test_a_failing_aligner_marks_the_answer(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    answer, headers = _ask(client, timestamps="word")
    assert answer["timestamps_status"] == "ok" and headers["x-timestamps-status"] == "ok"

    def broken(*args: object, **kwargs: object) -> list:
        raise IndexError("index 27 is out of bounds")

    monkeypatch.setattr(IncrementalEstimate, "finish", broken)
    answer, headers = _ask(client, timestamps="word")
    assert headers["x-timestamps-status"] == "fallback" and answer["timestamps_status"] == "fallback"
    assert answer["timestamps_fallbacks"] == ["align: IndexError"]
    assert [w["text"] for w in answer["words"]] == split_words(TEXT)  # spread evenly, never missing


def test_failing_captions_are_null_and_the_audio_is_delivered(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(words: object) -> str:
        raise ValueError("bad cue")

    monkeypatch.setattr(api.timed_delivery, "to_srt", broken)
    answer, _ = _ask(client, captions="srt")
    assert answer["captions"] is None and "Captions could not be made" in answer["captions_error"]
    assert [w["text"] for w in answer["words"]] == split_words(TEXT)
