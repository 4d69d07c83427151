"""CPU of the API path per second of audio, with a free codec: what one API process (one GIL) spends on parsing,
guards, framing, encoding and sending while the models cost nothing.

    PYTHONPATH=. .venv/bin/python bench/bench_host_path.py [--streams 6] [--concurrency 1,4] [--format pcm,wav]
        [--profile bench/results/host_path/profile.txt] [--out bench/results/host_path/host_path.json]

Serves the product app (`bench/serve_paced.py`: the demo checkpoint, the paced engine at 1,000 ids/s so tokens are
never what a request waits for) with BiCodec's decode swapped for `FreeCodec` (quiet noise of the exact length,
`POST /bench/variant {"codec": "free"}`), then runs `bench/loadgen.py` levels and divides the server process's CPU
seconds (psutil, every thread) by the audio seconds served. The engine's own bookkeeping stays in the figure (vLLM's
output handling lives in the API process too). `--profile` serves under cProfile (the event-loop thread) and
writes the top functions by cumulative and own time. The goal (issue 38): under 1.5 ms per second of audio; the
cost model's `host_ms.per_audio_second` is this figure.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import LevelSpec, run_level, summarise  # noqa: E402
from bench.local_server import start_server  # noqa: E402

TEXT = ("The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun while the children play "
        "by the river and the old miller counts his sacks of flour. ") * 3


@dataclass(frozen=True)
class FormatSpec(LevelSpec):
    fmt: str = "pcm"

    def body(self) -> dict[str, Any]:
        return {**super().body(), "format": self.fmt}


def serve(port: int, out: Path | None) -> None:
    """The server process; under cProfile (event-loop thread) when `out` is given, the stats written at SIGTERM.

    The free codec gives quiet noise instead of zeros: zeros trip the silence guard, which cuts the stream and
    would leave the guards' cost out of the figure."""
    import signal

    import numpy as np
    import torch
    import uvicorn

    from bench.ideal_stream import FreeCodec
    from bench.paced_engine import PaceConfig
    from bench.serve_paced import build_app

    noise = torch.from_numpy((np.random.default_rng(0).standard_normal(16000 * 30) * 0.05).astype(np.float32))

    def decode_with_speaker(self: FreeCodec, semantic: torch.Tensor, d_vector: torch.Tensor) -> torch.Tensor:
        rows, tokens = torch.as_tensor(semantic).shape
        return noise[: tokens * self.hop_length].expand(rows, -1)

    FreeCodec.decode_with_speaker = decode_with_speaker  # type: ignore[method-assign]
    app = build_app(PaceConfig(tokens_per_s=1000.0, tick_s=0.0))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # uvicorn re-raises it after its graceful shutdown
    profiler = cProfile.Profile()
    if out is not None:
        profiler.enable()
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")
    finally:
        profiler.disable()
        if out is not None:
            write_profile(profiler, out)


def write_profile(profiler: cProfile.Profile, out: Path) -> None:
    import site

    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(40)
    report = text.getvalue().replace(str(ROOT) + "/", "")
    for prefix in sorted({*site.getsitepackages(), sys.base_prefix, sys.prefix}, key=len, reverse=True):
        report = report.replace(prefix, "<python>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)


def start(profile: Path | None) -> tuple[subprocess.Popen, str]:
    env = {"TTS_AUTH_ENABLED": "false", "TTS_DEVICE": "cpu", "TTS_DECODE_BATCH_MAX": "0",
           "TTS_DEMO_DIR": str(Path(tempfile.gettempdir()) / "tts-host-path-demo"), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(ROOT)}
    log = Path(tempfile.gettempdir()) / "tts-host-path-server.log"
    proc, url = start_server(lambda port: [sys.executable, str(Path(__file__).resolve()), "--serve", str(port),
                                           str(profile or "")], env, log)
    httpx.post(f"{url}/bench/variant", json={"codec": "free"}, timeout=10).raise_for_status()
    return proc, url


async def measure(url: str, pid: int, streams: int, levels: list[int], formats: list[str]) -> list[dict]:
    rows = []
    for fmt in formats:
        for conc in levels:
            spec = FormatSpec(base_url=url, concurrency=conc, text=TEXT, sample_rate=16000, stagger_s=0.0,
                              requests_per_worker=max(1, streams // conc), fmt=fmt)
            row = summarise(await run_level(spec, server_pid=pid))
            row["format"] = fmt
            row["cpu_ms_per_audio_s"] = 1000 * row["cpu_s_per_audio_s"] if row["cpu_s_per_audio_s"] else None
            rows.append(row)
    return rows


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), Path(sys.argv[3]) if sys.argv[3] else None)
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, default=6, help="requests per level")
    p.add_argument("--concurrency", default="1,4")
    p.add_argument("--format", default="pcm,wav")
    p.add_argument("--profile", type=Path, default=None)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "host_path" / "host_path.json")
    args = p.parse_args()
    proc, url = start(args.profile)
    try:
        asyncio.run(measure(url, proc.pid, 1, [1], ["pcm"]))  # warm: first-request costs stay out
        rows = asyncio.run(measure(url, proc.pid, args.streams, [int(c) for c in args.concurrency.split(",")],
                                   args.format.split(",")))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    print("| format | concurrency | streams | audio s | server CPU s | CPU ms per audio s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['format']} | {r['concurrency']} | {r['streams']} | {r['audio_s']:.1f} | "
              f"{r['server_cpu_s']:.3f} | {r['cpu_ms_per_audio_s']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
