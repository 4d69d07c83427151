"""Admission profiles: the admission settings and the codec seconds they were calibrated on, chosen together
(`TTS_ADMISSION_PROFILE`), since a cap means something only against the measure it reads.

`served` (the default): `Admission`'s own defaults, reading a codec call from dispatch to end
(`CallSecondsRead`, services/device/calls.py). `own_seconds`: the codec read as its own device seconds, rule 3's cap
at 0.74 of the device, the exact first chunk given only while a capacity rule refused in the last 2 s (not because a
share crossed a line), and a ramp floor of 40. In the simulator at the H200's measured costs it starts a burst of 64
within 2 s at first audio p95 173-270 ms where `served` gives 400-550, and runs no stream dry under sustained
overload; it holds fewer of a 16 kHz burst at a cheap engine step (docs/benchmarks.md, "Reading the codec's own
seconds instead"). Not the default: on a device the engine and the codec share by time slices (as an H100 shared
itself with an engine's process; `bench.sim_overload --device-sharing sliced`) it ran 48 kHz sustained overload dry,
since own seconds miss the slicing's stretch; and on an H100, 64 streams arriving at once, it let 40 in and 6 gaps
through a 100 ms prebuffer where `served` let 32 in with none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from services.device.calls import CallSecondsRead

AdmissionProfileName = Literal["served", "own_seconds"]
ADMISSION_PROFILE_NAMES: tuple[AdmissionProfileName, ...] = get_args(AdmissionProfileName)


@dataclass(frozen=True)
class AdmissionProfile:
    call_seconds_read: CallSecondsRead
    admission: dict[str, Any] = field(default_factory=dict)  # keyword arguments of `Admission`


ADMISSION_PROFILES: dict[AdmissionProfileName, AdmissionProfile] = {
    "served": AdmissionProfile("dispatch_to_end"),
    "own_seconds": AdmissionProfile(
        "own",
        {
            "max_codec_share": 0.74,
            "short_schedule_share": float("inf"),
            "exact_after_refusal_s": 2.0,
            "ramp_floor": 40,
        },
    ),
}
