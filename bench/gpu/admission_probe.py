"""What admission's ramp costs a burst on a GPU: the service steps' burst levels (every stream of a level arrives at
once) with admission as served, admission off, and admission on with a long wait, side by side.

    python3 bench/gpu/admission_probe.py            # on a lent GPU, after the `scheduler` step; writes $OUT/probe-*.json
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.gpu import service_load  # noqa: E402
from bench.gpu.acceptance import DEFAULT_RESULTS, load_results  # noqa: E402

CASES = [
    # name, sample rate, levels, settings
    ("off16", 16000, [64, 128], {"TTS_ADMISSION": "off"}),
    ("wait16", 16000, [64, 128], {"TTS_ADMISSION_MAX_WAIT_MS": "3000"}),
    ("off48", 48000, [64, 200], {"TTS_ADMISSION": "off"}),
]


def main() -> None:
    out = Path(os.environ.get("OUT", "/tmp"))
    # the kit's earlier steps: the LLM's pace, the isolated costs, capacity
    found = load_results(DEFAULT_RESULTS)
    steps = {n: found[n]["result"] for n in ("llm", "scheduler", "throughput")}
    only = set(sys.argv[1:])
    for name, rate, levels, settings in CASES:
        if only and name not in only:
            continue
        print(f"== {name}: {settings}", flush=True)
        target = out / f"probe-{name}.json"
        result = service_load.run(
            "cuda",
            False,
            rate,
            llm=steps["llm"],
            scheduler=steps["scheduler"],
            throughput=steps["throughput"],
            levels=levels,
            budget_s=110.0,
            settings=settings,
            on_rows=lambda so_far, target=target: target.write_text(json.dumps(so_far, default=str)),
        )
        target.write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
