"""A device the engine and the codec share as one CUDA context with two streams: their calls overlap.

With vLLM's engine core inside the serving process (`TTS_LLM_ENGINE_LAYOUT=inprocess`), the engine's steps and the
codec's graph replays are two streams of one context, and the GPU runs their kernels side by side instead of slicing
its time between two contexts (bench/sim/sliced_device.py). How much they overlap depends on what each leaves idle:
the codec's calls are launch-bound (hundreds of small kernels a call, each a few SMs wide), an engine step's kernels
are small at a few hundred rows but for the LM head, and both read the same memory.

`OverlappedDeviceTimeline` models that with one number, the cost model's `device_overlap` (α, bench/standin/
cost_model.py): the share of the shorter of two calls in progress together that is hidden under the other. Two calls
of a and b seconds (a <= b) started together end, the pair, after b + (1 - α) a. So while both lanes have a call in
progress each runs at 1 / (2 - α) of its speed alone: α = 0 is the sliced device (the device's seconds kept, half
each), α = 1 two devices. Each lane is first come first served within itself, as on the sliced device; the serial
device (`DeviceTimeline`) differs from α = 0 in order only (one call at a time, first come first served).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.sim.sliced_device import SlicedDeviceTimeline


@dataclass
class OverlappedDeviceTimeline(SlicedDeviceTimeline):
    overlap: float = 0.5  # the cost model's `device_overlap`

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap <= 1.0:
            raise ValueError(f"device overlap must lie in [0, 1], got {self.overlap}")
        super().__post_init__()

    def speed(self, running: int) -> float:
        """Alone at full speed; beside the other lane's call at 1 / (2 - overlap)."""
        return 1.0 if running <= 1 else 1.0 / (2.0 - self.overlap)
