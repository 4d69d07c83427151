"""One device call settles the engine and the codec at once, AP-BWE's precisions, the codec scheduler and the
service under load: `concurrency` (both engine layouts at 100-250 rows), `scheduler`, `apbwe_variants` (AP-BWE's
precisions at its 72 shapes), `service` (16 kHz, both schedules, 1-256 streams) and `service48` (1-200) in at most 9
minutes on an H100 or H200 (the device tool allows 10 per command; a GPU comes to about one task in twenty, so a call
must not lose what it measured).

    python3 bench/gpu/acceptance.py --one-call   # = --steps concurrency,scheduler,apbwe_variants,service,service48

The arithmetic, in seconds (`STEP_S` and the margins sum under `CALL_S`; tests/unit/bench/gpu/test_gpu_one_call.py checks it):
- the wheels' install and nvidia-smi before the kit starts: `INSTALL_S`;
- `concurrency`: two Qwen2 builds at the released size (one in a child process, at once), two codec graphs, then
  four 1 s phases a batch over three batches and two layouts (bench/gpu/concurrency.py): ~40 s;
- `scheduler`: the H200 took 61 s with all 207 graphs captured in 16 s and the TF32 AP-BWE twins; here both captures
  stop at `CAPTURE_S` (the step captures the graphs with the fewest rows first, so a cut keeps the common shapes);
- `apbwe_variants`: four captures of the 72 AP-BWE graphs (~6 s each at the H200's pace), their replays, and the fused
  variant's compile, each variant within its share of what is left;
- `service`: the server's start (30 s and the graphs' capture: ~50 s on the H200) and its levels, ~53 s at the
  H100's paced rates (service_load.estimate_s; a level whose estimate would pass what is left is skipped);
- `service48`: the same at 48 kHz, ~37 s of levels;
- each service step's last cell may run `service_load.CELL_MARGIN_S` past the step's budget, then the server stops.
Each service level's rows are written to `<results>/<step>.json` as soon as they are measured (`"partial": true`
until the step ends), so a call cut short keeps them; a later call reruns only the levels not yet there.
"""

from __future__ import annotations

from typing import Any

from bench.gpu.service_load import SCHEDULES

CALL_S = 540.0  # "at most 9 minutes"; the device tool's limit is 600 s per command
INSTALL_S = 30.0  # pip install of the carried wheels (~50, --no-deps) and nvidia-smi
CAPTURE_S = 30.0  # each of the scheduler step's two graph captures (the H200: 16 s for all 207)
STEP_S = {"concurrency": 60.0, "scheduler": 90.0, "service": 120.0, "service48": 100.0}
STEP_S["apbwe_variants"] = 80.0  # fp32, TF32, fp16, fp16 fused at the 72 AP-BWE shapes (~6 s of capture each)
STOP_S = 15.0  # a service step's server stop (terminate, then kill after 15 s)


def worst_case_s(cell_margin_s: float) -> float:
    """The call's longest run: install, every step's budget, each service step's overrun and server stop."""
    services = sum(1 for step in STEP_S if step.startswith("service"))
    return INSTALL_S + sum(STEP_S.values()) + services * (cell_margin_s + STOP_S)


def budget_left(step: str, elapsed_s: float) -> float:
    """A step's budget, cut to what is left of the call after `elapsed_s` of the kit (and the install before it)."""
    return max(0.0, min(STEP_S[step], CALL_S - INSTALL_S - elapsed_s))


def missing_levels(result: dict[str, Any] | None) -> list[int]:
    """The levels a step's result still lacks: those skipped for time, and, in a result cut short (`partial`), those
    with no row for one of its schedules. Empty for a finished, complete result (or none at all)."""
    if not result or "rows" not in result:
        return []
    schedules = set(result.get("schedules") or SCHEDULES)
    measured: dict[int, set[str]] = {}
    for row in result["rows"]:
        measured.setdefault(row["streams"], set()).add(row["schedule"])
    # A merged result lists only the levels with rows; its plans (merged too) say which were wanted.
    planned = [p["streams"] for p in result.get("plan", [])] or result.get("levels", [])
    wanted = planned if result.get("partial") else []
    lacking = [level for level in wanted if not schedules <= measured.get(level, set())]
    return sorted(set(lacking) | set(result.get("skipped_levels", [])))
