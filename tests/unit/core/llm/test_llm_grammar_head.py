"""The transformers engine's grammar head: logits for a subset of the head's rows give the same ids as the full
head banned to that subset, greedy and seeded, and no id outside it can be generated."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from core.llm import SamplingConfig, create_engine
from core.llm.transformers_engine import TransformersEngine, grammar_head_ids_of
from core.tokens import IM_END
from shared.settings import Settings
from tests.tiny_models import tiny_qwen2

VOCAB = 1000
# A scattered subset of rows, as the Spark grammar's ids are (two blocks and a few single markers).
HEAD = tuple([3, 17, *range(300, 520), *range(700, 780), 998])
PROMPTS = ([5, 17, 42, 7, 99, 3], [900, 12, 650, 301], list(range(40, 90)), [999])
SAMPLINGS = {
    "greedy": SamplingConfig(temperature=0.0, top_k=0, top_p=1.0, max_tokens=24),
    "greedy, repetition penalty": SamplingConfig(temperature=0.0, max_tokens=24, repetition_penalty=1.3),
    "top-k, top-p": SamplingConfig(temperature=0.9, top_k=20, top_p=0.9, max_tokens=24, seed=5),
    "top-p without top-k": SamplingConfig(temperature=1.0, top_k=0, top_p=0.8, max_tokens=24, seed=6),
    "plain draw": SamplingConfig(temperature=1.2, top_k=0, top_p=1.0, max_tokens=24, seed=7),
    "top-k above the head's rows": SamplingConfig(
        temperature=1.0, top_k=500, top_p=1.0, max_tokens=24, seed=8
    ),
    "penalty and top-k": SamplingConfig(
        temperature=0.7, top_k=8, top_p=1.0, max_tokens=24, repetition_penalty=1.5, seed=9
    ),
}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_qwen2(VOCAB, seed=1)


async def _ids(engine: TransformersEngine, prompt: list[int], sampling: SamplingConfig) -> list[int]:
    return [i async for delta in engine.stream(prompt, sampling, "r") for i in delta]


def _banned_to(sampling: SamplingConfig, ids: tuple[int, ...]) -> SamplingConfig:
    return SamplingConfig(**{**sampling.__dict__, "allowed_token_ids": ids})


@pytest.mark.parametrize("name", list(SAMPLINGS))
async def test_grammar_head_draws_the_ids_of_the_full_head_banned_to_its_rows(
    model: torch.nn.Module, name: str
) -> None:
    sampling = SAMPLINGS[name]
    full = TransformersEngine(model, device="cpu")
    restricted = TransformersEngine(model, device="cpu", head_ids=HEAD)
    try:
        assert restricted.head_size == len(HEAD) and full.head_size == VOCAB
        for prompt in PROMPTS:
            ours = await _ids(restricted, prompt, sampling)
            assert ours == await _ids(full, prompt, _banned_to(sampling, HEAD)), prompt
            assert len(ours) == sampling.max_tokens and set(ours) <= set(HEAD)
    finally:
        await full.shutdown()
        await restricted.shutdown()


async def test_the_grammar_is_enforced_where_the_full_head_would_leave_it(model: torch.nn.Module) -> None:
    sampling = SAMPLINGS["plain draw"]
    full = TransformersEngine(model, device="cpu")
    restricted = TransformersEngine(model, device="cpu", head_ids=HEAD)
    try:
        free = [i for prompt in PROMPTS for i in await _ids(full, prompt, sampling)]
        assert set(free) - set(HEAD), (
            "the random model leaves the rows unbanned: the check below means something"
        )
        for prompt in PROMPTS:
            assert set(await _ids(restricted, prompt, sampling)) <= set(HEAD)
        # A request's own allowed ids narrow the head's rows further; ids outside the rows stay unreachable.
        allowed = (*range(300, 320), 998, 5, 6)
        narrowed = _banned_to(SAMPLINGS["top-k, top-p"], allowed)
        ours = await _ids(restricted, PROMPTS[0], narrowed)
        assert set(ours) <= set(allowed) - {5, 6}
        both = tuple(i for i in allowed if i in HEAD)
        assert ours == await _ids(full, PROMPTS[0], _banned_to(narrowed, both))
    finally:
        await full.shutdown()
        await restricted.shutdown()


def test_head_ids_outside_the_vocabulary_are_refused(model: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="no id"):
        TransformersEngine(model, device="cpu", head_ids=[VOCAB, VOCAB + 5, -1])


@pytest.fixture(scope="module")
def demo_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from core.demo.checkpoint import build_demo_checkpoint

    root = tmp_path_factory.mktemp("demo")
    build_demo_checkpoint(root, seed=0)
    return root / "LLM"


async def test_the_demo_checkpoint_speaks_the_same_ids_through_the_grammar_head(demo_llm_dir: Path) -> None:
    """The demo LLM follows the Spark grammar, as the real one does: its own ids are unchanged by the restriction."""
    tokenizer = AutoTokenizer.from_pretrained(str(demo_llm_dir))
    head = grammar_head_ids_of(demo_llm_dir)
    assert head is not None and 13_000 < len(head) < 14_000
    prompt = tokenizer.encode("<|task_controllable_tts|><|start_content|>hello there<|end_content|>")
    prompt += tokenizer.convert_tokens_to_ids(
        ["<|start_style_label|>", "<|gender_0|>", "<|end_style_label|>"]
    )
    stop = (tokenizer.convert_tokens_to_ids(IM_END),)
    restricted = create_engine(
        "transformers", demo_llm_dir, Settings(device="cpu", llm_dtype="float32", llm_grammar_head=True)
    )
    full = create_engine(
        "transformers", demo_llm_dir, Settings(device="cpu", llm_dtype="float32", llm_grammar_head=False)
    )
    assert isinstance(restricted, TransformersEngine) and isinstance(full, TransformersEngine)
    try:
        assert restricted.head_size == len(head) and full.head_size == full.vocab_size
        for sampling in (
            SamplingConfig(temperature=0.0, max_tokens=80, stop_token_ids=stop),
            SamplingConfig(temperature=0.8, top_k=50, top_p=0.95, max_tokens=80, seed=3, stop_token_ids=stop),
        ):
            ours = await _ids(restricted, prompt, sampling)
            assert ours == await _ids(full, prompt, sampling)
            assert len(ours) > 40 and set(ours) <= set(head)
    finally:
        await restricted.shutdown()
        await full.shutdown()


def test_no_spark_tokenizer_means_the_full_head(tmp_path: Path) -> None:
    assert grammar_head_ids_of(tmp_path) is None
