"""Admission profiles: the admission settings and the codec seconds they were calibrated on, chosen together
(`TTS_ADMISSION_PROFILE`), since a cap means something only against the measure it reads.

`served` (the default): `Admission`'s own defaults, reading a codec call from dispatch to end
(`CallSecondsRead`, services/device/calls.py), its miss rule counting near misses too (admission.py, rule 1; the other
profiles read misses alone, as they were calibrated). It holds on both ways a device can be shared, one call at a time
or by time slices between the engine's process and the codec's, and on one CUDA context it is the one profile that
kept every admitted stream playing in sustained 48 kHz overload, so it is the default on every layout. Below the
streams the GPU is known to carry (admission's rule 0, services/device/carried.py; every profile) the goal bursts are
admitted on the count, which its measures alone refused in their first seconds: on the H200's one CUDA context it meets
every goal row (docs/decisions/carried-streams.md).

`own_seconds`: the codec read as its own device seconds, rule 3's cap at 0.74 of the device, the exact first chunk
given only while a capacity rule refused in the last 2 s (not because a share crossed a line), and a ramp floor of 40:
a burst the device carries keeps the short first chunk. Own seconds miss the stretch of a device shared by time
slices, so there it admits more than the device carries.

`settled`: `own_seconds`' caps and first-chunk settings over a call's `run` seconds (CUDA events around it: its own
time on a device it has alone once started, stretched where the engine's process slices the device), rule 3 read on
the settled streams alone (codec_cost.py), since a stream's first second costs the codec several times a settled one,
and the exact first chunk also after the ramp held a caller (`exact_after_ramp`). Suited to a device that runs one
call at a time; on one shared by time slices it reads each call's stretch and holds less than `served`.

`bursts`: `settled` with its limits set for the bursts a device carries once a stream's chunks are cut for a listener
about to run dry (`TTS_STREAM_CUT_RUNWAY_MS`, on by default; this profile needs it): the LLM's pace margin 1.4 (2 while
48 kHz streams are live, whose windows wait for the next decoded audio), no spacing, a ramp floor of 64, the codec's
cap at 0.9, newcomers on the short first chunk while the engine gives 3x real time and the codec's cost is read (the
exact one past 32 streams before it is), and at 16 kHz the codec's cap passed while its queue drains leaving every
listener 0.5 s (`queue_headroom_s`, headroom.py): the stretch a burst puts on each call passes with the burst.

`one_context`: `bursts` on one CUDA context whose engine and codec streams overlap (`TTS_LLM_ENGINE_LAYOUT=inprocess`,
the simulator's `overlapped` device; services/device/device_layout.py). While both streams have work such a device runs 2 / (2 - overlap) device seconds of
their own work a second (1.33 at the estimated overlap 0.5) where the serial device `bursts` was calibrated on runs
one, so the codec's cap, which stands for the device's room, scales by that gain: 0.9 x 4/3 = 1.2. And past 64 open
streams while 48 kHz streams are live a newcomer gets the exact first chunk and no lead window (`sr_short_streams`): in
a 48 kHz burst the short chunk's second window is the first to miss, and a miss refuses every arrival behind it. The
LLM's pace margins stay `bursts`' (1.4, 2 while 48 kHz streams are live): the pace is measured on this device already,
beside the codec's calls, and a 48 kHz margin of 1.5-1.8 admits the whole 48 kHz goal burst but runs a 48 kHz flood
(600 within 10 s) dry. Opt-in, not the default: in sustained 48 kHz overload on that device its cap lets admitted
streams run dry (so does `bursts`' 0.9, less), where `served`, braking on near misses, kept them playing.

The runs behind each profile, on both device models: docs/decisions/admission-profiles.md,
docs/decisions/codec-seconds-read.md and docs/decisions/queue-headroom.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from services.device.calls import CallSecondsRead

AdmissionProfileName = Literal["served", "own_seconds", "settled", "bursts", "one_context"]
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
_BURSTS: dict[str, Any] = {
    **_SETTLED,
    "pace_margin": 1.4,
    "sr_pace_margin": 2.0,
    "spacing_s": 0.0,
    "ramp_floor": 64,
    "max_codec_share": 0.9,
    "short_needs_pace": 3.0,
    "unmeasured_short_streams": 32,
    "queue_headroom_s": 0.5,
}
# One CUDA context's gain over the serial device while both streams work: 2 / (2 - overlap) at the layout's estimated
# overlap 0.5 (device_layout.DEVICE_OVERLAP; module doc, `one_context`). Stated here, not imported: device_layout reads
# this module; a test holds the two together.
ONE_CONTEXT_GAIN = 4.0 / 3.0
ADMISSION_PROFILES: dict[AdmissionProfileName, AdmissionProfile] = {
    "served": AdmissionProfile("dispatch_to_end"),
    "own_seconds": AdmissionProfile("own", _OWN_SECONDS),
    "settled": AdmissionProfile("run", _SETTLED),
    "bursts": AdmissionProfile("run", _BURSTS),
    "one_context": AdmissionProfile(
        "run",
        {
            **_BURSTS,
            "max_codec_share": round(_BURSTS["max_codec_share"] * ONE_CONTEXT_GAIN, 6),
            "sr_short_streams": 64,
        },
    ),
}
