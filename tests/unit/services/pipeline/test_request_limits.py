"""Whole-request deadline and the non-streaming buffer cap, on the demo checkpoint."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from services.deployment.runtime import ModelRuntime
from services.pipeline.synthesis import (
    NATIVE_RATE,
    SamplingOptions,
    SynthesisError,
    SynthesisJob,
    SynthesisRequest,
)
from shared.settings import Settings
from tests.conftest import wait_in_portal
from tests.demo_runtime import demo_settings
from tests.texts import LONG_ENGLISH


def _settings(model_dir: Path, **kw) -> Settings:
    return demo_settings(model_dir, **kw)


def test_the_whole_request_deadline_ends_a_stream_cleanly(demo_model_dir: Path) -> None:
    runtime = ModelRuntime(_settings(demo_model_dir, request_deadline_s=1.5))
    asyncio.run(runtime.start())
    request = SynthesisRequest(
        request_id="deadline",
        text=LONG_ENGLISH,
        voice=runtime.voices.resolve(None),
        sampling=SamplingOptions(0.8, 50, 1.0, 4096, 1.05, seed=1),
        audio_format="pcm",
        sample_rate=NATIVE_RATE,
    )

    async def consume() -> tuple[int, SynthesisError]:
        job = SynthesisJob.planned(runtime.pipeline_resources(), request)
        received = 0
        with pytest.raises(SynthesisError) as info:
            async for chunk in job.stream_bytes():
                received += len(chunk)
        return received, info.value

    try:
        received, error = asyncio.run(consume())
    finally:
        asyncio.run(runtime.shutdown())
    assert error.code == "GENERATION_TIMEOUT"
    assert received > 0  # audio before the deadline was delivered; the stream then ends with the error
    assert runtime.engine.active_requests() == set() if runtime.engine else True


def test_a_non_streaming_file_too_large_to_buffer_is_refused_before_any_gpu_work(
    demo_model_dir: Path,
) -> None:
    settings = _settings(demo_model_dir, max_buffered_audio_mb=1)
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        wait_in_portal(client, lambda: runtime.ready)
        tokens_before = runtime.engine.steps if hasattr(runtime.engine, "steps") else None
        response = client.post("/v1/tts/generate", json={"text": LONG_ENGLISH * 3, "sample_rate": 48000})
        assert response.status_code == 413
        error = response.json()["error"]
        assert (
            error["code"] == "PAYLOAD_TOO_LARGE"
            and error["param"] == "stream"
            and "stream=true" in error["message"]
        )
        assert runtime.engine.active_requests() == set()
        if tokens_before is not None:
            assert runtime.engine.steps == tokens_before
        streamed = client.post("/v1/tts/generate", json={"text": "Short.", "max_tokens": 5})
        assert streamed.status_code == 200


def test_a_word_the_model_cannot_speak_is_a_400_before_any_gpu_work(demo_model_dir: Path) -> None:
    """Ten thousand letters without a space (cut into chunks of one "word" each) trip a guard on every try: the text
    is refused as the client's, naming it, instead of failing with a 500 after the tries."""
    settings = _settings(demo_model_dir)
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        wait_in_portal(client, lambda: runtime.ready)
        response = client.post("/v1/tts/generate", json={"text": "a" * 10000, "stream": False})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["code"], error["param"]) == ("VALIDATION_ERROR", "text") and "10000 letters" in error[
            "message"
        ]
        assert runtime.engine.active_requests() == set()


def test_only_spaced_alphabets_have_a_longest_word() -> None:
    from core.guards import longest_spaced_word
    from services.pipeline.text_plan import MAX_WORD_LETTERS

    assert (
        longest_spaced_word("Pneumonoultramicroscopicsilicovolcanoconiosis is long.") == 45 < MAX_WORD_LETTERS
    )
    assert longest_spaced_word("这是一个很长的句子" * 40) == 0  # Han runs words together
    assert longest_spaced_word("ภาษาไทยเขียนติดกัน" * 10) == 0  # so does Thai
    assert longest_spaced_word("Ж" * 70 + " ok") == 70
