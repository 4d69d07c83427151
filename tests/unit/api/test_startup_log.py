"""What start-up says to a newcomer: the playground's address as its last line, and a warning when auth is on with
no key on a real model (every request would get 401)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from api.app import missing_keys_warning, playground_url
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings
from tests.conftest import wait_in_portal


def _start_up_lines(model_dir: Path, caplog: pytest.LogCaptureFixture, **overrides: object) -> list[str]:
    settings = Settings(
        model_dir=model_dir, warmup=False, log_json=False, sr_enabled=False, device="cpu", **overrides
    )
    runtime = ModelRuntime(settings)
    caplog.clear()
    caplog.set_level(logging.INFO)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        wait_in_portal(client, lambda: client.app.state.load_task.done())
    return [record.getMessage() for record in caplog.records if record.name.startswith(("api", "services"))]


def _as_real_model(model_dir: Path) -> Path:
    config = model_dir / "config.yaml"
    config.write_text(config.read_text().replace("demo: true", "demo: false"))
    return model_dir


def test_the_address_shown_is_one_a_browser_can_open() -> None:
    assert playground_url(Settings(host="0.0.0.0", port=8000)) == "http://localhost:8000/"
    assert playground_url(Settings(host="127.0.0.1", port=9000)) == "http://127.0.0.1:9000/"
    assert playground_url(Settings(host="::1", port=8000)) == "http://[::1]:8000/"
    assert playground_url(Settings(playground_enabled=False)) is None


def test_no_keys_warning_only_where_every_request_would_get_401() -> None:
    line = missing_keys_warning(Settings(), demo=False)
    assert line is not None and "401" in line and "TTS_API_KEYS" in line
    assert missing_keys_warning(Settings(), demo=True) is None
    assert missing_keys_warning(Settings(auth_enabled=False), demo=False) is None
    assert missing_keys_warning(Settings(api_keys="k1"), demo=False) is None
    assert missing_keys_warning(Settings(api_keys=" , "), demo=False) is not None
    assert missing_keys_warning(Settings(key_backend="postgres"), demo=False) is None


def test_start_up_ends_with_the_playground_address(
    demo_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = _start_up_lines(demo_model_dir, caplog, auth_enabled=False, host="127.0.0.1", port=8123)
    assert lines[-1] == "ready: open the playground at http://127.0.0.1:8123/"
    assert not any("NO API KEYS" in line for line in lines)


def test_no_address_when_the_playground_is_off(
    demo_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = _start_up_lines(demo_model_dir, caplog, auth_enabled=False, playground_enabled=False)
    assert not any("playground" in line for line in lines)


def test_a_real_model_without_keys_warns(writable_demo_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = _start_up_lines(_as_real_model(writable_demo_dir), caplog)
    assert any(line.startswith("NO API KEYS") for line in lines), lines
    assert lines[-1].startswith("ready: open the playground at ")
    assert not any(
        line.startswith("NO API KEYS")
        for line in _start_up_lines(_as_real_model(writable_demo_dir), caplog, api_keys="k1")
    )
