"""In-process tests' runtime: the demo checkpoint on the CPU (no AP-BWE, no warm-up, no auth), alone or behind the
app in a TestClient, and an engine that misbehaves on purpose (bench/standin/faulty_engine.py) for as long as a test needs it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from api import create_app
from bench.standin.faulty_engine import with_fault
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings
from tests.conftest import wait_in_portal


def demo_settings(model_dir: Path, **overrides: Any) -> Settings:
    """The demo checkpoint on the CPU: no warm-up, no auth, no AP-BWE, plain logs; `overrides` on top."""
    return Settings(
        model_dir=model_dir,
        warmup=False,
        auth_enabled=False,
        device="cpu",
        sr_enabled=False,
        log_json=False,
        **overrides,
    )


@contextmanager
def demo_runtime(model_dir: Path) -> Iterator[ModelRuntime]:
    """A started, ready runtime (a module-scoped fixture's body), shut down on exit."""
    rt = ModelRuntime(demo_settings(model_dir))
    asyncio.run(rt.start())
    try:
        assert rt.ready, rt.error
        yield rt
    finally:
        asyncio.run(rt.shutdown())


@contextmanager
def demo_client(model_dir: Path, voice_dir: Path) -> Iterator[TestClient]:
    """The app in a TestClient once its runtime is ready: short answers (40 tokens), a rate limit no test reaches,
    saved voices under `voice_dir`."""
    settings = Settings(
        model_dir=model_dir,
        auth_enabled=False,
        warmup=False,
        log_json=False,
        sr_enabled=False,
        voice_dir=voice_dir,
        default_max_tokens=40,
        rate_limit_per_minute=10_000,
    )
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        wait_in_portal(client, lambda: runtime.ready)
        yield client


@contextmanager
def misbehaving(runtime: ModelRuntime, fault: str, **settings: Any) -> Iterator[None]:
    """`runtime` with a faulty engine (`fault` as in bench/standin/faulty_engine.py; "" keeps the engine) and `settings`
    overridden; both restored on exit."""
    engine, config = runtime.engine, runtime.settings
    runtime.engine = with_fault(engine, fault, runtime.layout, runtime.tokenizer) if fault else engine
    runtime.settings = config.model_copy(update=settings)
    try:
        yield
    finally:
        runtime.engine, runtime.settings = engine, config
