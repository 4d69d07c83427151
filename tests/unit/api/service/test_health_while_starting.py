"""`demo_model` in health before the checkpoint is read: what it will be (the demo is built when TTS_MODEL_DIR is
unset), or null with the state when a model directory is set but not read yet; never a false "not the demo"."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from core.checkpoint import load_spark_checkpoint
from core.demo.checkpoint import build_demo_checkpoint
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings


def test_without_a_model_dir_health_says_the_demo_is_coming() -> None:
    report = ModelRuntime(Settings(device="cpu")).health()
    assert (report.state, report.demo_model) == ("starting", True)


def test_with_a_model_dir_not_read_yet_health_says_null(tmp_path: Path) -> None:
    report = ModelRuntime(Settings(device="cpu", model_dir=tmp_path)).health()
    assert (report.state, report.demo_model) == ("starting", None)


def test_once_the_checkpoint_is_read_health_says_what_it_is(tmp_path: Path) -> None:
    runtime = ModelRuntime(Settings(device="cpu", model_dir=tmp_path))
    runtime.checkpoint = load_spark_checkpoint(build_demo_checkpoint(tmp_path / "demo", seed=0))
    assert runtime.health().demo_model is True
    runtime.checkpoint = replace(runtime.checkpoint, is_demo=False)
    assert runtime.health().demo_model is False
