"""Admission from the scheduler's own measure of headroom: a new stream is admitted only if every stream already
admitted keeps real time with it. Overload is refused (503 with Retry-After), never spread over everyone.

The decision reads measured figures, not a fixed count: the device's busy share over the last seconds, the
device cost per stream-second of audio, recent deadline misses and the LLM's pace (tokens per second per
stream against the 50 real time needs). See `Admission.decide` for the rule."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AdmissionDecision:
    admit: bool
    reason: str  # one sentence for logs, metrics and the refusal's message
    retry_after_s: int = 1


class Admission:
    """Decides whether one more stream fits. `decide()` is called once per new stream (every transport), before any
    work; `note_tokens(n)` is told of engine tokens as they arrive (the LLM's pace). The rule is being calibrated with
    `bench.simulate`; until then every stream is admitted."""

    def __init__(self, scheduler: object, *, clock: object = None) -> None:
        self.scheduler = scheduler
        self.clock = clock

    def note_tokens(self, count: int) -> None:
        return None

    def decide(self) -> AdmissionDecision:
        return AdmissionDecision(True, "admitted")
