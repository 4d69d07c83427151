"""Optional steps never fail finished work: a failing continuation tail, on-complete hook or caption builder
leaves the request completed with all its audio, logged and counted in veena3_tts_optional_step_failures_total."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import api.timed_delivery
import services.continuity.service
from services.continuity.service import Continuity
from services.pipeline.spoken_tail import TailSegment
from shared import metrics
from tests.demo_runtime import demo_client


@pytest.fixture(scope="module")
def client(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with demo_client(demo_model_dir, tmp_path_factory.mktemp("voices")) as test_client:
        yield test_client


def failures(step: str) -> float:
    return metrics.OPTIONAL_STEP_FAILURES.labels(step)._value.get()


def generate(client: TestClient, **fields):
    return client.post(
        "/v1/tts/generate",
        json={"text": "Hello there, a short one.", "speaker": "fixed", "seed": 3, **fields},
    )


def test_a_tail_cutter_that_raises_leaves_the_request_completed(client: TestClient, monkeypatch) -> None:
    def broken(segments: list[TailSegment], max_tokens: int) -> TailSegment | None:
        raise IndexError("string index out of range")

    monkeypatch.setattr(services.continuity.service, "tail_of", broken)
    before = failures("continuity")
    response = generate(client)
    assert response.status_code == 200, response.text
    assert len(response.content) > 44
    assert failures("continuity") == before + 1
    store = client.app.state.services.speech.continuity.store
    assert client.portal.call(store.get, response.headers["X-Server-Request-ID"]) is None  # not remembered
    # ... and nothing is left "running": a continuation of it is a plain 404, not a 409
    again = generate(client, previous_request_ids=[response.headers["X-Server-Request-ID"]])
    assert again.status_code == 404 and again.json()["error"]["code"] == "REQUEST_NOT_FOUND", again.text


def test_an_on_complete_hook_that_raises_is_counted_and_the_stream_ends_cleanly(
    client: TestClient, monkeypatch
) -> None:
    original = Continuity.track

    def track(self: Continuity, job, key_id) -> None:
        original(self, job, key_id)

        async def broken(job) -> None:
            raise RuntimeError("a hook bug")

        job.on_complete.insert(0, broken)

    monkeypatch.setattr(Continuity, "track", track)
    before = failures("on_complete")
    with client.stream(
        "POST",
        "/v1/tts/generate",
        json={"text": "Streamed words here.", "speaker": "fixed", "stream": True, "format": "pcm", "seed": 4},
    ) as response:
        body = b"".join(response.iter_bytes())
    assert response.status_code == 200 and len(body) > 0
    assert failures("on_complete") == before + 1
    # the hooks after the broken one still ran: the request is remembered
    store = client.app.state.services.speech.continuity.store
    assert client.portal.call(store.get, response.headers["X-Server-Request-ID"]) is not None


def test_captions_that_fail_leave_the_audio_and_words_and_say_so(client: TestClient, monkeypatch) -> None:
    def broken(words) -> str:
        raise ValueError("bad span")

    monkeypatch.setattr(api.timed_delivery, "to_srt", broken)
    before = failures("captions")
    response = generate(client, captions="srt", format="wav")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["captions"] is None and "Captions could not be made" in answer["captions_error"]
    assert base64.b64decode(answer["audio"]) and answer["words"]
    assert failures("captions") == before + 1
