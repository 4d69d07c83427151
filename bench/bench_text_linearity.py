"""Every text step a request reaches before it is charged, fed adversarial shapes: time must grow linearly.

    python -m bench text_linearity [--small 4000] [--factor 8] [--all]

Each step (bench/text_shapes.py: emoji, Markdown, tags, normalisation, chunking, SSML/voice-marker reading, the
spaced-word check, and all of them as a plain request plans its text) runs on each shape (long runs of each markup
character, openers never closed, nesting) at `--small` characters and `--factor` times that, as one line and as
80-character lines. Growth is the time per character at the large size over that at the small size: 1 is linear,
`--factor` is quadratic. Prints the worst rows (every row with `--all`) and exits 1 when any growth passes
`--limit` (default 3) on a run that took at least 20 ms, so noise on fast steps never fails it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.text_shapes import STEPS, UNITS, shape  # noqa: E402

SLOW_S = 0.02  # below this a large run is too fast for its growth to mean anything
GIVE_UP_S = 5.0  # a small run this slow is superlinear beyond doubt: the large one is not run


def seconds(step: Callable[[str], object], text: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()  # CPU time: a shared machine's other load does not count
        try:
            step(text)
        except ValueError:
            pass  # a refusal (too costly, bad SSML) is an answer too: its time counts
        best = min(best, time.process_time() - started)
    return best


def measure(small: int, factor: int, steps: list[str], shapes: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for step_name in steps:
        step = STEPS[step_name]
        for unit_name, unit in UNITS.items():
            if shapes not in unit_name:
                continue
            for line in (True, False):
                t_small = seconds(step, shape(unit, small, line=line), 3)
                if t_small > GIVE_UP_S / factor:
                    t_large = float("nan")
                    growth = float("inf")
                else:
                    t_large = seconds(step, shape(unit, small * factor, line=line), 2)
                    growth = (t_large / factor) / max(t_small, 1e-7)
                rows.append(
                    {
                        "step": step_name,
                        "shape": unit_name + ("" if line else " (lines)"),
                        "small_ms": t_small * 1000,
                        "large_ms": t_large * 1000,
                        "growth": growth,
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=4000)
    parser.add_argument("--factor", type=int, default=8)
    parser.add_argument("--limit", type=float, default=3.0)
    parser.add_argument("--all", action="store_true", help="print every row, not only the worst")
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated step names")
    parser.add_argument("--shapes", default="", help="only shapes whose name contains this")
    args = parser.parse_args()
    steps = [s for s in args.steps.split(",") if s]
    started = time.perf_counter()
    rows = measure(args.small, args.factor, steps, args.shapes)
    rows.sort(key=lambda r: -float(r["growth"]))  # type: ignore[arg-type]
    failing = [
        r
        for r in rows
        if float(r["growth"]) > args.limit  # type: ignore[arg-type]
        and not float(r["large_ms"]) < SLOW_S * 1000  # type: ignore[arg-type]
    ]
    large = args.small * args.factor
    print(
        f"\n{len(rows)} runs ({len(steps)} steps shapes x 2 layouts), {args.small:,} and {large:,} characters, {time.perf_counter() - started:.0f} s"
    )
    print(
        f"| step | shape | {args.small:,} chars ms | {large:,} chars ms | growth per char (1 linear, {args.factor} quadratic) |"
    )
    print("|---|---|---|---|---|")
    shown = rows if args.all else rows[:15]
    for r in shown:
        print(
            f"| {r['step']} | {r['shape']} | {r['small_ms']:.2f} | {r['large_ms']:.1f} | {r['growth']:.2f} |"
        )
    print("\n| step | worst growth on a run of 20 ms or more | slowest large run ms |")
    print("|---|---|---|")
    for name in steps:
        own = [r for r in rows if r["step"] == name]
        timed = [float(r["growth"]) for r in own if not float(r["large_ms"]) < SLOW_S * 1000]  # type: ignore[arg-type]
        slowest = max(float(r["large_ms"]) for r in own)  # type: ignore[arg-type]
        print(f"| {name} | {f'{max(timed):.2f}' if timed else '-'} | {slowest:.1f} |")
    if failing:
        print(f"\nFAIL: {len(failing)} runs grew faster than {args.limit}x linear")
        sys.exit(1)
    print(f"\nOK: no run grew faster than {args.limit}x linear")


if __name__ == "__main__":
    main()
