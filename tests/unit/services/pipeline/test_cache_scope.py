"""Private prefix caches: a prompt built from one key's recordings (a custom voice, a request's reference audio, a
stitched tail) is cached under that key only, so another key sending the same recording gets no prefix-cache hit
(vLLM's cache_salt); built-in voices stay shared."""

from __future__ import annotations

import sys
import types
from dataclasses import replace
from typing import Any

import pytest

from core.llm.base import SamplingConfig
from core.voices import Voice
from services.pipeline.segment_voices import SpeakingVoices
from services.pipeline.speech import SpeechRequest, SpeechService
from shared.settings import Settings


def _speech() -> SpeechRequest:
    return SpeechRequest(
        text="Hello.", voice=None, audio_format="pcm", sample_rate=16000, sampling=SamplingConfig()
    )


BUILTIN = Voice(id="fixed", name="fixed", kind="global_tokens", global_tokens=(1,) * 32)


@pytest.mark.parametrize(
    ("voice", "key_id", "scope"),
    [
        (BUILTIN, "k1", None),
        (replace(BUILTIN, source="custom"), "k1", "key:k1"),
        (replace(BUILTIN, source="reference"), "k2", "key:k2"),
        (replace(BUILTIN, reference_semantic=(5, 6, 7)), "k1", "key:k1"),  # a stitched tail of k1's own audio
        (replace(BUILTIN, source="custom"), None, None),  # keyless (auth off): one scope for all
    ],
)
def test_a_voice_from_a_keys_recordings_is_cached_under_that_key(
    voice: Voice, key_id: str | None, scope: str | None
) -> None:
    service = SpeechService(models=None, settings=Settings(warmup=False))  # type: ignore[arg-type]
    assert (
        service.synthesis_request(_speech(), SpeakingVoices(voice), "r1", key_id=key_id).cache_scope == scope
    )


def test_the_vllm_prompt_carries_the_salt_only_when_scoped(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.llm.vllm_engine import VLLMEngine

    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = dict  # type: ignore[attr-defined] - a TypedDict builds a dict
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
    engine: Any = VLLMEngine.__new__(VLLMEngine)
    engine._engine = types.SimpleNamespace()  # no renderer: the raw prompt is the engine's input
    import asyncio

    assert asyncio.run(engine._engine_input([1, 2, 3], "key:k1")) == {
        "prompt_token_ids": [1, 2, 3],
        "cache_salt": "key:k1",
    }
    assert asyncio.run(engine._engine_input([1, 2, 3])) == {"prompt_token_ids": [1, 2, 3]}
