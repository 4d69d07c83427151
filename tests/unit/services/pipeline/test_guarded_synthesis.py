"""The pipeline's recovery from tripped generation guards, in-process on the demo checkpoint with an engine that
misbehaves on purpose (bench/standin/faulty_engine.py): a non-streamed chunk is generated again and the client gets the
retried audio; a streamed chunk whose audio was sent is cut and the next chunk keeps the voice; a chunk whose every
try trips fails the request with GENERATION_FAILED; count-only guards change nothing; normal generations trip
nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.standin.faulty_engine import FaultSpec
from services.deployment.runtime import ModelRuntime
from services.errors import SynthesisError
from services.pipeline.synthesis import NATIVE_RATE, SamplingOptions, SynthesisJob, SynthesisRequest
from shared import metrics
from tests.audio_samples import assert_same_audio
from tests.demo_runtime import demo_runtime, misbehaving
from tests.texts import LONG_ENGLISH, LONG_HINDI

HOP = 320


@pytest.fixture(scope="module")
def runtime(demo_model_dir: Path) -> Iterator[ModelRuntime]:
    with demo_runtime(demo_model_dir) as rt:
        yield rt


def request(
    runtime: ModelRuntime,
    text: str,
    *,
    stream: bool,
    seed: int = 5,
    voice: str = "fixed",
    request_id: str = "guard",
) -> SynthesisRequest:
    return SynthesisRequest(
        request_id=request_id,
        text=text,
        voice=runtime.voices.resolve(voice),
        sampling=SamplingOptions(
            max_tokens=4000, seed=seed, temperature=0.8, top_k=50, top_p=1.0, repetition_penalty=1.05
        ),
        sample_rate=NATIVE_RATE,
        stream=stream,
        latency="exact",
    )


def trips(guard: str, action: str) -> float:
    return metrics.GUARD_TRIPS.labels(guard, action)._value.get()


async def run(runtime: ModelRuntime, text: str, *, stream: bool, **kwargs: Any) -> tuple[SynthesisJob, bytes]:
    job = SynthesisJob.planned(runtime.pipeline_resources(), request(runtime, text, stream=stream, **kwargs))
    return job, await job.collect()


TEXT = "The quick brown fox jumps over the lazy dog. It was a sunny day and everyone was happy."


@pytest.mark.parametrize(
    ("fault", "guard"),
    [("loop:40:1", "loop"), ("silence:30:1", "silence"), ("runaway:0:1", "length"), ("stop:0:1", "empty")],
)
async def test_non_streamed_chunks_are_generated_again_and_the_client_gets_the_retried_audio(
    runtime: ModelRuntime, fault: str, guard: str
) -> None:
    text = f"{TEXT} Case {fault}."
    _, clean = await run(runtime, text, stream=False)
    before = trips(guard, "retried")
    with misbehaving(runtime, fault):
        job, data = await run(runtime, text, stream=False)
    stats = job.stats
    assert (stats.chunks_retried, stats.chunks_cut, stats.guard_events) == (1, 0, [f"{guard}:retried"])
    assert trips(guard, "retried") == before + 1
    # The demo model speaks a text in a fixed number of tokens: the retry's audio is as long as a clean run's, and
    # nothing of the bad try is in it (the counts were taken back with the discarded try).
    assert len(data) == len(clean)
    assert stats.decoded_samples == stats.semantic_tokens * HOP == stats.output_samples


@pytest.mark.parametrize(
    ("fault", "guard"), [("loop:40:0", "loop"), ("silence:30:0", "silence"), ("runaway:0:0", "length")]
)
async def test_a_streamed_chunk_already_playing_is_cut_and_the_next_chunk_keeps_the_voice(
    runtime: ModelRuntime, fault: str, guard: str
) -> None:
    text = LONG_ENGLISH[:260]
    with misbehaving(runtime, fault):
        job, data = await run(runtime, text, stream=True, voice="default")  # the first chunk picks the voice
    stats = job.stats
    chunks = len(job.plan.chunks)
    assert chunks >= 2
    # Every chunk misbehaves after its first audio went out: each is cut, none fails, all are spoken in turn.
    assert stats.chunks_cut == chunks and stats.chunks_retried == 0
    assert stats.guard_events == [f"{guard}:cut"] * chunks
    assert stats.text_chunks_done == chunks
    assert len(set(stats.global_tokens_per_chunk)) == 1
    assert data and stats.output_samples > 0


async def test_a_cut_keeps_audio_up_to_the_detection_point(runtime: ModelRuntime) -> None:
    text = f"{TEXT} Cut here."
    with misbehaving(runtime, "silence:30:0"):
        job, _ = await run(runtime, text, stream=True)
    allowed = job._runs[0].guards.held.max_tokens
    # 30 good tokens, then one id held: the chunk ends where the hold passed the allowance, none after.
    assert job.stats.semantic_tokens == 30 + allowed
    assert job.stats.decoded_samples == job.stats.output_samples == (30 + allowed) * HOP


async def test_a_chunk_whose_every_try_trips_fails_the_request(runtime: ModelRuntime) -> None:
    before = trips("loop", "failed")
    with misbehaving(runtime, "loop:40:0", guard_max_tries=2):
        job = SynthesisJob.planned(
            runtime.pipeline_resources(), request(runtime, f"{TEXT} Never clean.", stream=False)
        )
        with pytest.raises(SynthesisError) as failure:
            await job.collect()
    assert failure.value.code == "GENERATION_FAILED"
    assert "all 2 tries" in failure.value.message and "loop" in failure.value.message
    assert job.stats.guard_events == ["loop:retried", "loop:failed"]
    assert trips("loop", "failed") == before + 1
    assert job.stats.output_samples == 0  # nothing of a failed chunk was delivered


async def test_count_only_guards_change_nothing(runtime: ModelRuntime) -> None:
    text = f"{TEXT} Only counted."
    before = trips("empty", "counted")
    with misbehaving(runtime, "stop:0:1", guard_mode="count"), pytest.raises(SynthesisError):
        # Not acted on: the empty chunk goes on to the parser, which refuses a stream without speech as before.
        await run(runtime, text, stream=False)
    assert trips("empty", "counted") == before + 1
    with misbehaving(runtime, "loop:40:1", guard_mode="count"):
        job, data = await run(runtime, f"{text} Again.", stream=False)
    # The loop runs on to the token budget: counted by the loop guard and, at the end, the length guard.
    assert job.stats.chunks_retried == job.stats.chunks_cut == 0
    assert job.stats.guard_events == ["loop:counted", "length:counted"]
    _, clean = await run(runtime, f"{text} Again.", stream=False)
    assert len(data) > len(clean)
    with misbehaving(runtime, "loop:40:1", guard_modes={"loop": "count"}):
        job, _ = await run(runtime, f"{text} Once more.", stream=False)
    assert job.stats.guard_events == ["loop:counted", "length:retried"]  # the other guards still act


@pytest.mark.parametrize(
    ("text", "stream"),
    [
        (LONG_ENGLISH[:300], True),
        (LONG_HINDI[:200], False),
        ("你好，世界。今天天气很好，我们一起去公园散步吧。", True),
    ],
    ids=["english", "hindi", "mandarin"],
)
async def test_normal_generations_trip_nothing(runtime: ModelRuntime, text: str, stream: bool) -> None:
    """bench/bench_guards.py runs the wider calibration (50 generations, 10 texts x 5 seeds: no trip)."""
    job, _ = await run(runtime, text, stream=stream, seed=1, voice="default")
    assert job.stats.guard_events == []


class SilentIdCodec:
    """The demo codec with semantic ids 0 and 1 decoding to silence. The released codec's silence is a few ids; the
    demo's random codec has none (every id decodes to -11..-15 dBFS, measured), so this stands in for it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def decode_with_speaker(self, semantic: torch.Tensor, d_vector: torch.Tensor) -> torch.Tensor:
        wav = self.inner.decode_with_speaker(semantic, d_vector)
        silent = (semantic[0] <= 1).repeat_interleave(wav.shape[-1] // semantic.shape[-1])
        return wav * (~silent).to(wav.dtype)

    def decode_padded(self, ids: torch.Tensor, lengths: torch.Tensor, d_vector: torch.Tensor) -> torch.Tensor:
        """The codec scheduler's padded batch, with the same silent ids (padding is id 0 past each row's length:
        silencing it too changes nothing a row keeps)."""
        wav = self.inner.decode_padded(ids, lengths, d_vector)
        silent = (torch.as_tensor(ids) <= 1).repeat_interleave(wav.shape[-1] // ids.shape[-1], dim=-1)
        return wav * (~silent).to(wav.dtype)

    def decode_rows(
        self,
        ids: torch.Tensor,
        starts: torch.Tensor,
        lengths: torch.Tensor,
        wave_lengths: torch.Tensor,
        d_vector: torch.Tensor,
        *,
        margin: int,
    ) -> torch.Tensor:
        """The scheduler's call: each row's wave span sits at column `margin`, so output frame j is id margin + j."""
        wav = self.inner.decode_rows(ids, starts, lengths, wave_lengths, d_vector, margin=margin)
        spoken = torch.as_tensor(ids)[:, margin : ids.shape[-1] - margin]
        silent = (spoken <= 1).repeat_interleave(wav.shape[-1] // spoken.shape[-1], dim=-1)
        return wav * (~silent).to(wav.dtype)


@contextmanager
def silent_ids(runtime: ModelRuntime) -> Iterator[None]:
    codec, runner = (
        runtime.bicodec,
        runtime.codec_scheduler.runner,
    )  # the scheduler's runner decodes while serving
    runtime.bicodec = runner.decoder = SilentIdCodec(codec)
    try:
        yield
    finally:
        runtime.bicodec = runner.decoder = codec


async def test_silent_audio_is_retried_when_held_and_cut_with_a_fade_when_streamed(
    runtime: ModelRuntime,
) -> None:
    """Only the audio detector can see this silence (two ids alternate: no id is held)."""
    text = f"{TEXT} Quiet please."
    with silent_ids(runtime), misbehaving(runtime, "quiet:30:1"):
        held, _ = await run(runtime, text, stream=False)
        streamed, _ = await run(runtime, text, stream=True)
    assert held.stats.guard_events == ["silence:retried"]
    assert streamed.stats.guard_events == ["silence:cut"] and streamed.stats.chunks_cut == 1
    # The stream keeps its 30 tokens of sound and the silence up to the allowance, then stops (a 20 ms frame's
    # rounding aside); the faded tail is silent anyway, and nothing after the detection point is sent.
    allowed = round(streamed._runs[0].guards.allowed_silence_s * 16_000)
    kept = streamed.stats.output_samples
    assert 30 * HOP + allowed - 640 <= kept <= 30 * HOP + allowed + 640


async def test_concurrent_guarded_jobs_match_their_solo_runs(runtime: ModelRuntime) -> None:
    texts = [f"{TEXT} Caller {n}." for n in range(3)]
    with misbehaving(runtime, "loop:40:1"):
        solo = [
            await run(runtime, text, stream=False, request_id=f"solo-{n}") for n, text in enumerate(texts)
        ]
        together = await asyncio.gather(
            *(run(runtime, text, stream=False, request_id=f"together-{n}") for n, text in enumerate(texts))
        )
    for (job_a, data_a), (job_b, data_b) in zip(solo, together, strict=True):
        assert_same_audio(data_a, data_b)  # batched with each other's windows: within the codec's tolerance
        assert job_a.stats.guard_events == job_b.stats.guard_events == ["loop:retried"]


def test_fault_spec_parsing() -> None:
    assert FaultSpec.parse("loop:40:2") == FaultSpec("loop", 40, 2)
    assert FaultSpec.parse("stop") == FaultSpec("stop", 50, 1)
    with pytest.raises(ValueError, match="MODE"):
        FaultSpec.parse("explode")
