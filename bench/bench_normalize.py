"""Text normalisation speed: linear in length, well under 1 ms per 200 characters, no catastrophic backtracking.

Times `normalize_text` on real-world sentences (the case table's Chinese, English, Hindi and mixed inputs) joined
to growing lengths, and on adversarial inputs built to make a backtracking regex blow up (long digit runs, endless
dotted numbers, half URLs, e-mail-like runs, repeated punctuation). A linear pass keeps "µs per 200 characters"
flat as the length grows.

    .venv/bin/python bench/bench_normalize.py [--repeat 5]

Prints a markdown table and writes bench/results/normalize.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from processing.normalize import normalize_text  # noqa: E402
from tests.unit.normalize_cases import ALL  # noqa: E402

REAL = " ".join(text for _, text, _ in ALL)
ADVERSARIAL = {
    "digits": "1" * 50_000,
    "dotted number": "1." * 25_000,
    "dashed digits": "12-" * 16_000,
    "half URL": "https://" + "a." * 24_000,
    "e-mail-like": "a@b." * 12_000,
    "punctuation": "!?." * 16_000,
    "slashes": "1/" * 25_000,
    "chinese digits": "年1" * 25_000,
}


def time_per_call(text: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        normalize_text(text)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for length in (200, 2_000, 20_000, 50_000):
        text = (REAL * (length // len(REAL) + 1))[:length]
        seconds = time_per_call(text, args.repeat)
        rows.append(
            {
                "input": "real sentences",
                "chars": length,
                "ms": seconds * 1000,
                "us_per_200_chars": seconds * 1e6 * 200 / length,
            }
        )
    for name, text in ADVERSARIAL.items():
        seconds = time_per_call(text, max(1, args.repeat // 2))
        rows.append(
            {
                "input": f"adversarial: {name}",
                "chars": len(text),
                "ms": seconds * 1000,
                "us_per_200_chars": seconds * 1e6 * 200 / len(text),
            }
        )
    print("| input | characters | time | µs per 200 characters |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['input']} | {r['chars']:,} | {r['ms']:.1f} ms | {r['us_per_200_chars']:.0f} |")
    out = ROOT / "bench" / "results" / "normalize.json"
    out.write_text(json.dumps(rows, indent=2))
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
