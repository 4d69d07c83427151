"""Admission profiles: the admission settings and the codec seconds they were calibrated on, chosen together
(`TTS_ADMISSION_PROFILE`), since a cap means something only against the measure it reads.

`served` (the default): `Admission`'s own defaults, reading a codec call from dispatch to end
(`CallSecondsRead`, services/device/calls.py), its miss rule counting near misses too (admission.py, rule 1; the other
profiles read misses alone, as they were calibrated). `own_seconds`: the codec read as its own device seconds, rule 3's cap
at 0.74 of the device, the exact first chunk given only while a capacity rule refused in the last 2 s (not because a
share crossed a line), and a ramp floor of 40. In the simulator at the H200's measured costs it starts a burst of 64
within 2 s at first audio p95 173-270 ms where `served` gives 400-550, and runs no stream dry under sustained
overload; it holds fewer of a 16 kHz burst at a cheap engine step (docs/decisions/codec-seconds-read.md). Not the default: on a device the engine and the codec share by time slices (as an H100 shared
itself with an engine's process; `python -m bench sim overload --device-sharing sliced`) it ran 48 kHz sustained overload dry,
since own seconds miss the slicing's stretch; and on an H100, 64 streams arriving at once, it let 40 in and 6 gaps
through a 100 ms prebuffer where `served` let 32 in with none.

`settled`: `own_seconds`' caps and first-chunk settings over a call's `run` seconds (CUDA events around it: its own
time on a device it has alone once started, stretched where the engine's process slices the device), rule 3 read on
the settled streams alone (codec_cost.py), and the exact first chunk also after the ramp held a caller
(`exact_after_ramp`). In the simulator at the H200's measured costs, on a device that runs one call at a time, it
admits all of 64 arriving within 2 s at first audio p95 128-176 ms at either engine step, and no admitted stream ran
dry in the 63 overload runs on any of the five device models (`served` runs 48 kHz overload dry on the sliced device
at the 3 ms step). Not the default: on a device shared by time slices, as a served GPU shares itself with the engine's
process, it reads each call's stretch and holds less: 30-42 of those 64, 0.57-0.80x what `served` holds at 48 kHz
(docs/decisions/admission-profiles.md).

`bursts`: `settled` with its limits set for the bursts a device carries once a stream's chunks are cut for a listener
about to run dry (`TTS_STREAM_CUT_RUNWAY_MS`, on by default; this profile needs it): the LLM's pace margin 1.4 (2 while
48 kHz streams are live), no spacing, a ramp floor of 64, the codec's cap at 0.9, newcomers on the short first chunk
while the engine gives 3x real time and the codec's cost is read (the exact one past 32 streams before it is), and at
16 kHz the codec's cap passed while its queue drains leaving every listener 0.5 s (`queue_headroom_s`, headroom.py).
In the simulator at the H200's measured costs and vLLM's published step, on a device that runs one call at a time, it
admits 64 of 64 arriving within 2 s at first audio p95 128-132 ms and 250 of 250 at 16 kHz within 5 s at p95 765-794
ms, none running dry; no admitted stream ran dry in the 315 overload runs on the five device models but one, 2 ms
past its prebuffer (docs/benchmarks.md). Not the default: on the sliced device, as a served GPU shares itself with the
engine's process, it holds 61-62 of those 64 at p95 293-298 ms and 177-196 of the 250 (docs/decisions/queue-headroom.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from services.device.calls import CallSecondsRead

AdmissionProfileName = Literal["served", "own_seconds", "settled", "bursts"]
ADMISSION_PROFILE_NAMES: tuple[AdmissionProfileName, ...] = get_args(AdmissionProfileName)


@dataclass(frozen=True)
class AdmissionProfile:
    call_seconds_read: CallSecondsRead
    admission: dict[str, Any] = field(default_factory=dict)  # keyword arguments of `Admission`


_OWN_SECONDS: dict[str, Any] = {
    "miss_grace_s": 0.03,  # misses alone, as these profiles were calibrated (no near misses: admission.py rule 1)
    "max_codec_share": 0.74,
    "short_schedule_share": float("inf"),
    "short_needs_pace": 0.0,  # the short first chunk whatever the engine's pace, as these profiles were calibrated
    "exact_after_refusal_s": 2.0,
    "ramp_floor": 40,
}
_SETTLED: dict[str, Any] = {**_OWN_SECONDS, "codec_cost_streams": "settled", "exact_after_ramp": True}
ADMISSION_PROFILES: dict[AdmissionProfileName, AdmissionProfile] = {
    "served": AdmissionProfile("dispatch_to_end"),
    "own_seconds": AdmissionProfile("own", _OWN_SECONDS),
    "settled": AdmissionProfile("run", _SETTLED),
    "bursts": AdmissionProfile(
        "run",
        {
            **_SETTLED,
            "pace_margin": 1.4,
            "sr_pace_margin": 2.0,
            "spacing_s": 0.0,
            "ramp_floor": 64,
            "max_codec_share": 0.9,
            "short_needs_pace": 3.0,
            "unmeasured_short_streams": 32,
            "queue_headroom_s": 0.5,
        },
    ),
}
