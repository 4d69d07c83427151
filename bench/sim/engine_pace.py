"""The simulator's engine with streamed requests held to their pace line (core/llm/engine_pace.py).

`PacedStepLoop` holds a row back from the step while its `PaceLine` says so; when every row is held back the engine
leaves the device alone until the first one may step again. Rows `exempt` says of (long-form jobs) are never held.
`active` counts held-back rows out, as `VLLMEngine.stepping_requests` does for admission's pace rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from bench.standin.cost_model import DEFAULT_MAX_RUNNING, CostModel, Device, EngineRow, StepLoop
from core.llm.engine_pace import EnginePace, PaceLine


class PacedStepLoop(StepLoop):
    """`StepLoop` with each row held to its `PaceLine` (module docstring); `exempt(row)`: never held."""

    def __init__(
        self,
        model: CostModel,
        device: Device,
        pace: EnginePace,
        *,
        exempt: Callable[[EngineRow], bool] = lambda row: False,
        on_step: Callable[..., None] | None = None,
        max_running: int = DEFAULT_MAX_RUNNING,
    ) -> None:
        super().__init__(model, device, on_step=on_step, max_running=max_running)
        self.pace = pace
        self.exempt = exempt
        # per row (the object itself, kept until it finishes or is dropped): its line from its first step, and ids
        self._lines: dict[EngineRow, PaceLine] = {}
        self._generated: dict[EngineRow, int] = {}

    @property
    def active(self) -> int:
        """Requests the engine steps: held-back ones are counted out, as admission's pace reads them."""
        return super().active - sum(line.held for line in self._lines.values())

    def _choose(self, rows: list[EngineRow], now: float) -> tuple[list[EngineRow], float]:
        self._forget(rows)
        run: list[EngineRow] = []
        resume_at = math.inf
        for row in rows:
            if self.exempt(row):
                run.append(row)
                continue
            line = self._lines.get(row)
            if line is None:
                line = self._lines[row] = PaceLine(self.pace, now)
            generated = self._generated.get(row, 0)
            if line.hold(generated, now):
                resume_at = min(resume_at, line.resumes_at(generated))
            else:
                run.append(row)
        return (rows if len(run) == len(rows) else run), resume_at

    def _stepped(self, row: EngineRow) -> bool:
        self._generated[row] = self._generated.get(row, 0) + 1
        finished = super()._stepped(row)
        if finished:
            self._lines.pop(row, None)
            self._generated.pop(row, None)
        return finished

    def _forget(self, rows: list[EngineRow]) -> None:
        """Drop what is kept for rows no longer in the loop (dropped ones)."""
        if len(self._generated) > len(rows):
            alive = set(rows)
            for row in [r for r in self._generated if r not in alive]:
                self._lines.pop(row, None)
                self._generated.pop(row, None)


__all__ = ["PacedStepLoop"]
