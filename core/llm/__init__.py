"""LLM engines: the interface (`base`), a registry of backends, and `create_engine`.

Add a backend: a module here with a class implementing `LLMEngine`, and one entry in `_BACKENDS` naming the
function that builds it from (llm_dir, settings). Backends are imported only when chosen (vLLM is heavy).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from core.llm.base import (
    GREEDY_TEMPERATURE,
    EngineKind,
    LLMEngine,
    SamplingConfig,
    check_dtype,
    checked_prompt,
    resolve_device,
    resolve_dtype,
)

if TYPE_CHECKING:
    from shared.settings import Settings

__all__ = [
    "GREEDY_TEMPERATURE",
    "EngineKind",
    "LLMEngine",
    "SamplingConfig",
    "check_dtype",
    "checked_prompt",
    "create_engine",
    "resolve_device",
    "resolve_dtype",
]

# engine kind -> (module, builder function name); the builder takes (llm_dir, settings).
_BACKENDS: dict[str, tuple[str, str]] = {
    "transformers": ("core.llm.transformers_engine", "engine_from_settings"),
    "vllm": ("core.llm.vllm_engine", "engine_from_settings"),
    "onnx": ("core.llm.onnx_engine", "engine_from_settings"),
}


def create_engine(kind: EngineKind, llm_dir: str | Path, settings: Settings) -> LLMEngine:
    """Build the configured backend. Loading takes seconds (vLLM ~15 s): call it off the event loop."""
    if kind not in _BACKENDS:
        raise ValueError(f"unknown LLM engine {kind!r}; accepted: {', '.join(_BACKENDS)}")
    module, builder = _BACKENDS[kind]
    build: Callable[[str | Path, Settings], LLMEngine] = getattr(import_module(module), builder)
    return build(llm_dir, settings)
