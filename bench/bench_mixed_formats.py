"""PCM listeners beside compressed streams: what an mp3 load does to everyone else's first audio and cadence.

    PYTHONPATH=. .venv/bin/python bench/bench_mixed_formats.py [--listeners 16] [--compressed 48] [--format mp3]
        [--rounds 2] [--out bench/results/mixed_formats/mixed.json]

One server with the device stand-in (bench/standin, h100-tf32: the engine and the codec cost modelled
time on one timeline), then, per round: `--listeners` streaming 16 kHz WAV requests alone (a burst), and the same
burst again `--lead-s` after `--compressed` streaming requests in `--format` at 24 kHz (OpenAI's mp3 rate) started.
A compressed encoder costs several ms of CPU per second of audio (docs/benchmarks.md: mp3 ~9, opus ~4); where it
runs on the event loop, every other stream's parsing, scheduling and sending waits behind each chunk's encode. The
table gives the listeners' first audio (p50, p95), underruns at a 100 ms prebuffer, the longest gap between their
chunks, each with the compressed load over without it, and the compressed streams' own first audio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_standin_load import TEXT, start  # noqa: E402
from bench.loadgen import LevelSpec, run_level, summarise  # noqa: E402


def listener_spec(url: str, n: int) -> LevelSpec:
    return LevelSpec(
        base_url=url, concurrency=n, text=TEXT, sample_rate=16000, prebuffer_s=0.1, stagger_s=0.0
    )


async def mixed(
    url: str, pid: int, listeners: int, compressed: int, fmt: str, lead_s: float
) -> dict[str, Any]:
    load = LevelSpec(
        base_url=url,
        concurrency=compressed,
        text=TEXT + " " + TEXT,
        sample_rate=24000,
        stagger_s=lead_s,
        audio_format=fmt,
    )

    async def listeners_later() -> dict[str, Any]:
        await asyncio.sleep(lead_s)
        return summarise(await run_level(listener_spec(url, listeners), server_pid=pid))

    load_level, heard = await asyncio.gather(run_level(load, server_pid=pid), listeners_later())
    background = summarise(load_level)
    return {
        "listeners": heard,
        "compressed": {k: background[k] for k in ("streams", "failed", "ttfb_p50_s", "ttfb_p95_s")},
    }


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}"


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    log = Path(tempfile.gettempdir()) / "bench-mixed-formats.log"
    process, url = start(args.cost_model, log)
    rows = []
    try:
        await run_level(listener_spec(url, 2), server_pid=process.pid)  # warm-up
        for round_ in range(args.rounds):
            alone = summarise(await run_level(listener_spec(url, args.listeners), server_pid=process.pid))
            with_load = await mixed(
                url, process.pid, args.listeners, args.compressed, args.format, args.lead_s
            )
            rows.append({"round": round_, "alone": alone, **with_load})
    finally:
        process.terminate()
        process.wait(timeout=30)
    return rows


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"| round | listeners' TTFA p50 / p95 alone (ms) | with {args.compressed} {args.format} streams (ms) | "
        "p95 ratio | underruns alone / with | longest gap alone / with (ms) | "
        f"{args.format} streams' TTFA p50 / p95 (ms) | failed |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        a, w, c = row["alone"], row["listeners"], row["compressed"]
        print(
            f"| {row['round']} | {ms(a['ttfb_p50_s'])} / {ms(a['ttfb_p95_s'])} | {ms(w['ttfb_p50_s'])} / "
            f"{ms(w['ttfb_p95_s'])} | {ratio(w['ttfb_p95_s'], a['ttfb_p95_s'])} | {a['underruns']} / "
            f"{w['underruns']} | {ms(a['gap_max_s'])} / {ms(w['gap_max_s'])} | {ms(c['ttfb_p50_s'])} / "
            f"{ms(c['ttfb_p95_s'])} | {a['failed'] + w['failed'] + c['failed']} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cost-model", type=Path, default=ROOT / "bench" / "cost_models" / "h100-tf32.json")
    p.add_argument("--listeners", type=int, default=16)
    p.add_argument("--compressed", type=int, default=48)
    p.add_argument("--format", default="mp3", choices=("mp3", "opus", "aac", "flac"))
    p.add_argument("--lead-s", type=float, default=1.5, help="the compressed streams start this long before")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mixed_formats" / "mixed.json")
    args = p.parse_args()
    rows = asyncio.run(run(args))
    print_table(rows, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rounds": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
