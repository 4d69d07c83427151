"""How the engine and the codec share the GPU, named by where vLLM's engine core runs (`TTS_LLM_ENGINE_LAYOUT`).

- `process` (vLLM's AsyncLLM as it ships): the engine core is a process of its own, a second CUDA context. Without MPS
  the GPU time-slices two contexts: while both have work each gets about half (an H100 gave an engine's process and
  the codec 0.52-0.57 and 0.46-0.49 of the device), so every codec call beside the engine's steps takes about twice
  its own time. The simulator's `sliced` device.
- `inprocess`: the engine core runs in the serving process (vLLM's LLMEngine, `VLLM_ENABLE_V1_MULTIPROCESSING=0`,
  stepped on a thread of its own: core/llm/vllm_inproc.py) and the codec's calls run on a CUDA stream of their own
  (services/device/runner.py): one context, two streams, whose kernels the GPU runs side by side. The simulator's
  `overlapped` device (bench/sim/overlapped_device.py), the share hidden its cost model's `device_overlap`.

`serial` (one call at a time, first come first served) is what the service's own codec calls do among themselves and
what a GPU with the engine off it would be; no layout gives it beside a running engine.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal, get_args

from services.device.admission_profiles import AdmissionProfile

EngineLayout = Literal["inprocess", "process"]
ENGINE_LAYOUTS: tuple[EngineLayout, ...] = get_args(EngineLayout)
DeviceSharing = Literal["serial", "sliced", "overlapped"]
DEVICE_SHARINGS: tuple[DeviceSharing, ...] = get_args(DeviceSharing)
LAYOUT_SHARING: dict[EngineLayout, DeviceSharing] = {"process": "sliced", "inprocess": "overlapped"}
# The share of the shorter of an engine step and a codec call, in progress together on two streams of one CUDA context,
# hidden under the other (bench/sim/overlapped_device.py). 0.5 is an estimate, not a measurement: 0 is two contexts
# time-sliced (the H100 gave an engine's process and the codec 0.52-0.57 and 0.46-0.49 of the device: no overlap) and 1
# two devices; the codec's calls are launch-bound (hundreds of kernels a few SMs wide) and leave most SMs to the
# engine's kernels, but both read the same memory and the engine's LM head fills the device. The GPU kit measures it
# (bench/gpu/concurrency.py: each one's time alone and together).
DEVICE_OVERLAP = 0.5


def sharing_of(layout: EngineLayout, engine: str = "vllm") -> DeviceSharing:
    """The device a layout gives the engine and the codec (module doc). The layout is vLLM's: the transformers engine
    always steps in the serving process, beside the codec's stream."""
    if layout not in LAYOUT_SHARING:
        raise ValueError(f"engine layout must be one of {ENGINE_LAYOUTS}, got {layout!r}")
    return LAYOUT_SHARING[layout] if engine == "vllm" else "overlapped"


def codec_stretch(sharing: DeviceSharing, overlap: float = DEVICE_OVERLAP) -> float:
    """How much longer a codec call runs than its own work while the engine steps beside it: 1 on the serial device
    (once started a call runs alone), 2 sliced (half the device each), 2 - overlap overlapped."""
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"device overlap must lie in [0, 1], got {overlap}")
    return {"serial": 1.0, "sliced": 2.0, "overlapped": 2.0 - overlap}[sharing]


# The near-miss grace on the overlapped device for a profile that sets none (`served`): braking with 100 ms of audio
# left, not 50. There a 48 kHz flood's newcomers admitted as a cohort ended ran up to 4 streams 4-35 ms dry at 50 ms
# and none at 100 (docs/decisions/near-misses.md); on the sliced device 100 ms held 0.67x of 50 ms's 48 kHz overload.
OVERLAPPED_MISS_GRACE_S = -0.1


def profile_on(
    profile: AdmissionProfile, sharing: DeviceSharing, overlap: float = DEVICE_OVERLAP
) -> AdmissionProfile:
    """`profile` reading the codec on `sharing`'s device: a profile that reads a call's run on the device (CUDA
    events: `run`) was calibrated where that is its own work, so rule 3 divides it by the call's stretch there
    (`Admission.codec_stretch`). One that reads its own seconds is not stretched; one that reads dispatch to end was
    calibrated with the wait behind the engine in it, and keeps it. On the overlapped device a profile without its own
    near-miss grace brakes at `OVERLAPPED_MISS_GRACE_S`."""
    if sharing == "overlapped" and "miss_grace_s" not in profile.admission:
        profile = replace(profile, admission={**profile.admission, "miss_grace_s": OVERLAPPED_MISS_GRACE_S})
    if profile.call_seconds_read != "run":
        return profile
    return replace(profile, admission={**profile.admission, "codec_stretch": codec_stretch(sharing, overlap)})
