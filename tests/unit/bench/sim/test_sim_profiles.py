"""bench/sim/profiles.py: the goal arrivals under each admission profile; bench/sim/overload.py's `--profile`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.sim import overload
from bench.sim.profiles import ARRIVALS, AUDIO_SECOND, MODELS, VARIANTS, jobs_for, run_one
from services.device.admission_profiles import ADMISSION_PROFILE_NAMES, ADMISSION_PROFILES


def test_every_profile_and_the_audio_second_variant_run_on_both_steps_and_every_device() -> None:
    assert set(VARIANTS) == {*ADMISSION_PROFILE_NAMES, "audio second"}
    assert AUDIO_SECOND.admission["codec_cost_basis"] == "audio_second"
    jobs = jobs_for(ARRIVALS[:1], (0,))
    assert {(m, s, p) for m, s, _, p, _ in jobs} == {
        (m, s, p) for m in MODELS for s in ("serial", "sliced", "overlapped") for p in VARIANTS
    }
    assert all(path.exists() for path in MODELS.values())


def test_a_run_takes_its_variants_settings() -> None:
    """The 64-stream burst at vLLM's step on the serial device, seed 0: the served profile refuses some on rule 3;
    per second of audio, none underruns either way."""
    served = run_one(("vLLM step", "serial", "64 @16k within 2 s", "served", 0))
    assert served["refused_by"].get("codec_cost", 0) > 0 and served["underran"] == 0
    audio = run_one(("vLLM step", "serial", "64 @16k within 2 s", "audio second", 0))
    assert audio["profile"] == "audio second" and audio["underran"] == 0 and audio["admitted"] > 0


def test_sim_overload_runs_a_profile_under_its_own_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(overload, "CASES", [((16_000, 0.056, 64, 10.0, 1), range(1))])
    out = tmp_path / "o.json"
    argv = [
        "--profile",
        "own_seconds",
        "--admission",
        '{"ramp_floor": 50}',
        "--json",
        str(out),
        "--workers",
        "1",
    ]
    assert overload.main(argv) == 0
    written = json.loads(out.read_text())
    own = ADMISSION_PROFILES["own_seconds"]
    assert (
        written["profile"] == "own_seconds" and written["call_seconds_read"] == own.call_seconds_read == "own"
    )
    assert written["admission"] == {**own.admission, "ramp_floor": 50}  # --admission over the profile's
    (row,) = written["rows"]
    assert row["admitted"] == 64 and row["underrunning_streams"] == 0
