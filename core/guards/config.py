"""The guards' thresholds and modes: one frozen value the service builds from its settings (or tests build directly).

Every threshold's reason and calibration is in deploy/RUNBOOK.md ("Generation guards"); defaults are the
calibrated values (bench/bench_guards.py reproduces the figures).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

GuardName = Literal["length", "loop", "silence", "empty", "alignment"]
GUARD_NAMES: tuple[GuardName, ...] = ("length", "loop", "silence", "empty", "alignment")
# act: trip -> retry or cut; count: trip is counted and logged, the audio is left alone; off: not run.
GuardMode = Literal["act", "count", "off"]
GUARD_MODES: tuple[GuardMode, ...] = ("act", "count", "off")


@dataclass(frozen=True)
class GuardConfig:
    mode: GuardMode = "act"
    modes: dict[str, GuardMode] = field(default_factory=dict)  # per-guard overrides of `mode`
    # length: more semantic tokens than max_ratio x expected + slack, or (at the stop) fewer than min_ratio x
    # expected when at least min_expected_s of speech was expected.
    length_max_ratio: float = 3.0
    length_slack_s: float = 1.5
    length_min_ratio: float = 0.25
    length_min_expected_s: float = 2.0
    # loop: in the last `loop_window` semantic tokens, the share of n-grams (n = loop_ngram, with at least
    # loop_min_distinct different ids) already seen earlier in the window; checked once loop_min_tokens arrived.
    loop_ngram: int = 4
    loop_min_distinct: int = 3
    loop_window: int = 250
    loop_min_tokens: int = 100
    loop_max_repeat_share: float = 0.5
    # silence: 20 ms frames below silence_db (RMS, dBFS) for longer than silence_max_s plus the longest pause the
    # text asks for; the same allowance bounds one semantic id held (the codec's silence is a held id).
    silence_db: float = -50.0
    silence_max_s: float = 2.0
    # alignment: words scored below align_min_score count as missing; trip when more than align_max_missing of the
    # chunk's words, or align_max_missing_run words in a row, are missing.
    align_min_score: float = 0.3
    align_max_missing: float = 0.25
    align_max_missing_run: int = 3

    def mode_of(self, guard: str) -> GuardMode:
        return self.modes.get(guard, self.mode)

    def enabled(self, guard: str) -> bool:
        return self.mode_of(guard) != "off"

    def __post_init__(self) -> None:
        for name, mode in {"*": self.mode, **self.modes}.items():
            if name != "*" and name not in GUARD_NAMES:
                raise ValueError(f"unknown guard {name!r}; known: {', '.join(GUARD_NAMES)}")
            if mode not in GUARD_MODES:
                raise ValueError(f"guard mode {mode!r} for {name}; accepted: {', '.join(GUARD_MODES)}")
        if self.loop_ngram < 2 or self.loop_window <= self.loop_ngram:
            raise ValueError("loop_ngram must be >= 2 and below loop_window")
