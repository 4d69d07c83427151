"""vLLM's scheduler with paced requests held back (core/llm/engine_pace.py): the engine-core side.

vLLM builds its scheduler from `scheduler_cls` in its engine-core process; `paced_scheduler` is that callable (named
by `VLLMEngine` when TTS_LLM_PACE_LEAD_IDS is set). It builds vLLM's own scheduler for the configuration (async
scheduling or not) with one change: before a step is scheduled, each running request its pace line holds back gets
`next_decode_eligible_step` past that step, the field vLLM's scheduler already reads to leave a running request out of
a step. A held request keeps its KV cache and its place in the running list, and is aborted, finished or preempted as
any other; nothing about the batch's capacity changes.

A request is paced when its `SamplingParams.extra_args` carry its pace (`EnginePace.extra_args`, set by
`VLLMEngine.sampling_params`); others run free. When every running request is held back and none waits, the engine
core would spin on empty steps, so `schedule` first sleeps until the first one may step again, at most
`IDLE_SLEEP_S`: a request arriving then waits at most that long for its first step.

Imports vLLM: only vLLM's engine-core process imports this module (by the name `VLLMEngine` gives it).
"""

from __future__ import annotations

import math
import time
from typing import Any

from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.scheduler import Scheduler

from core.llm.engine_pace import PaceLine, pace_of

IDLE_SLEEP_S = 0.002


class _PacedScheduling:
    """What `paced_scheduler` adds to vLLM's scheduler class (a mixin before it)."""

    running: list[Any]
    waiting: Any
    requests: dict[str, Any]
    current_step: int
    _pace_lines: dict[str, PaceLine | None]  # per request seen running: its line, None for one that runs free

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        resume_at = self._hold_back(now)
        if resume_at is not None and len(self.waiting) == 0:
            time.sleep(min(max(0.0, resume_at - now), IDLE_SLEEP_S))
        return super().schedule(*args, **kwargs)  # type: ignore[misc]

    def _hold_back(self, now: float) -> float | None:
        """Mark the running requests held back from the next step; when every one is, when the first may step."""
        lines = self._pace_lines
        if len(lines) > len(self.requests):  # forget finished requests
            for request_id in [r for r in lines if r not in self.requests]:
                del lines[request_id]
        held, first_resume = 0, math.inf
        for request in self.running:
            if request.request_id not in lines:  # its pace is read once, when it first runs
                pace = pace_of(request.sampling_params.extra_args if request.sampling_params else None)
                lines[request.request_id] = None if pace is None else PaceLine(pace, now)
            line = lines[request.request_id]
            if line is None:
                continue
            generated = request.num_output_tokens
            if line.hold(generated, now):
                # the step being scheduled is current_step + 1 (schedule() counts it first)
                request.next_decode_eligible_step = max(
                    request.next_decode_eligible_step, self.current_step + 2
                )
                held += 1
                first_resume = min(first_resume, line.resumes_at(generated))
        return first_resume if held and held == len(self.running) else None


class PacedScheduler(_PacedScheduling, Scheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pace_lines = {}


class PacedAsyncScheduler(_PacedScheduling, AsyncScheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pace_lines = {}


def paced_scheduler(**kwargs: Any) -> Scheduler:
    """vLLM's scheduler for this configuration (async scheduling or not), with paced requests held back."""
    asynchronous = bool(kwargs["vllm_config"].scheduler_config.async_scheduling)
    return (PacedAsyncScheduler if asynchronous else PacedScheduler)(**kwargs)


def scheduler_holds_requests() -> bool:
    """Whether this vLLM's scheduler leaves a running request out of a step before its `next_decode_eligible_step`
    (0.32 and later): what holding a request back relies on."""
    import inspect

    try:
        return "next_decode_eligible_step" in inspect.getsource(Scheduler.schedule)
    except (OSError, TypeError):  # no source shipped: nothing shows the field is read, so pacing is refused
        return False


__all__ = ["IDLE_SLEEP_S", "paced_scheduler", "scheduler_holds_requests"]
