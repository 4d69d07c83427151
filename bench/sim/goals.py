"""The arrivals the many-streams goals are stated in, what meeting one means, and the host cost the goal benches run
them at: one definition for the simulator's `goals`, `h200`, `engine_step`, `burst_levers`, `burst_costs` and
`ramp` subcommands (docs/benchmarks.md, "Where the goals stand")."""

from __future__ import annotations

from typing import Any, NamedTuple

# The API path's measured CPU per second of audio (docs/benchmarks.md, "The API path's CPU per second of audio").
MEASURED_HOST_MS = 1.4


class Arrivals(NamedTuple):
    name: str  # as the benches' tables and result files name it
    streams: int
    within_s: float  # arrivals uniform over this many seconds
    sample_rate: int
    first_audio_p95_ms: float | None = None  # the goal's bound on first audio (None: none asked)


# Steady arrivals: the capacity the goals start from (every stream admitted, none running dry).
STEADY_ARRIVALS = (
    Arrivals("250 @16k over 30 s", 250, 30.0, 16_000),
    Arrivals("200 @48k over 30 s", 200, 30.0, 48_000),
)
# The bursts the goals ask the service to onboard: every stream admitted, none running dry, first audio within the
# bound at p95.
GOAL_BURSTS = (
    Arrivals("64 @16k within 2 s", 64, 2.0, 16_000, 300.0),
    Arrivals("250 @16k within 5 s", 250, 5.0, 16_000, 800.0),
    Arrivals("200 @48k within 5 s", 200, 5.0, 48_000, 800.0),
)


def goal_met(arrivals: Arrivals, runs: list[dict[str, Any]]) -> bool:
    """Whether `runs` (one per seed: `admitted`, `underran`, `ttfa_ms_p95`) meet the goal on every seed."""
    bound = arrivals.first_audio_p95_ms
    return bool(runs) and all(
        r["admitted"] == arrivals.streams
        and r["underran"] == 0
        and (bound is None or (r["ttfa_ms_p95"] is not None and r["ttfa_ms_p95"] <= bound))
        for r in runs
    )


def arrivals_named(name: str, among: tuple[Arrivals, ...]) -> Arrivals:
    """The arrivals of that name in `among` (a bench's own list)."""
    for arrivals in among:
        if arrivals.name == name:
            return arrivals
    raise ValueError(f"no arrivals named {name!r}; one of {[a.name for a in among]}")
