"""CPU one API process spends per request, apart from the audio it serves: the host's share of onboarding a stream.

    python -m bench request_cost [--concurrency 64] [--requests 128] [--rounds 2] [--sample-rate 16000]

`host_path` gives the API path's CPU per second of audio; a burst also pays, once per stream, for the HTTP request,
the key, text normalisation, the prompt, admission, the engine's submit, the request log and the response's start
and end, all on the one event loop before the stream's first audio can go out. This serves the same server as
`host_path` (`bench/bench_host_path.py`: the product app, BiCodec and AP-BWE free, the paced engine) and runs, in
turn, levels of short requests (`SHORT`, about half a second of audio) and long ones (`LONG`, about 11 s),
`--rounds` times, then fits the server's CPU less its idle burn as
`per_request x requests + per_audio_s x audio seconds` (least squares over the levels), for every thread and for the
event loop's thread. The stand-in engine's submit is cheaper than vLLM's (vLLM tokenises the prompt in the API
process); the figure is the service's own part. Writes `bench/results/request_cost/request_cost.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_host_path import idle_cpu_rate, measured_level, start  # noqa: E402
from bench.loadgen import LevelSpec  # noqa: E402
from shared.settings import FIELDS  # noqa: E402

SHORT = "Thanks, see you soon."
LONG = (
    "The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun while the children "
    "play by the river and the old miller counts his sacks of flour. "
)


async def level(url: str, pid: int, text: str, concurrency: int, requests: int, rate: int) -> dict[str, Any]:
    spec = LevelSpec(
        base_url=url,
        concurrency=concurrency,
        text=text,
        sample_rate=rate,
        stagger_s=0.0,
        requests_per_worker=max(1, requests // concurrency),
        audio_format="pcm",
    )
    row = await measured_level(url, pid, spec)
    return {
        "text": "short" if text == SHORT else "long",
        "concurrency": concurrency,
        "requests": row["streams"] - row["failed"],
        "failed": row["failed"],
        "wall_s": row["wall_s"],
        "audio_s": row["audio_s"],
        "cpu_s": row["server_cpu_s"],
        "loop_cpu_s": row["loop_cpu_s"],
        "ttfb_p95_s": row["ttfb_p95_s"],
    }


def fit(rows: list[dict[str, Any]], idle: float, cpu_key: str) -> dict[str, float] | None:
    """Least squares of (CPU less idle burn) = per_request x requests + per_audio_s x audio, in ms."""
    if len({r["text"] for r in rows}) < 2:
        return None
    x = np.array([[r["requests"], r["audio_s"]] for r in rows], dtype=float)
    y = np.array([r[cpu_key] - idle * r["wall_s"] for r in rows], dtype=float)
    (per_request, per_audio_s), *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = y - x @ np.array([per_request, per_audio_s])
    return {
        "per_request_ms": 1000 * float(per_request),
        "per_audio_s_ms": 1000 * float(per_audio_s),
        "residual_rms_ms_per_request": 1000 * float(np.sqrt(np.mean((residual / x[:, 0]) ** 2))),
    }


def table(rows: list[dict[str, Any]], fits: dict[str, dict[str, float] | None]) -> str:
    lines = [
        "| text | streams at once | requests | audio s | wall s | server CPU s (loop) | ms per request, raw |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['text']} | {r['concurrency']} | {r['requests']} | {r['audio_s']:.1f} | {r['wall_s']:.1f} | "
            f"{r['cpu_s']:.2f} ({r['loop_cpu_s']:.2f}) | {1000 * r['cpu_s'] / max(1, r['requests']):.1f} |"
        )
    lines += [
        "",
        "| threads | ms per request | ms per audio second | fit residual, ms per request |",
        "|---|---:|---:|---:|",
    ]
    for name, f in fits.items():
        if f is not None:
            lines.append(
                f"| {name} | {f['per_request_ms']:.2f} | {f['per_audio_s_ms']:.2f} | "
                f"{f['residual_rms_ms_per_request']:.2f} |"
            )
    return "\n".join(lines)


async def measure(
    url: str, pid: int, concurrency: int, requests: int, rounds: int, rate: int
) -> list[dict[str, Any]]:
    rows = []
    for _ in range(rounds):
        for text in (SHORT, LONG):
            rows.append(await level(url, pid, text, concurrency, requests, rate))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--requests", type=int, default=128, help="requests per level")
    p.add_argument("--rounds", type=int, default=2, help="times the short and the long level run, alternated")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument(
        "--tokens-per-s", type=float, default=75.0, help="the paced engine's ids per second per stream"
    )
    p.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "request_cost" / "request_cost.json"
    )
    args = p.parse_args()
    interval = FIELDS["llm_stream_interval"].default
    proc, url = start(None, args.tokens_per_s, interval)
    try:
        # warm: first-request costs (imports, caches) stay out of the levels
        asyncio.run(level(url, proc.pid, SHORT, 4, 8, args.sample_rate))
        idle = idle_cpu_rate(proc.pid)
        loop_idle = idle_cpu_rate(proc.pid, main_thread_only=True)
        rows = asyncio.run(
            measure(url, proc.pid, args.concurrency, args.requests, args.rounds, args.sample_rate)
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    fits = {"all": fit(rows, idle, "cpu_s"), "event loop": fit(rows, loop_idle, "loop_cpu_s")}
    print(table(rows, fits))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "concurrency": args.concurrency,
                "sample_rate": args.sample_rate,
                "tokens_per_s": args.tokens_per_s,
                "idle_cpu_per_wall_s": idle,
                "loop_idle_cpu_per_wall_s": loop_idle,
                "rows": rows,
                "fits": fits,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
