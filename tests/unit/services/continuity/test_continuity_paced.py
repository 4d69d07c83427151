"""A stitched request on the paced engine (bench/paced_engine.py): the prefix costs prefill only. No engine step
comes before the speech (as unstitched), the first id is due exactly the extra prompt ids' prefill later, and the engine speaks only the new text (the prefix's ids count as spoken). The timing itself is
measured by bench/bench_stitching.py."""

from __future__ import annotations

import pytest

from bench.paced_engine import PaceConfig, PacedEngine
from services.continuity import Continuity, MemoryRecentStore
from services.deployment.runtime import ModelRuntime
from services.pipeline.synthesis import NATIVE_RATE, SamplingOptions, SynthesisJob, SynthesisRequest
from services.pipeline.text_plan import prompt_for
from shared.settings import Settings

PER_TOKEN_S = 0.0001


def request(runtime, request_id: str, text: str, voice) -> SynthesisRequest:
    return SynthesisRequest(
        request_id=request_id,
        text=text,
        voice=voice,
        audio_format="pcm",
        sample_rate=NATIVE_RATE,
        stream=True,
        sampling=SamplingOptions.with_defaults(runtime.settings, seed=3),
    )


@pytest.fixture
async def runtime(demo_model_dir):
    settings = Settings(
        model_dir=demo_model_dir, warmup=False, auth_enabled=False, sr_enabled=False, log_json=False
    )
    rt = ModelRuntime(settings)
    await rt.start()
    await rt.engine.shutdown()
    rt.engine = PacedEngine.from_tokenizer(
        rt.tokenizer,
        rt.layout,
        PaceConfig(tokens_per_s=2000, prefill_s=0.001, prefill_per_token_s=PER_TOKEN_S, tick_s=0.001),
    )
    yield rt
    await rt.shutdown()


async def test_a_stitched_request_adds_prefill_only(runtime) -> None:
    continuity = Continuity(runtime.settings, runtime, MemoryRecentStore())
    voice = runtime.voices.resolve("fixed")
    previous = SynthesisJob.planned(
        runtime.pipeline_resources(),
        request(runtime, "prev", "The harbour was still asleep that morning.", voice),
    )
    continuity.track(previous, None)
    await previous.collect()
    stitched = await continuity.stitched_voice(voice, ["prev"], None, voice_named=True)
    text = "Then the bell rang out."
    plain_job = SynthesisJob.planned(runtime.pipeline_resources(), request(runtime, "plain", text, voice))
    await plain_job.collect()
    stitched_job = SynthesisJob.planned(
        runtime.pipeline_resources(), request(runtime, "stitched", text, stitched)
    )
    await stitched_job.collect()
    seen = {stats.request_id.split("-")[0]: stats for stats in runtime.engine.drain_stats()}
    # No engine step before the speech in either (how many ids the first delta carries depends on timing: not
    # compared here).
    assert stitched_job.stats.preamble_ids == plain_job.stats.preamble_ids == 0

    extra = len(prompt_for(runtime, text, stitched, voice.global_tokens)[0]) - len(
        prompt_for(runtime, text, voice, voice.global_tokens)[0]
    )
    prefix = len(stitched.reference_semantic or ())
    assert (
        0 < prefix <= 200 and extra == prefix + len(stitched.reference_text or "") + 1
    )  # ids, words, a space
    engine = runtime.engine
    plain_plan = engine.plan(
        prompt_for(runtime, text, voice, voice.global_tokens)[0], plain_job.request.sampling
    )
    stitched_ids = prompt_for(runtime, text, stitched, voice.global_tokens)[0]
    stitched_plan = engine.plan(stitched_ids, stitched_job.request.sampling)
    assert stitched_plan.first_semantic_index == plain_plan.first_semantic_index == 0
    # The engine's own schedule: the first id of the stitched stream is due exactly the extra ids' prefill later.
    assert seen["stitched"].first_semantic_due_s - seen["plain"].first_semantic_due_s == pytest.approx(
        extra * PER_TOKEN_S
    )
    assert seen["stitched"].finished and seen["plain"].finished
    # The prefix's words are spoken already: the engine generates about the new text's share only.
    assert abs(stitched_plan.semantic_tokens - plain_plan.semantic_tokens) <= 1 + 3.5 * 2
