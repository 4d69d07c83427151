"""In-process pipeline tests' runtime: the demo checkpoint on the CPU (no AP-BWE, no warm-up, no auth), and an
engine that misbehaves on purpose (core/llm/faulty.py) for as long as a test needs it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.llm.faulty import with_fault
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings


@contextmanager
def demo_runtime(model_dir: Path) -> Iterator[ModelRuntime]:
    """A started, ready runtime (a module-scoped fixture's body), shut down on exit."""
    rt = ModelRuntime(Settings(model_dir=model_dir, warmup=False, auth_enabled=False, device="cpu",
                               sr_enabled=False, log_json=False))
    asyncio.run(rt.start())
    try:
        assert rt.ready, rt.error
        yield rt
    finally:
        asyncio.run(rt.shutdown())


@contextmanager
def misbehaving(runtime: ModelRuntime, fault: str, **settings: Any) -> Iterator[None]:
    """`runtime` with a faulty engine (`fault` as in core/llm/faulty.py; "" keeps the engine) and `settings`
    overridden; both restored on exit."""
    engine, config = runtime.engine, runtime.settings
    runtime.engine = with_fault(engine, fault, runtime.layout, runtime.tokenizer) if fault else engine
    runtime.settings = config.model_copy(update=settings)
    try:
        yield
    finally:
        runtime.engine, runtime.settings = engine, config
