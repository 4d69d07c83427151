"""Per-token cost of parsing generated ids: the incremental id-table parser against decode-everything + regex.

    .venv/bin/python bench/bench_parser.py [--quick]

Streams are controllable-mode outputs (acoustic block, 32 globals, N semantic tokens, <|im_end|>) of 100,
1,000 and 10,000 ids, fed in deltas of 1..8 ids (seeded), as an engine streams them. The incremental parser
(`core.tokens.TokenParser`) should cost the same per token at every length. For contrast, the naive approach
that the service's users once ran (decode the whole id list to text and regex it after every delta,
upstream parsing) is timed on 100 and 1,000 ids: its per-token cost grows with the length (O(n^2) total).
Prints a markdown table and writes bench/results/parser.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.demo.checkpoint import build_tokenizer  # noqa: E402
from core.tokens import (  # noqa: E402
    END_ACOUSTIC,
    END_GLOBAL,
    START_ACOUSTIC,
    START_GLOBAL,
    START_SEMANTIC,
    TokenParser,
    VocabLayout,
)

SEMANTIC_RE = re.compile(r"bicodec_semantic_(\d+)")
GLOBAL_RE = re.compile(r"bicodec_global_(\d+)")


def make_stream(layout: VocabLayout, total: int, rng: random.Random) -> list[int]:
    head = [layout.id_of(START_ACOUSTIC), 163953 + 300, 164975 + 5, layout.id_of(END_ACOUSTIC)]
    head += [layout.id_of(START_GLOBAL), *(layout.global_id(rng.randrange(4096)) for _ in range(32))]
    head += [layout.id_of(END_GLOBAL), layout.id_of(START_SEMANTIC)]
    n_semantic = max(1, total - len(head) - 1)
    return head + [layout.semantic_id(rng.randrange(8192)) for _ in range(n_semantic)] + [layout.im_end_id]


def make_deltas(stream: list[int], rng: random.Random) -> list[list[int]]:
    deltas, i = [], 0
    while i < len(stream):
        n = rng.randint(1, 8)
        deltas.append(stream[i : i + n])
        i += n
    return deltas


def run_incremental(layout: VocabLayout, deltas: list[list[int]]) -> int:
    parser = TokenParser(layout, "controllable")
    count = 0
    for delta in deltas:
        count += len(parser.feed(delta).semantic)
    parser.finish()
    return count


def run_naive(tokenizer, deltas: list[list[int]]) -> int:
    """Re-decode the whole sequence and regex it after every delta; report only the new semantic ids."""
    seen: list[int] = []
    emitted = 0
    for delta in deltas:
        seen.extend(delta)
        text = tokenizer.decode(seen, skip_special_tokens=True)
        semantic = SEMANTIC_RE.findall(text)
        GLOBAL_RE.findall(text)
        emitted = len(semantic)
    return emitted


def time_it(fn, repeats: int) -> float:
    """Best-of-`repeats` wall time in seconds (the least disturbed run on a shared machine)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (CI smoke run)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "parser.json")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 15

    tokenizer = build_tokenizer()
    layout = VocabLayout.from_vocab(tokenizer.get_vocab(), table_size=166000)
    rows: list[dict[str, Any]] = []
    for method, lengths in (("incremental", (100, 1_000, 10_000)), ("naive decode+regex", (100, 1_000))):
        for total in lengths:
            rng = random.Random(total)
            stream = make_stream(layout, total, rng)
            deltas = make_deltas(stream, rng)
            if method == "incremental":
                expected = run_incremental(layout, deltas)
                seconds = time_it(lambda d=deltas: run_incremental(layout, d), repeats)
            else:
                expected = run_naive(tokenizer, deltas)
                seconds = time_it(lambda d=deltas: run_naive(tokenizer, d), max(1, repeats // 3))
            rows.append(
                {
                    "method": method,
                    "ids": len(stream),
                    "deltas": len(deltas),
                    "semantic": expected,
                    "total_ms": seconds * 1e3,
                    "per_id_us": seconds / len(stream) * 1e6,
                }
            )

    base = {r["method"]: r["per_id_us"] for r in rows if r["ids"] <= 101}
    print("| method | ids | deltas (1..8 ids) | total ms | per id (us) | per id vs 100-id stream |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        r["per_id_vs_100"] = r["per_id_us"] / base[r["method"]]
        print(
            f"| {r['method']} | {r['ids']:,} | {r['deltas']:,} | {r['total_ms']:.2f} | "
            f"{r['per_id_us']:.2f} | {r['per_id_vs_100']:.2f}x |"
        )
    result = {
        "benchmark": "parser",
        "quick": args.quick,
        "repeats": repeats,
        "timing": "best of repeats, wall clock",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
