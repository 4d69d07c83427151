"""The simulator's one entry point: the device on a virtual clock, one subcommand per question.

    python -m bench sim                      # one line per subcommand
    python -m bench sim NAME [ARGS...]       # run one (--help shows its options)

`python -m bench.sim NAME` is the same. Each subcommand prints markdown tables; `--json OUT` keeps the report
(by default under bench/results/simulate/, which git ignores).
"""

from __future__ import annotations

import importlib
import sys

# subcommand: (module under bench/sim/, what it answers)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "load": ("load", "many streams on a modelled device: the real scheduler and admission"),
    "goals": (
        "goals_table",
        "where the many-streams goals stand: every goal arrival on both device models, paced and not",
    ),
    "overload": ("overload", "bursts and sustained overload: does an admitted stream underrun"),
    "alerts": ("alerts", "what the capacity alerts read at steady load"),
    "h200": ("h200", "steady and burst arrivals at H200 graph costs, and what binds"),
    "ramp": ("ramp", "the engine rate a chunk schedule needs, and bursts on gentler growth"),
    "engine_step": ("engine_step", "the goal bursts as the engine step's fixed device time falls"),
    "burst_levers": (
        "burst_levers",
        "the goal bursts at vLLM's published step, one onboarding lever at a time",
    ),
    "burst_costs": ("burst_costs", "the goal bursts with one device cost term made cheaper at a time"),
    "profiles": ("profiles", "the goal arrivals under each admission profile, both engine steps and devices"),
    "cut": ("cut", "the goal bursts with and without cutting a chunk for a listener about to run dry"),
    "sr_lead": ("sr_lead", "the 48 kHz lead window with and without"),
    "sr_precision": ("sr_precision", "200 streams at 48 kHz at the AP-BWE precision served"),
    "needs_48k": ("needs_48k", "what 200 streams at 48 kHz need from the device"),
}


def listing() -> str:
    width = max(map(len, SUBCOMMANDS))
    rows = [f"  {name:<{width}}  {what}" for name, (_, what) in SUBCOMMANDS.items()]
    return "\n".join([__doc__.strip(), "", "subcommands:", *rows])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    name = args[0] if args else "list"
    if name not in SUBCOMMANDS:  # the listing: asked for (exit 0), or after an unknown name (exit 2)
        asked = name in ("list", "-h", "--help")
        print(
            listing() if asked else f"unknown subcommand {name!r}\n\n{listing()}",
            file=sys.stdout if asked else sys.stderr,
        )
        return 0 if asked else 2
    module = importlib.import_module(f"bench.sim.{SUBCOMMANDS[name][0]}")
    sys.argv[0] = f"python -m bench sim {name}"  # argparse's prog in --help and errors
    code: int = module.main(args[1:])
    return code


if __name__ == "__main__":
    sys.exit(main())
