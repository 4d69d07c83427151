"""What real checkpoints and the GPU engine need (docs/reference/spark-tts.md, docs/reference/modal-vllm.md), on
the demo checkpoint in-process:
every request the pipeline builds fits vLLM's GPU-runner limits, unseeded requests get a fresh seed each (two
fresh runtimes give different audio, seeded requests repeat), OpenAI voice names resolve on any checkpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.llm import SamplingConfig
from core.llm.vllm_engine import (
    GPU_RUNNER_MAX_ALLOWED_TOKEN_IDS,
    GPU_RUNNER_MAX_STOP_TOKEN_IDS,
    check_gpu_runner_limits,
)
from core.voices import OPENAI_VOICE_GENDERS, UnknownVoiceError, VoiceConfigError, VoiceRegistry
from services.deployment.runtime import ModelRuntime
from services.pipeline.synthesis import NATIVE_RATE, SamplingOptions, SynthesisJob, SynthesisRequest
from tests.demo_runtime import demo_settings
from tests.texts import LONG_ENGLISH


def _runtime(model_dir: Path) -> ModelRuntime:
    rt = ModelRuntime(demo_settings(model_dir))
    asyncio.run(rt.start())
    assert rt.ready, rt.error
    return rt


class RecordingEngine:
    """Wraps the real engine and keeps every SamplingConfig the pipeline hands it."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.seen: list[SamplingConfig] = []

    def stream(self, prompt_ids, sampling, request_id):
        self.seen.append(sampling)
        return self.engine.stream(prompt_ids, sampling, request_id)

    def __getattr__(self, name):
        return getattr(self.engine, name)


@pytest.fixture(scope="module")
def runtime(demo_model_dir: Path) -> Iterator[ModelRuntime]:
    rt = _runtime(demo_model_dir)
    yield rt
    asyncio.run(rt.shutdown())


def _job(rt: ModelRuntime, text: str, voice: str, seed: int | None, max_tokens: int = 30) -> SynthesisJob:
    request = SynthesisRequest(
        request_id=f"fc-{voice}",
        text=text,
        voice=rt.voices.resolve(voice),
        sampling=SamplingOptions(0.8, 50, 1.0, max_tokens, 1.05, seed=seed),
        audio_format="pcm",
        sample_rate=NATIVE_RATE,
        stream=False,
    )
    return SynthesisJob.planned(rt.pipeline_resources(), request)


@pytest.mark.parametrize("voice", ["default", "fixed", "narrator"])  # style, global_tokens, speaker prefix
def test_every_request_kind_fits_the_gpu_runner_and_carries_a_seed(runtime: ModelRuntime, voice: str) -> None:
    recorder = RecordingEngine(runtime.engine)
    runtime.engine = recorder
    try:
        job = _job(
            runtime, LONG_ENGLISH, voice, seed=None, max_tokens=10
        )  # several chunks: continuation prompts
        asyncio.run(job.collect())
    finally:
        runtime.engine = recorder.engine
    assert len(recorder.seen) == job.stats.text_chunks >= 2
    for sampling in recorder.seen:
        check_gpu_runner_limits(sampling)
        assert sampling.allowed_token_ids is None
        assert len(sampling.stop_token_ids) <= GPU_RUNNER_MAX_STOP_TOKEN_IDS
        assert sampling.seed is not None  # vLLM would otherwise derive it from the fixed engine seed


def test_the_guard_refuses_what_would_kill_the_engine() -> None:
    with pytest.raises(ValueError, match="allowed_token_ids exceed"):
        check_gpu_runner_limits(
            SamplingConfig(allowed_token_ids=tuple(range(GPU_RUNNER_MAX_ALLOWED_TOKEN_IDS + 1)))
        )
    with pytest.raises(ValueError, match="stop_token_ids exceed"):
        check_gpu_runner_limits(
            SamplingConfig(stop_token_ids=tuple(range(GPU_RUNNER_MAX_STOP_TOKEN_IDS + 1)))
        )


def test_unseeded_requests_differ_across_fresh_runtimes_and_seeded_ones_repeat(demo_model_dir: Path) -> None:
    first, second = _runtime(demo_model_dir), _runtime(demo_model_dir)
    try:
        unseeded = [
            asyncio.run(_job(rt, "Hello there.", "default", seed=None).collect()) for rt in (first, second)
        ]
        seeded = [
            asyncio.run(_job(rt, "Hello there.", "default", seed=11).collect()) for rt in (first, second)
        ]
    finally:
        for rt in (first, second):
            asyncio.run(rt.shutdown())
    assert unseeded[0] != unseeded[1]
    assert seeded[0] == seeded[1] and len(seeded[0]) > 0


def test_openai_names_resolve_on_a_checkpoint_that_never_mentions_them() -> None:
    registry = VoiceRegistry.for_finetune(["Asha", "Bittu"])
    for name in OPENAI_VOICE_GENDERS:
        assert registry.resolve(name).id in ("Asha", "Bittu")
        assert registry.resolve(name.upper()).id == registry.resolve(name).id
    builtin = VoiceRegistry.builtin()
    assert builtin.resolve("onyx").gender == "male" and builtin.resolve("nova").gender == "female"
    with pytest.raises(UnknownVoiceError):
        builtin.resolve("not-a-voice")


def test_openai_names_can_be_pinned_in_voices_json_and_never_shadow_a_real_voice() -> None:
    data = {
        "voices": [
            {"id": "Asha", "prompt_prefix": "Asha: ", "aliases": ["ash"]},
            {"id": "Mira", "prompt_prefix": "Mira: "},
        ],
        "openai_voices": {"alloy": "Mira"},
    }
    registry = VoiceRegistry.from_dict(data)
    assert registry.resolve("alloy").id == "Mira"
    assert registry.resolve("ash").id == "Asha"  # the checkpoint's own alias wins
    with pytest.raises(VoiceConfigError, match="unknown voice 'Nobody'"):
        VoiceRegistry.from_dict({**data, "openai_voices": {"nova": "Nobody"}})
    with pytest.raises(VoiceConfigError, match="not an OpenAI voice name"):
        VoiceRegistry.from_dict({**data, "openai_voices": {"robot": "Mira"}})


def test_a_finetune_without_voices_gets_its_trained_prompt_format() -> None:
    from processing.prompt import build_prompt

    single = VoiceRegistry.for_finetune([])
    prompt, mode = build_prompt("Hi.", single.resolve(None))
    assert (
        prompt == "<|task_tts|><|start_content|>Hi.<|end_content|><|start_global_token|>"
        and mode == "controllable"
    )
    multi = VoiceRegistry.for_finetune(["Asha"])
    prompt, _ = build_prompt("Hi.", multi.resolve("Asha"))
    assert prompt == "<|task_tts|><|start_content|>Asha: Hi.<|end_content|><|start_global_token|>"
