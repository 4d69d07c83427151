"""The engine's layout names the device the engine and the codec share, and admission reads a codec call's run there:
a profile calibrated where a call runs alone once started divides rule 3's measure by the call's stretch beside the
engine's steps (1 serial, 2 sliced, 2 - overlap overlapped)."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from services.device.admission import Admission
from services.device.admission_profiles import ADMISSION_PROFILES
from services.device.device_layout import (
    DEVICE_OVERLAP,
    ENGINE_LAYOUTS,
    codec_stretch,
    profile_on,
    sharing_of,
)
from shared.settings import Settings


def test_each_layout_names_its_device_and_the_setting_chooses_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(ENGINE_LAYOUTS) == {"inprocess", "process"}
    assert sharing_of("process") == "sliced" and sharing_of("inprocess") == "overlapped"
    assert (
        sharing_of("process", "transformers") == "overlapped"
    )  # that engine always steps in the serving process
    assert Settings().llm.llm_engine_layout == "inprocess"
    monkeypatch.setenv("TTS_LLM_ENGINE_LAYOUT", "process")
    assert Settings().llm.llm_engine_layout == "process"
    with pytest.raises(ValidationError, match="llm_engine_layout"):
        Settings(llm_engine_layout="mps")
    with pytest.raises(ValueError, match="engine layout"):
        sharing_of("mps")  # type: ignore[arg-type]


def test_a_calls_stretch_beside_the_engine_on_each_device() -> None:
    assert codec_stretch("serial") == 1.0 and codec_stretch("sliced") == 2.0
    assert codec_stretch("overlapped") == 2.0 - DEVICE_OVERLAP
    assert codec_stretch("overlapped", 1.0) == 1.0 and codec_stretch("overlapped", 0.0) == 2.0
    with pytest.raises(ValueError, match="overlap"):
        codec_stretch("overlapped", 1.5)


def test_only_a_profile_reading_a_calls_run_is_read_through_the_stretch() -> None:
    for name, profile in ADMISSION_PROFILES.items():
        on = profile_on(profile, "sliced")
        if profile.call_seconds_read == "run":
            assert on.admission == {**profile.admission, "codec_stretch": 2.0}, name
        else:
            assert on == profile, name
        assert profile_on(profile, "serial").admission.get("codec_stretch", 1.0) == 1.0


class _Meter:
    """Rule 3's measure at a fixed codec cost (what codec_cost.py reads of a scheduler is tested there)."""

    def advance(self, now: float) -> None:
        return None

    def cost_at(self, now: float) -> float:
        return 0.06


class _Scheduler:
    active_streams = 10
    clock = staticmethod(lambda: 100.0)


def test_rule_three_reads_the_measure_over_the_stretch() -> None:
    plain = Admission(_Scheduler(), codec_stretch=1.0)
    stretched = Admission(_Scheduler(), codec_stretch=1.5)
    for admission in (plain, stretched):
        admission.codec = _Meter()  # type: ignore[assignment]
    assert plain.codec_cost() == pytest.approx(0.06)
    assert stretched.codec_cost() == pytest.approx(0.04)
    with pytest.raises(ValueError, match="codec_stretch"):
        Admission(_Scheduler(), codec_stretch=0.5)
    assert math.isfinite(stretched.codec_stretch)


def test_on_one_cuda_context_served_brakes_on_near_misses_earlier() -> None:
    """`served` sets no near-miss grace of its own: on the overlapped device it brakes with 100 ms of audio left; a
    profile calibrated with its own grace keeps it, and the other devices keep Admission's."""
    from services.device.admission_profiles import ADMISSION_PROFILES
    from services.device.device_layout import OVERLAPPED_MISS_GRACE_S, profile_on

    assert (
        profile_on(ADMISSION_PROFILES["served"], "overlapped").admission["miss_grace_s"]
        == OVERLAPPED_MISS_GRACE_S
    )
    assert "miss_grace_s" not in profile_on(ADMISSION_PROFILES["served"], "sliced").admission
    assert profile_on(ADMISSION_PROFILES["bursts"], "overlapped").admission["miss_grace_s"] == 0.03
