"""The ONNX engine's builds of the demo checkpoint's LLM, made once per test session (each takes seconds: the
model builder runs in a child process). Skipped cleanly where the engine's optional package is absent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

OnnxBuild = Callable[[Path, str], Path]


@pytest.fixture(scope="session")
def onnx_build(tmp_path_factory: pytest.TempPathFactory) -> OnnxBuild:
    """`onnx_build(llm_dir, precision)` -> the cache folder holding that build (built on first ask)."""
    pytest.importorskip(
        "onnxruntime_genai",
        reason="the onnx engine's optional package is not installed (pip install '.[cpu]')",
    )
    from core.llm.onnx_convert import ensure_onnx_model

    root = tmp_path_factory.mktemp("onnx-builds")
    caches: dict[Path, Path] = {}

    def build(llm_dir: Path, precision: str) -> Path:
        cache = caches.setdefault(llm_dir, root / str(len(caches)))
        ensure_onnx_model(llm_dir, precision, cache)  # type: ignore[arg-type]
        return cache

    return build


@pytest.fixture(scope="session")
def llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo checkpoint's LLM folder (the released layout and tokenizer, a tiny random Qwen2)."""
    from core.demo.checkpoint import build_demo_checkpoint

    root = tmp_path_factory.mktemp("llm")
    build_demo_checkpoint(root, seed=0)
    return root / "LLM"
