"""Idle sleep with the vLLM engine on the CPU tier. vLLM refuses sleep mode off CUDA/ROCm/XPU
(`Platform.is_sleep_mode_available`), so here the engine is built without it and stays awake while the state machine
sleeps and wakes the rest (the codec models, through the scheduler); vLLM's own sleep()/wake_up() run only on a GPU.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not importable here; run this tier with .venv-vllm")

from services.deployment.idle_sleep import SleepState  # noqa: E402
from services.deployment.runtime import ModelRuntime  # noqa: E402
from services.pipeline.synthesis import NATIVE_RATE, SamplingOptions, SynthesisJob, SynthesisRequest  # noqa: E402
from shared.settings import Settings  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(600)]


async def test_idle_sleep_on_cpu_vllm_builds_without_sleep_mode_and_still_serves(demo_dir: Path) -> None:
    settings = Settings(
        model_dir=demo_dir,
        engine="vllm",
        device="cpu",
        llm_dtype="auto",
        max_model_len=2048,
        max_num_seqs=4,
        warmup=False,
        sr_enabled=False,
        auth_enabled=False,
        log_json=False,
        idle_sleep_s=0.5,
    )
    rt = ModelRuntime(settings)
    await rt.start()
    try:
        assert rt.ready, rt.error
        assert (
            rt.engine.supports_sleep is False
        )  # no ValueError from vLLM: sleep mode was not asked for on a CPU
        idle = rt.idle_sleep
        assert idle is not None
        for _ in range(50):
            if idle.state is SleepState.ASLEEP:
                break
            await asyncio.sleep(0.1)
        assert idle.state is SleepState.ASLEEP
        assert await idle.wake() is not None and idle.awake
        voice = rt.voices.resolve(rt.voices.default_voice_id)
        request = SynthesisRequest(
            request_id="after-wake",
            text="Awake again.",
            voice=voice,
            sampling=SamplingOptions.with_defaults(settings, max_tokens=24, seed=1),
            audio_format="pcm",
            sample_rate=NATIVE_RATE,
            stream=True,
        )
        audio = await SynthesisJob.planned(rt.pipeline_resources(), request).collect()
        assert audio
    finally:
        await rt.shutdown()
