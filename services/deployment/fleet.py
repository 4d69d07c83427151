"""What a fleet of containers needs: its size per container from what one GPU holds, and state every container
shares. Standard library only at top level (app.py imports it through modal_deployment).

**Sizing, in one place.** One container is one GPU. What one GPU holds is admission's to say (it refuses past the
measured headroom; services/device/admission.py), so Modal's counts only have to let admission use the whole GPU and
tell the autoscaler when to add one. The figures are the simulator's at H200 graph costs until a GPU measures them
(docs/benchmarks.md, "Where the goals stand"; `python -m bench sim goals`):

- In a burst (250 streams at 16 kHz arriving within 5 s, the per-GPU goal) all 250 are open at once; the `bursts`
  admission profile admits all 250 on the serial device model, `served` 123-156. So one container must be able to
  take `GOAL_STREAMS_PER_GPU` inputs: `MAX_INPUTS` (256) >= 250, and admission, not the input cap, decides.
- At steady arrivals (250 over 30 s) at most 87-99 streams play at once and they need 0.37-0.41 of the device. So
  `TARGET_INPUTS` (128) is where the autoscaler aims: a steady ~100 streams and a third more sit under it, and the
  device keeps about half free for a burst while a new container starts (minutes with weights and compile).
- vLLM runs up to two generations per request (a long text prefetches its next chunk's), so the engine's own cap
  is `GENERATIONS_PER_INPUT` x the inputs: `engine_seqs_for(MAX_INPUTS)` = 512. In the 250 burst the engine ran at
  most 229 requests at once.

**State a fleet must share.** With more than one container (`max_containers` > 1) a per-process store forks: each
container keeps its own copy and callers see whichever their request lands on. `forked_state` names each one and
the setting that shares it; the container refuses to start on any of them unless TTS_MODAL_FORKED_STATE accepts it
by name (and then says so in its start-up log). The failed-login throttles (services/access/authenticator.py) stay
per container with or without Redis: a client gets TTS_AUTH_FAILURES_PER_MINUTE from each container.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.settings import Settings

# The per-GPU goal (bench/sim/goals.py): 250 streams, all open at once in a burst.
GOAL_STREAMS_PER_GPU = 250
# Most streams playing at once under the goal's steady arrivals (250 over 30 s), simulator at H200 costs: 87-99.
STEADY_STREAMS_PER_GPU = 99
# Engine requests one input may run at once: its chunk's generation and the next chunk's, prefetched.
GENERATIONS_PER_INPUT = 2
# Inputs one container takes (Modal's hard cap): the goal, rounded up to a power of two (vLLM captures CUDA graphs
# at batch sizes up to its max_num_seqs; powers of two keep that list short).
MAX_INPUTS = 256
# Where Modal's autoscaler aims per container: above the steady peak, half the cap so a burst fits on top.
TARGET_INPUTS = 128


def engine_seqs_for(max_inputs: int) -> int:
    """vLLM's max_num_seqs that lets every input of a full container run its generations at once."""
    return GENERATIONS_PER_INPUT * max_inputs


@dataclass(frozen=True)
class ForkedState:
    """One per-process store that forks across containers: its name (what TTS_MODAL_FORKED_STATE accepts), what
    forks, and the setting that shares it."""

    name: str
    what: str
    fix: str


FORKED_STATES = ("credits", "limits", "jobs", "continuity")


def forked_state(settings: Settings) -> list[ForkedState]:
    """The stores these settings keep per process, which a second container would fork."""
    found: list[ForkedState] = []
    access = settings.access
    if settings.usage.credits_enabled and access.key_backend == "static":
        found.append(
            ForkedState(
                "credits",
                "credits on static keys: each container keeps its own balance in memory, reset by every restart, so "
                "a key spends its balance once per container",
                "set TTS_KEY_BACKEND=postgres (with TTS_DATABASE_URL) or supabase",
            )
        )
    if not settings.databases.redis_url:
        found.append(
            ForkedState(
                "limits",
                "per-key rate and concurrency limits without Redis: each container counts alone, so a key gets "
                "each limit once per container",
                "set TTS_REDIS_URL",
            )
        )
    if settings.jobs.jobs_enabled and not settings.databases.database_url:
        found.append(
            ForkedState(
                "jobs",
                "long-form jobs without PostgreSQL: their state is a SQLite file on the jobs Volume that each "
                "container commits its own copy of, so a job can be lost or rendered twice",
                "set TTS_DATABASE_URL, or TTS_JOBS_ENABLED=false",
            )
        )
    if settings.resolved_voice_store not in ("postgres", "supabase"):
        found.append(
            ForkedState(
                "continuity",
                "recent requests (previous_request_ids, from_request_id) in each container's memory: a request "
                "that names one served by another container is refused",
                "set TTS_DATABASE_URL or TTS_SUPABASE_URL/KEY (the voice library's database keeps them)",
            )
        )
    return found


def parse_forked_allowance(raw: tuple[str, ...]) -> frozenset[str]:
    """TTS_MODAL_FORKED_STATE's names, each one of FORKED_STATES (ValueError names an unknown one)."""
    unknown = sorted(set(raw) - set(FORKED_STATES))
    if unknown:
        raise ValueError(
            f"TTS_MODAL_FORKED_STATE names {', '.join(unknown)}; accepted: {', '.join(FORKED_STATES)}"
        )
    return frozenset(raw)
