"""A package missing at start is named in one log line with its install command (services/deployment/
missing_package.py). Served from a test's client (not uvicorn's main thread) the app stays up, not ready, so the
test process is never signalled; a real server process exits 3 (tests/integration/test_start_failure.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings
from tests.conftest import wait_in_portal


class SegmenterMissing(ModelRuntime):
    async def warmup(self) -> None:
        raise ModuleNotFoundError("No module named 'rjieba'", name="rjieba")


def test_a_missing_package_is_named_with_its_install_command(
    demo_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(model_dir=demo_model_dir, auth_enabled=False, warmup=True, log_json=False)
    runtime = SegmenterMissing(settings)
    with caplog.at_level(logging.ERROR), TestClient(create_app(settings, runtime=runtime)) as client:
        wait_in_portal(client, lambda: runtime.state.value == "warmup_failed")
        line = (
            "MISSING PACKAGE: rjieba (No module named 'rjieba', needed by warm-up); "
            "install it with: python -m pip install rjieba"
        )
        assert runtime.missing_package == line
        assert [r.getMessage() for r in caplog.records].count(line) == 1
        assert client.get("/v1/tts/ready").json()["state"] == "warmup_failed"
        assert client.app.state.exit_after_shutdown is False  # type: ignore[attr-defined]
