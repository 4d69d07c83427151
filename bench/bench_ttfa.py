"""Time to first audio by latency preference, on the paced engine, in one run.

A `bench/serve_paced.py` server (the product app on the demo checkpoint, the LLM replaced by `PacedEngine`, which
hands out ids at a set rate per stream as vLLM would) serves streaming requests for a voice with known globals
(`fixed`). For each engine rate and each preference (`exact` is the schedule before this change: 49 tokens before
the first chunk) the bench measures the client's wait for the first audio byte: sequential single streams (p50),
then 32 concurrent streams (p95). Ratios against `exact` in the same run are the claim; absolute figures depend
on this machine.

    .venv/bin/python bench/bench_ttfa.py [--streams 6] [--rates 100,200] [--concurrency 32]

Prints a markdown table and writes bench/results/ttfa.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_service import start_server, stop_server  # noqa: E402
from core.demo.checkpoint import build_demo_checkpoint  # noqa: E402

PREFERENCES = ("exact", "balanced", "lowest")
TEXT = "Hello there! This is a short sentence to measure how soon the first audio arrives."


async def first_audio_ms(client: httpx.AsyncClient, url: str, latency: str) -> float:
    body = {"text": TEXT, "speaker": "fixed", "stream": True, "format": "pcm", "latency": latency}
    started = time.perf_counter()
    waited = None
    async with client.stream("POST", f"{url}/v1/tts/generate", json=body) as response:
        response.raise_for_status()
        async for piece in response.aiter_bytes():  # read it all, as a player would
            if piece and waited is None:
                waited = (time.perf_counter() - started) * 1000
    assert waited is not None
    return waited


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def measure(url: str, rate: float, streams: int, concurrency: int) -> list[dict]:
    rows = []
    async with httpx.AsyncClient(timeout=120) as client:
        await client.post(f"{url}/bench/engine", json={"tokens_per_s": rate})
        for latency in PREFERENCES:
            await first_audio_ms(client, url, latency)  # one unmeasured request per preference
            single = [await first_audio_ms(client, url, latency) for _ in range(streams)]
            crowd = await asyncio.gather(*(first_audio_ms(client, url, latency) for _ in range(concurrency)))
            rows.append({"rate_tokens_per_s": rate, "latency": latency, "single_p50_ms": statistics.median(single),
                         "concurrent": concurrency, "concurrent_p95_ms": percentile(list(crowd), 0.95)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=6)
    parser.add_argument("--rates", default="100,200")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    model_dir = build_demo_checkpoint(ROOT / "var" / "bench-demo-model", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(model_dir, Path(tmp) / "server.log")
        try:
            rows = []
            for rate in (float(r) for r in args.rates.split(",")):
                rows += asyncio.run(measure(server.url, rate, args.streams, args.concurrency))
        finally:
            stop_server(server)
    base = {(r["rate_tokens_per_s"]): r for r in rows if r["latency"] == "exact"}
    print("Time to first audio byte, paced engine, voice with known globals (demo codec; this machine)\n")
    print("| engine rate | latency | 1 stream p50 | vs exact | 32 streams p95 | p95 / 1-stream p50 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["single_p50_ms"] / base[r["rate_tokens_per_s"]]["single_p50_ms"]
        spread = r["concurrent_p95_ms"] / r["single_p50_ms"]
        r.update({"vs_exact": ratio, "p95_over_p50": spread})
        print(f"| {r['rate_tokens_per_s']:.0f} tok/s | {r['latency']} | {r['single_p50_ms']:.0f} ms | {ratio:.2f}x | "
              f"{r['concurrent_p95_ms']:.0f} ms | {spread:.2f}x |")
    out = ROOT / "bench" / "results" / "ttfa.json"
    out.write_text(json.dumps({"streams": args.streams, "rows": rows}, indent=2))
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
