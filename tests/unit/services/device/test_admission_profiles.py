"""Admission profiles: each is `Admission`'s own arguments with the codec seconds they read; the setting chooses one
and the runtime builds admission, the codec runner and the graphs' replay timing from it."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from services.device.admission import Admission
from services.device.admission_profiles import ADMISSION_PROFILE_NAMES, ADMISSION_PROFILES
from services.device.calls import CALL_SECONDS_READS, Call
from services.device.device_layout import profile_on, sharing_of
from services.device.runner import ModelRunner
from services.device.windows import DecodeWindow
from shared.settings import Settings


def test_each_profile_is_admission_arguments_and_a_read() -> None:
    assert set(ADMISSION_PROFILES) == set(ADMISSION_PROFILE_NAMES)
    for profile in ADMISSION_PROFILES.values():
        inspect.signature(Admission).bind(object(), **profile.admission)
        assert profile.call_seconds_read in CALL_SECONDS_READS
    served = ADMISSION_PROFILES["served"]
    assert served.admission == {} and served.call_seconds_read == "dispatch_to_end"  # the service as it was
    assert ADMISSION_PROFILES["own_seconds"].call_seconds_read == "own"
    settled = ADMISSION_PROFILES["settled"]
    assert settled.call_seconds_read == "run"
    assert settled.admission == {
        **ADMISSION_PROFILES["own_seconds"].admission,
        "codec_cost_streams": "settled",
        "exact_after_ramp": True,
    }


def test_the_simulator_runs_the_services_own_seconds_profile() -> None:
    from bench.sim.h200 import VARIANTS

    own = ADMISSION_PROFILES["own_seconds"]
    assert VARIANTS["own seconds"] == (own.admission, own.call_seconds_read)


def test_one_context_is_bursts_with_the_codecs_cap_scaled_by_the_overlapped_devices_gain() -> None:
    from services.device.admission_profiles import ONE_CONTEXT_GAIN
    from services.device.device_layout import DEVICE_OVERLAP

    bursts, one = ADMISSION_PROFILES["bursts"], ADMISSION_PROFILES["one_context"]
    assert ONE_CONTEXT_GAIN == pytest.approx(
        2.0 / (2.0 - DEVICE_OVERLAP)
    )  # stated beside the layout's estimate
    assert one.call_seconds_read == bursts.call_seconds_read == "run"
    assert one.admission == {
        **bursts.admission,
        "max_codec_share": pytest.approx(bursts.admission["max_codec_share"] * ONE_CONTEXT_GAIN),
        "sr_short_streams": 64,
    }


def test_the_setting_names_a_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().codec.admission_profile == "served"
    monkeypatch.setenv("TTS_ADMISSION_PROFILE", "own_seconds")
    assert Settings().codec.admission_profile == "own_seconds"
    with pytest.raises(ValidationError, match="admission_profile"):
        Settings(admission_profile="fastest")


class _CpuDecoder:
    hop_length = 320
    device = "cpu"


def _call() -> Call:
    return Call("decode", (DecodeWindow(np.zeros(8, np.int32), None, 0, 8),), 16, 1)


@pytest.mark.parametrize(
    ("read", "replay", "events", "expected"),
    [
        ("own", 0.004, 0.006, 0.004),  # a graph's replay timed at capture
        ("own", None, 0.006, 0.006),  # an eager call: CUDA events around it
        ("own", None, None, "thread"),  # a CPU knows no own seconds: the thread's
        ("run", 0.004, 0.006, 0.006),  # CUDA events around this run, whatever the replay took at capture
        ("run", None, None, "thread"),
        ("dispatch_to_end", 0.004, 0.006, "thread"),
    ],
)
def test_the_runner_gives_the_seconds_its_read_names(
    monkeypatch: pytest.MonkeyPatch, read: Any, replay: float | None, events: float | None, expected: Any
) -> None:
    runner = ModelRunner(_CpuDecoder(), call_seconds_read=read)

    def run(call: Call) -> tuple[list[np.ndarray], float | None, float | None]:
        import time

        time.sleep(0.02)  # the device thread's seconds, longer than the device seconds above
        return [], replay, events

    monkeypatch.setattr(runner, "_run", run)
    try:
        _, seconds = asyncio.run(runner.run_timed(_call()))
    finally:
        runner.close()
    if expected == "thread":
        assert seconds >= 0.02
    else:
        assert seconds == expected


@pytest.mark.parametrize("name", ADMISSION_PROFILE_NAMES)
def test_the_runtime_builds_admission_and_the_runner_from_the_profile(
    demo_model_dir: Path, name: str
) -> None:
    """With the device stand-in (a GPU's policy, admission on): the profile's arguments reach `Admission` and its read
    reaches the codec runner."""
    from bench.standin import runtime_factories
    from services.deployment.runtime import ModelRuntime
    from tests.demo_runtime import demo_settings

    settings = demo_settings(demo_model_dir, admission_profile=name)
    # read on the device the engine's layout gives (device_layout.py)
    profile = profile_on(
        ADMISSION_PROFILES[name], sharing_of(settings.llm.llm_engine_layout, settings.llm.engine)
    )

    async def main() -> None:
        runtime = ModelRuntime(settings, **runtime_factories("bench/cost_models/h200-graphs.json"))
        await runtime.start()
        try:
            assert runtime.ready, runtime.error
            assert runtime.codec_runner.call_seconds_read == profile.call_seconds_read
            admission = runtime.admission
            assert admission is not None
            checked = set()
            for arg, default in inspect.signature(Admission).parameters.items():
                # each setting lives on admission or on its first-chunk choices
                holder = next(
                    (h for h in (admission, admission.first_chunk_choices) if hasattr(h, arg)), None
                )
                if arg in ("scheduler", "clock", "generating", "max_wait_s") or holder is None:
                    continue
                assert getattr(holder, arg) == profile.admission.get(arg, default.default), arg
                checked.add(arg)
            assert set(profile.admission) <= checked
        finally:
            await runtime.shutdown()

    asyncio.run(main())


@pytest.mark.parametrize("name", ADMISSION_PROFILE_NAMES)
def test_the_codec_share_setting_replaces_only_the_profiles_cap(demo_model_dir: Path, name: str) -> None:
    from services.deployment.runtime import ModelRuntime
    from tests.demo_runtime import demo_settings

    settings = demo_settings(demo_model_dir, admission_profile=name)
    profile = profile_on(
        ADMISSION_PROFILES[name], sharing_of(settings.llm.llm_engine_layout, settings.llm.engine)
    )
    assert ModelRuntime(settings).admission_profile == profile
    capped = ModelRuntime(
        demo_settings(demo_model_dir, admission_profile=name, admission_codec_share=1.0)
    ).admission_profile
    assert capped.call_seconds_read == profile.call_seconds_read
    assert capped.admission == {**profile.admission, "max_codec_share": 1.0}
    with pytest.raises(ValidationError, match="admission_codec_share"):
        Settings(admission_codec_share=0)
