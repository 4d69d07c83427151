"""Run every benchmark one after another and report how long each took.

    .venv/bin/python bench/run_all.py --quick    # every bench's --quick mode (under 10 min on 2 cores)
    .venv/bin/python bench/run_all.py --only service,gpu

Each bench runs as its own process (so one crash does not stop the rest), prints its tables as it goes and
writes its bench/results/*.json. The summary lists wall time and exit status per bench, and the total.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> script, fastest first
BENCHES: dict[str, str] = {
    "parser": "bench/bench_parser.py",
    "encoders": "bench/bench_encoders.py",
    "sr_convs": "bench/bench_sr_convs.py",
    "apbwe": "bench/bench_apbwe.py",
    "bicodec": "bench/bench_bicodec.py",
    "align": "bench/bench_align.py",
    "clone": "bench/bench_clone.py",
    "gpu": "bench/gpu/bench_gpu.py",
    "service": "bench/bench_service.py",
    "ttfa": "bench/bench_ttfa.py",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every bench")
    parser.add_argument(
        "--only", type=lambda s: s.split(","), default=None, help=f"subset of {', '.join(BENCHES)}"
    )
    args = parser.parse_args(argv)
    names = args.only or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benches {unknown}; accepted: {', '.join(BENCHES)}")

    results: list[tuple[str, float, int]] = []
    started = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in names:
        cmd = [sys.executable, str(ROOT / BENCHES[name]), *(["--quick"] if args.quick else [])]
        print(f"\n===== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode
        results.append((name, time.perf_counter() - t0, rc))
    total = time.perf_counter() - started

    print(f"\n===== summary ({'--quick, ' if args.quick else ''}load avg now {os.getloadavg()[0]:.1f})\n")
    print("| bench | wall s | status |")
    print("|---|---:|---|")
    for name, seconds, rc in results:
        print(f"| {name} | {seconds:.0f} | {'ok' if rc == 0 else f'FAILED (exit {rc})'} |")
    print(f"| total | {total:.0f} | {sum(rc != 0 for _, _, rc in results)} failed |")
    return 0 if all(rc == 0 for _, _, rc in results) else 1


if __name__ == "__main__":
    sys.exit(main())
