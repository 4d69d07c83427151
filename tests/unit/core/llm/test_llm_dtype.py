"""The LLM dtype each device gets: bfloat16 only where the card has it (compute capability 8.0+), never float16.

No GPU here: the card is simulated at torch.cuda's capability query, the one thing the choice reads."""

from __future__ import annotations

import logging

import pytest
import torch

from core.llm import resolve_dtype, vllm_engine


@pytest.fixture
def card(monkeypatch: pytest.MonkeyPatch):
    def use(capability: tuple[int, int], name: str) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)

    return use


@pytest.mark.parametrize(
    ("capability", "name", "expected"),
    [
        ((7, 0), "Tesla V100-SXM2-16GB", "float32"),
        ((7, 5), "Tesla T4", "float32"),
        ((8, 0), "NVIDIA A100-SXM4-80GB", "bfloat16"),
        ((8, 9), "NVIDIA L40S", "bfloat16"),
        ((9, 0), "NVIDIA H100 80GB HBM3", "bfloat16"),
    ],
)
def test_auto_picks_what_the_card_supports(
    card, caplog: pytest.LogCaptureFixture, capability: tuple[int, int], name: str, expected: str
) -> None:
    card(capability, name)
    with caplog.at_level(logging.INFO, logger="core.llm.base"):
        assert resolve_dtype("auto", "cuda") == expected
    if expected == "float32":
        assert f"{name} (compute capability {capability[0]}.{capability[1]}) has no bfloat16" in caplog.text


def test_bfloat16_asked_on_an_old_card_becomes_float32_with_a_warning(card, caplog) -> None:
    card((7, 5), "Tesla T4")
    with caplog.at_level(logging.WARNING, logger="core.llm.base"):
        assert resolve_dtype("bf16", "cuda") == "float32"
    assert "TTS_LLM_DTYPE=bfloat16 overridden" in caplog.text


def test_float32_and_the_cpu_never_ask_the_card(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_card(device=None):
        raise AssertionError("the card was queried")

    monkeypatch.setattr(torch.cuda, "get_device_capability", no_card)
    assert resolve_dtype("float32", "cuda") == "float32"
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(ValueError, match="float16 is refused"):
        resolve_dtype("float16", "cuda")


def test_the_vllm_engine_resolves_its_dtype_through_the_same_rule() -> None:
    """VLLMEngine needs vLLM to construct; its module (importable without vLLM) must use the shared rule."""
    assert vllm_engine.resolve_dtype is resolve_dtype
