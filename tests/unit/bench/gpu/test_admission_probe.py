"""The admission probe's cases reach the server: each case's settings are real TTS_ names that change the setting,
and the engine load it starts beside the server steps and reports."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]


def test_each_probe_case_sets_what_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.gpu.admission_probe import CASES
    from shared.settings import Settings

    default = Settings().codec
    for name, rate, levels, settings, engine in CASES:
        assert rate in (16000, 48000) and levels, name
        if not settings:  # admission as served: the case is about the engine's load beside it
            assert engine, name
            continue
        with monkeypatch.context() as env:
            for key, value in settings.items():
                env.setenv(key, value)
            codec = Settings().codec
        changed = {
            field
            for field in (
                "admission",
                "admission_max_wait_ms",
                "admission_profile",
                "admission_codec_share",
            )
            if getattr(codec, field) != getattr(default, field)
        }
        assert changed, f"{name}: {settings} changes no admission setting"


def test_the_engine_load_steps_until_stopped_and_reports(tmp_path: Path) -> None:
    """The stand-in engine (eager on a CPU, the tiny config, a host gap after each step) steps until SIGTERM, then
    writes its steps per second."""
    sys.path.insert(0, str(ROOT))
    from bench.gpu import admission_probe

    out = tmp_path / "load.json"
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench/gpu/llm_load.py"),
            "--quick",
            "--device",
            "cpu",
            "--batch",
            "2",
            "--seconds",
            "60",
            "--gap-ms",
            "1",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert b"stepping" in process.stdout.readline()  # the model is built and stepping
    time.sleep(0.5)
    report = admission_probe.stop_engine_load(process, out)
    assert report["batch"] == 2 and report["gap_ms"] == 1.0 and report["steps"] > 0 and report["seconds"] < 30
    assert sum(row["steps"] for row in report["per_second"]) == report["steps"]


def test_a_case_with_host_gaps_has_an_engine_load() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.gpu.admission_probe import CASES

    gaps = {name: engine.gap_ms for name, _, _, _, engine in CASES if engine and engine.gap_ms}
    assert gaps == {"off48-llm-gaps": 1.5, "served48-llm-gaps": 1.5, "served48-llm-gaps-cap1": 1.5}
