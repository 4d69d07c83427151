"""Draw the service load test: TTFB and inter-read gap distributions against concurrency.

    .venv/bin/python bench/plot.py [bench/results/service.json] [--out-dir bench/results] [--docs]

Writes service_ttfb.png and service_gaps.png (one panel per output rate, one box per variant and level);
`--docs` writes them to docs/img/ instead, where they are committed (bench/results/*.png is git-ignored).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def _series(
    levels: list[dict[str, Any]], rate: float, key: str
) -> dict[tuple[str, int], dict[int, list[float]]]:
    """(variant, sample rate) -> concurrency -> values in ms."""
    out: dict[tuple[str, int], dict[int, list[float]]] = {}
    for level in levels:
        if level["tokens_per_s"] != rate:
            continue
        values: list[float] = []
        for stream in level["per_stream"]:
            if not stream.get("ok"):
                continue
            if key == "ttfb" and stream.get("ttfb_s") is not None:
                values.append(stream["ttfb_s"] * 1000)
            elif key == "gaps":
                values.extend(g * 1000 for g in stream.get("gaps_s", []))
        out.setdefault((level["variant"], level["sample_rate"]), {})[level["concurrency"]] = values
    return out


def draw(result: dict[str, Any], key: str, path: Path) -> None:
    rate = result["plan"]["rate"]
    series = _series(result["levels"], rate, key)
    sample_rates = sorted({sr for _, sr in series})
    variants = list(dict.fromkeys(v for v, _ in series))
    fig, axes = plt.subplots(1, len(sample_rates), figsize=(6 * len(sample_rates), 4.2), squeeze=False)
    width = 0.8 / max(1, len(variants))
    for ax, sample_rate in zip(axes[0], sample_rates, strict=True):
        levels = sorted({c for (v, sr), by in series.items() if sr == sample_rate for c in by})
        for i, variant in enumerate(variants):
            by_conc = series.get((variant, sample_rate), {})
            data = [by_conc.get(c) or [float("nan")] for c in levels]
            positions = [j + (i - (len(variants) - 1) / 2) * width for j in range(len(levels))]
            box = ax.boxplot(
                data,
                positions=positions,
                widths=width * 0.9,
                whis=(1, 99),
                showfliers=True,
                patch_artist=True,
                flierprops={"markersize": 2},
            )
            for patch in box["boxes"]:
                patch.set_facecolor(COLORS[i % len(COLORS)])
                patch.set_alpha(0.55)
            ax.plot([], [], color=COLORS[i % len(COLORS)], linewidth=6, alpha=0.55, label=variant)
        ax.set_xticks(range(len(levels)), [str(c) for c in levels])
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel("time to first audio (ms)" if key == "ttfb" else "gap between audio chunks (ms)")
        ax.set_title(f"{sample_rate // 1000} kHz output, engine {rate:.0f} tokens/s")
        if key == "gaps":
            ax.set_yscale("log")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    env = result.get("env", {})
    fig.suptitle(
        f"{'TTFB' if key == 'ttfb' else 'Inter-chunk gaps'} (boxes: quartiles, whiskers: p1-p99); "
        f"{env.get('machine', '')}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=ROOT / "bench" / "results" / "service.json")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--docs", action="store_true", help="write to docs/img/ (committed) instead")
    args = parser.parse_args(argv)
    if not args.results.is_file():
        sys.exit(f"{args.results} not found: run bench/bench_service.py first")
    result = json.loads(args.results.read_text(encoding="utf-8"))
    out_dir = ROOT / "docs" / "img" if args.docs else args.out_dir
    for key in ("ttfb", "gaps"):
        path = out_dir / f"service_{key}.png"
        draw(result, key, path)
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
