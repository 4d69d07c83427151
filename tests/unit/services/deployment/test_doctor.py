"""The checkpoint doctor names the layout, each voice's prompt, SR availability and every problem with a fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_ROOT
from tests.finetune import finetune_layout


def doctor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.deployment.doctor", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_released_demo_layout(demo_model_dir: Path) -> None:
    done = doctor(str(demo_model_dir))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "layout:      released (demo checkpoint" in out and "BiCodec:     loads" in out
    assert "<|task_controllable_tts|>" in out  # a style voice's prompt
    assert "<|bicodec_global_" in out  # the global_tokens voice carries its globals
    assert "48 kHz super-resolution available" in out


def test_finetune_without_voices_explains_the_fix(demo_model_dir: Path, tmp_path: Path) -> None:
    root = finetune_layout(demo_model_dir, tmp_path / "ft", root_config=False)
    done = doctor(str(root))
    assert done.returncode == 0, done.stderr
    assert "layout:      finetune" in done.stdout and "absent (16 kHz assumed)" in done.stdout
    assert "TTS_FINETUNE_SPEAKERS" in done.stdout and "python -m core.weights --sr" in done.stdout
    named = doctor(str(root), "--speakers", "Asha,Bittu")
    assert "<|task_tts|><|start_content|>Asha: {text}<|end_content|><|start_global_token|>" in named.stdout


def test_a_broken_directory_fails_with_the_reason(tmp_path: Path) -> None:
    done = doctor(str(tmp_path))
    assert done.returncode == 1 and "fine-tune with its HF LLM files at the root" in done.stdout
