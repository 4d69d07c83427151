"""The engine's steps where vLLM's engine core runs in the serving process (`TTS_LLM_ENGINE_LAYOUT=inprocess`).

There the engine core's Python (scheduling, input preparation, the sampled ids' bookkeeping) runs on a thread of the
serving process and holds its GIL, in turn with the API path's own work (the ids' handling, the codec scheduler,
admission): each waits for the other. `EngineOnServingGIL` stands between the engine's step loop and the device: a
step first runs its host part (the cost model's `engine_host`, within the step's cost, not added to it) on the GIL of
the process the engine runs in, after whatever holds it, then its device part on the device. In the multiprocess
layout the engine core has a process and a GIL of its own, and the simulator's other devices charge it nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bench.standin.cost_model import CostModel, Device, EngineStep


class EngineOnServingGIL:
    """The device as the engine's steps see it with the engine core in the serving process (module doc).
    `hold_gil(seconds)` takes that much of the process's GIL, from now or when its earlier work ends, and returns
    when the hold ends."""

    def __init__(self, device: Device, model: CostModel, hold_gil: Callable[[float], float]) -> None:
        self.device = device
        self.model = model
        self.hold_gil = hold_gil

    @property
    def busy_seconds(self) -> dict[str, float]:
        return self.device.busy_seconds

    @busy_seconds.setter
    def busy_seconds(self, value: dict[str, float]) -> None:
        self.device.busy_seconds = value

    @property
    def observer(self) -> Callable[[str, float, float, Any], None] | None:
        return self.device.observer

    @observer.setter
    def observer(self, value: Callable[[str, float, float, Any], None] | None) -> None:
        self.device.observer = value

    async def use(
        self, kind: str, seconds: float, *, arrived: float | None = None, detail: Any = None
    ) -> float:
        """The step's host part on the GIL, then the rest of its `seconds` on the device; returns its end."""
        rows = detail.rows if isinstance(detail, EngineStep) else 0
        host = min(max(0.0, seconds), self.model.engine_host.seconds(rows))
        loop = asyncio.get_running_loop()
        held_until = self.hold_gil(host)
        await asyncio.sleep(max(0.0, held_until - loop.time()))
        return await self.device.use(kind, seconds - host, detail=detail)

    def run_seconds(self, seconds: float, arrived: float, end: float) -> float:
        return self.device.run_seconds(seconds, arrived, end)
