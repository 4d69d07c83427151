"""Draw the service load test (TTFB and inter-read gaps against concurrency) and the TTFA bench.

    .venv/bin/python bench/plot.py [bench/results/service.json] [--out-dir bench/results] [--docs]
    .venv/bin/python bench/plot.py bench/results/ttfa.json [--docs]

service.json: service_ttfb.png and service_gaps.png (one panel per output rate, one box per variant and level).
ttfa.json (`bench/bench_ttfa.py`): ttfa.png, TTFA p50 and p95 against concurrency per schedule, one panel per
engine rate and codec. `--docs` writes to docs/img/ instead, where they are committed (bench/results/*.png is
git-ignored).
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
from matplotlib.ticker import FuncFormatter  # noqa: E402

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


def _ttfa_points(
    rows: list[dict[str, Any]],
    rate: float,
    codec: str,
    voice: str,
    schedule: str,
    key: str,
    variant: str = "now",
) -> tuple[list[int], list[float]]:
    picked = sorted(
        (r["concurrency"], r[key] * 1000)
        for r in rows
        if r[key] is not None
        and (r["rate"], r["codec"], r["voice"], r["schedule"], r.get("variant", "now"))
        == (rate, codec, voice, schedule, variant)
    )
    return [c for c, _ in picked], [v for _, v in picked]


def draw_ttfa(result: dict[str, Any], path: Path, voice: str = "fixed") -> None:
    """TTFA p50 (solid) and p95 (dashed) vs concurrency per schedule; dotted: 1.5x the 1-stream p50 (the target);
    thin, faint: p95 as the product served before the TTFA changes (where the run has them)."""
    rows = result["rows"]
    rates = sorted({r["rate"] for r in rows})
    codecs = sorted({r["codec"] for r in rows if r["voice"] == voice}, key=lambda c: c == "free")  # free last
    schedules = list(dict.fromkeys(r["schedule"] for r in rows))
    fig, axes = plt.subplots(
        len(rates), len(codecs), figsize=(5.5 * len(codecs), 3.8 * len(rates)), squeeze=False, sharey=True
    )
    for ax_row, rate in zip(axes, rates, strict=True):
        for ax, codec in zip(ax_row, codecs, strict=True):
            for i, schedule in enumerate(schedules):
                color = COLORS[i % len(COLORS)]
                conc, p50 = _ttfa_points(rows, rate, codec, voice, schedule, "ttfa_p50_s")
                _, p95 = _ttfa_points(rows, rate, codec, voice, schedule, "ttfa_p95_s")
                if not conc:
                    continue
                ax.plot(conc, p50, "o-", color=color, label=f"{schedule} p50")
                ax.plot(conc, p95, "^--", color=color, label=f"{schedule} p95")
                ax.axhline(1.5 * p50[0], color=color, linestyle=":", linewidth=1)
                old_conc, old_p95 = _ttfa_points(rows, rate, codec, voice, schedule, "ttfa_p95_s", "before")
                if old_conc:
                    ax.plot(
                        old_conc,
                        old_p95,
                        "x-",
                        color=color,
                        linewidth=0.8,
                        alpha=0.4,
                        label=f"{schedule} p95 before",
                    )
            levels = sorted({r["concurrency"] for r in rows})
            ax.set_xscale("log", base=2)
            ax.set_xticks(levels, [str(c) for c in levels])
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
            ax.tick_params(axis="y", which="minor", labelsize=7)
            ax.set_xlabel("concurrent streams")
            ax.set_ylabel("time to first audio (ms)")
            label = f"{codec} BiCodec" if codec != "free" else "free codec (no decode compute, bench only)"
            ax.set_title(f"engine {rate:.0f} tokens/s, {label}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(schedules) * 3 // 2 + 1, fontsize=7)
    env = result.get("env", {})
    fig.suptitle(
        f"TTFA, voice '{voice}' (dotted: 1.5x the 1-stream p50); {env.get('machine', '')}, load avg "
        f"{env.get('load_avg_at_start', ['?'])[0]} at start",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
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
    if "summary" in result and "rows" in result:  # bench_ttfa.py
        draw_ttfa(result, out_dir / "ttfa.png")
        print(f"wrote {out_dir / 'ttfa.png'}")
        return
    for key in ("ttfb", "gaps"):
        path = out_dir / f"service_{key}.png"
        draw(result, key, path)
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
