"""What the benches' tables call each modelled device, and which one the service deploys: the device its default
engine layout gives (`TTS_LLM_ENGINE_LAYOUT`, services/device/device_layout.py)."""

from __future__ import annotations

from services.device.device_layout import DeviceSharing, sharing_of
from shared.settings.model import LLMSettings

TITLES: dict[DeviceSharing, str] = {
    "serial": "On a device that runs one call at a time",
    "sliced": (
        "On a device shared by time slices (the engine and the codec at half speed each while both have work, as a "
        "GPU shares itself between vLLM's engine-core process and the codec's: TTS_LLM_ENGINE_LAYOUT=process)"
    ),
    "overlapped": (
        "On one CUDA context with the engine and the codec on two streams (each at 1 / (2 - {overlap:g}) of its speed "
        "while both have work, and each engine step's Python on the serving process's GIL: vLLM's engine core in the "
        "serving process, TTS_LLM_ENGINE_LAYOUT=inprocess)"
    ),
}


def deployed_sharing() -> DeviceSharing:
    """The device the service's default layout gives vLLM and the codec."""
    return sharing_of(LLMSettings().llm_engine_layout)


def device_title(sharing: DeviceSharing, overlap: float) -> str:
    """A table's title for `sharing`'s device, naming it the deployment's where it is."""
    title = TITLES[sharing].format(overlap=overlap)
    return f"{title}; the deployment's device" if sharing == deployed_sharing() else title
