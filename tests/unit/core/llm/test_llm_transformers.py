"""The LLM engine contract on the CPU backends (transformers, and the ONNX engine where its package is installed):
streaming, sampling controls, cancellation, concurrency.

Runs on the demo checkpoint's tiny random Qwen2 (conftest.py).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import torch

from core.llm import LLMEngine, SamplingConfig, create_engine
from core.llm.transformers_engine import TransformersEngine, sample_next
from shared.settings import Settings

SAMPLED = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0, max_tokens=24, repetition_penalty=1.0, seed=1)
GREEDY = SamplingConfig(temperature=1.0, top_k=1, top_p=1.0, max_tokens=12, repetition_penalty=1.0, seed=None)
PROMPT = [5, 17, 42, 7, 99, 3]


@pytest.fixture(scope="module")
def hf_model(llm_dir: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(llm_dir), dtype=torch.float32).eval()


@pytest.fixture(params=["transformers", "onnx"])
async def engine(request: pytest.FixtureRequest, hf_model: torch.nn.Module, llm_dir: Path):
    """The engine contract runs over every CPU backend: the transformers engine and the ONNX engine (int8, as it
    serves by default; skipped where its optional package is absent)."""
    if request.param == "onnx":
        from core.llm.onnx_engine import OnnxEngine

        cache = request.getfixturevalue("onnx_build")(llm_dir, "int8")
        eng = OnnxEngine.from_checkpoint(llm_dir, "int8", cache_dir=cache, grammar_head=False, threads=1)
    else:
        eng = TransformersEngine(hf_model, device="cpu")
    yield eng
    await eng.shutdown()


async def _collect(
    engine: LLMEngine, sampling: SamplingConfig, request_id: str, prompt=PROMPT
) -> list[list[int]]:
    return [delta async for delta in engine.stream(prompt, sampling, request_id)]


def _flat(deltas: list[list[int]]) -> list[int]:
    return [i for delta in deltas for i in delta]


async def _wait_idle(engine: TransformersEngine, within_s: float) -> float:
    start = time.monotonic()
    while engine.active_requests():
        if time.monotonic() - start > within_s:
            raise AssertionError(f"still active after {within_s * 1000:.0f} ms: {engine.active_requests()}")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


async def test_streams_new_ids_incrementally(engine: TransformersEngine) -> None:
    sampling = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0, max_tokens=64, seed=3)
    deltas: list[list[int]] = []
    steps_at_first_delta = None
    before = engine.steps_total
    async for delta in engine.stream(PROMPT, sampling, "r-inc"):
        if steps_at_first_delta is None:
            steps_at_first_delta = engine.steps_total - before
        deltas.append(delta)
    assert len(_flat(deltas)) == 64
    assert all(delta for delta in deltas), "every delta carries at least one new id"
    assert len(deltas) >= 2
    assert steps_at_first_delta < 64, "the first ids arrive while generation is still running"
    assert all(0 <= i < engine.vocab_size for i in _flat(deltas))
    assert engine.active_requests() == set()


async def test_stream_interval_hands_over_ids_a_few_steps_at_a_time(hf_model: torch.nn.Module) -> None:
    """TTS_LLM_STREAM_INTERVAL, as vLLM's stream_interval: the first id at once, then deltas of at least N ids (the
    consumer wakes every N steps; it may be slower and find more), the last with what is left. Same ids."""
    sampling = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0, max_tokens=41, seed=3)
    plain = TransformersEngine(hf_model, device="cpu")
    grouped = TransformersEngine(hf_model, device="cpu", stream_interval=4)
    try:
        every = await _collect(plain, sampling, "every")
        deltas = await _collect(grouped, sampling, "grouped")
    finally:
        await plain.shutdown()
        await grouped.shutdown()
    assert _flat(deltas) == _flat(every)
    assert len(deltas[0]) >= 1 and all(len(d) >= 4 for d in deltas[1:-1]), [len(d) for d in deltas]


async def test_same_seed_same_ids_and_other_seed_differs(engine: TransformersEngine) -> None:
    first = _flat(await _collect(engine, SAMPLED, "a"))
    again = _flat(await _collect(engine, SAMPLED, "b"))
    other = _flat(await _collect(engine, SamplingConfig(**{**SAMPLED.__dict__, "seed": 2}), "c"))
    assert first == again
    assert first != other


async def test_stop_id_ends_the_stream_and_is_last(engine: TransformersEngine) -> None:
    free = _flat(await _collect(engine, GREEDY, "free"))
    # The last id that did not occur earlier: greedy decoding must stop exactly there.
    index = max(i for i in range(len(free)) if free[i] not in free[:i])
    stopped = _flat(
        await _collect(engine, SamplingConfig(**{**GREEDY.__dict__, "stop_token_ids": (free[index],)}), "s")
    )
    assert stopped == free[: index + 1]


async def test_max_tokens_respected(engine: TransformersEngine) -> None:
    out = _flat(await _collect(engine, SamplingConfig(**{**SAMPLED.__dict__, "max_tokens": 7}), "m"))
    assert len(out) == 7


async def test_top_k_1_equals_hf_greedy_generate(
    engine: TransformersEngine, hf_model: torch.nn.Module
) -> None:
    if engine.name != "transformers":
        pytest.skip(
            "int8 weights pick their own greedy ids: test_llm_onnx compares its float32 build with HF's"
        )
    from transformers import GenerationConfig

    config = GenerationConfig(
        do_sample=False, max_new_tokens=8, min_new_tokens=8, eos_token_id=None, pad_token_id=0
    )
    with torch.inference_mode():
        ref = hf_model.generate(torch.tensor([PROMPT]), generation_config=config)[0, len(PROMPT) :].tolist()
    ours = _flat(
        await _collect(engine, SamplingConfig(**{**GREEDY.__dict__, "max_tokens": 8, "seed": 9}), "g")
    )
    assert ours == ref
    temp0 = SamplingConfig(temperature=0.0, top_k=50, top_p=0.9, max_tokens=8)
    assert _flat(await _collect(engine, temp0, "t0")) == ref


@pytest.mark.parametrize("how", ["cancel_task", "aclose", "abort"])
async def test_stopping_the_consumer_stops_generation(engine: TransformersEngine, how: str) -> None:
    endless = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0, max_tokens=100_000, seed=4)
    got: list[int] = []
    started = asyncio.Event()
    stream = engine.stream(PROMPT, endless, "long")

    async def consume() -> None:
        async for delta in stream:
            got.extend(delta)
            if len(got) >= 5:
                started.set()
                if how == "aclose":
                    break  # leaves the stream suspended, as a handler that stops reading does

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 10)
    assert engine.active_requests() == {"long"}
    if how == "cancel_task":
        task.cancel()
    elif how == "aclose":
        await task
        assert engine.active_requests() == {"long"}, "a suspended stream keeps its request until closed"
        await stream.aclose()
    else:
        await engine.abort("long")
        await asyncio.wait_for(task, 1.0)  # the stream simply ends
    await asyncio.gather(task, return_exceptions=True)
    await _wait_idle(engine, within_s=0.2)
    steps = engine.steps_total
    await asyncio.sleep(0.2)
    assert engine.steps_total == steps, "no forward steps after the request stopped"
    assert len(got) < 100_000


async def test_concurrent_requests_complete_with_their_own_seeds(engine: TransformersEngine) -> None:
    alone_a = _flat(await _collect(engine, SAMPLED, "solo-a"))
    other = SamplingConfig(**{**SAMPLED.__dict__, "seed": 77})
    alone_b = _flat(await _collect(engine, other, "solo-b"))
    together = await asyncio.gather(
        *[_collect(engine, s, f"c{i}") for i, s in enumerate([SAMPLED, other, SAMPLED])]
    )
    assert [_flat(d) for d in together] == [alone_a, alone_b, alone_a]
    assert engine.active_requests() == set()


async def test_duplicate_active_request_id_refused(engine: TransformersEngine) -> None:
    endless = SamplingConfig(max_tokens=100_000, seed=1)
    first = engine.stream(PROMPT, endless, "dup")
    await first.__anext__()
    with pytest.raises(ValueError, match="already generating"):
        await engine.stream(PROMPT, endless, "dup").__anext__()
    await first.aclose()


async def test_bad_prompt_refused(engine: TransformersEngine) -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        await _collect(engine, SAMPLED, "bad", prompt=[1, engine.vocab_size])
    with pytest.raises(ValueError, match="empty"):
        await _collect(engine, SAMPLED, "empty", prompt=[])


async def test_event_loop_stays_responsive(engine: TransformersEngine) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.002)

    tick_task = asyncio.create_task(ticker())
    try:
        await asyncio.sleep(0.01)
        start = time.monotonic()
        out = _flat(await _collect(engine, SamplingConfig(**{**SAMPLED.__dict__, "max_tokens": 150}), "tick"))
        elapsed = time.monotonic() - start
    finally:
        tick_task.cancel()
    during = [t for t in ticks if start <= t <= start + elapsed]
    gaps = [b - a for a, b in zip(during, during[1:], strict=False)]
    assert len(out) == 150
    assert len(during) >= 5
    # Blocked, the loop would see one gap as long as the whole generation; allow scheduler noise.
    limit = max(0.1, elapsed / 5)
    assert max(gaps) < limit, (
        f"the event loop stalled for {max(gaps) * 1000:.0f} ms of {elapsed * 1000:.0f} ms"
    )


async def test_shutdown_stops_running_requests(hf_model: torch.nn.Module) -> None:
    eng = TransformersEngine(hf_model, device="cpu")
    stream = eng.stream(PROMPT, SamplingConfig(max_tokens=100_000, seed=1), "x")
    await stream.__anext__()
    await asyncio.wait_for(eng.shutdown(), 2.0)
    assert eng.active_requests() == set()
    with pytest.raises(RuntimeError, match="shut down"):
        await eng.stream(PROMPT, SAMPLED, "y").__anext__()
    await stream.aclose()


def test_float16_refused(llm_dir: Path) -> None:
    for dtype in ("float16", "fp16", str(torch.float16)):
        with pytest.raises(ValueError, match="float16"):
            TransformersEngine.from_pretrained(llm_dir, dtype=dtype)
    with pytest.raises(ValueError, match="float16"):
        create_engine(
            "transformers", llm_dir, Settings(llm_dtype="float32").model_copy(update={"llm_dtype": "float16"})
        )


async def test_factory_builds_a_working_transformers_engine(llm_dir: Path) -> None:
    eng = create_engine("transformers", llm_dir, Settings(device="cpu", llm_dtype="auto"))
    try:
        assert isinstance(eng, LLMEngine)
        assert eng.name == "transformers"
        assert len(_flat(await _collect(eng, SamplingConfig(max_tokens=5, seed=0), "f"))) == 5
    finally:
        await eng.shutdown()
    with pytest.raises(ValueError, match="unknown LLM engine"):
        create_engine("llamacpp", llm_dir, Settings())  # type: ignore[arg-type]


def test_sampler_controls() -> None:
    logits = torch.tensor([0.0, 3.0, 2.9, 1.0, -1.0])
    none_seen = torch.zeros(5, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    top2 = SamplingConfig(temperature=1.0, top_k=2, top_p=1.0)
    assert {sample_next(logits, none_seen, top2, gen) for _ in range(200)} == {1, 2}
    nucleus = SamplingConfig(temperature=1.0, top_k=0, top_p=0.01)
    assert {sample_next(logits, none_seen, nucleus, gen) for _ in range(50)} == {1}
    # A strong repetition penalty on the favourite id hands greedy decoding to the runner-up.
    seen = torch.tensor([False, True, False, False, False])
    penalised = SamplingConfig(temperature=0.0, repetition_penalty=1.5)
    assert sample_next(logits, seen, penalised, gen) == 2
    assert sample_next(logits, none_seen, penalised, gen) == 1
    hot = SamplingConfig(temperature=100.0, top_k=0, top_p=1.0)
    assert len({sample_next(logits, none_seen, hot, gen) for _ in range(300)}) == 5


def test_sampling_config_validates() -> None:
    assert SamplingConfig(stop_token_ids=[3, 4]).stop_token_ids == (3, 4)
    for bad in (
        {"temperature": -1},
        {"top_p": 0.0},
        {"max_tokens": 0},
        {"repetition_penalty": 0},
        {"top_k": -2},
    ):
        with pytest.raises(ValueError):
            SamplingConfig(**bad)


async def test_a_background_request_takes_no_step_while_a_live_one_generates(
    engine: TransformersEngine,
) -> None:
    from dataclasses import replace

    live_sampling = replace(SAMPLED, max_tokens=48, stop_token_ids=())
    job_sampling = replace(SAMPLED, max_tokens=8, stop_token_ids=(), work_class="background")
    alone = _flat(await _collect(engine, job_sampling, "job-alone"))
    events: list[str] = []
    live = engine.stream(PROMPT, live_sampling, "live")
    first = await live.__anext__()  # the live request is generating
    events.append("live")

    async def job() -> list[int]:
        ids = []
        async for delta in engine.stream(PROMPT, job_sampling, "job"):
            events.append("job")
            ids.extend(delta)
        return ids

    job_task = asyncio.create_task(job())
    live_ids = list(first)
    async for delta in live:
        events.append("live")
        live_ids.extend(delta)
    assert len(live_ids) == 48
    assert await job_task == alone  # the same ids as alone, only later
    assert "job" not in events[: events.index("job")] and "live" not in events[events.index("job") :]
    assert engine.active_requests() == set()


@pytest.mark.parametrize("head_ids", [None, list(range(0, 1000, 3))], ids=["full head", "grammar head"])
async def test_a_stream_passes_the_cache_by_its_current_name(
    hf_model: torch.nn.Module, head_ids: list[int] | None, recwarn: pytest.WarningsRecorder
) -> None:
    """transformers 5.24 renamed `past_key_values` to `cache` and warns (FutureWarning, once per process) on the old
    name; the engine uses whichever name the installed version's forward takes, so no start warns."""
    import warnings

    warnings.simplefilter("always")  # a once-per-process warning seen by an earlier test still shows here
    eng = TransformersEngine(hf_model, device="cpu", head_ids=head_ids)
    assert len(_flat([d async for d in eng.stream(PROMPT, GREEDY, "r-cache")])) == GREEDY.max_tokens
    deprecations = [w for w in recwarn if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not [str(w.message) for w in deprecations if "past_key_values" in str(w.message)]
