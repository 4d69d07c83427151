"""The real server on a CPU with a device stand-in: 1 vs N concurrent PCM streams (TTFA ratio, underruns at a
100 ms prebuffer).

    PYTHONPATH=. .venv/bin/python bench/bench_standin_load.py [--cost-model bench/cost_models/h100-tf32.json] \\
        [--concurrency 32] [--arrive-within 0] [--admission auto|on|off] [--admission-profile served|own_seconds]
        [--speed 1.1] [--unseeded]
        [--sample-rate 8000|16000|...|48000]
        [--out bench/results/standin_load/RATE.json]

Starts the stand-in server (`python -m bench.standin.serve --cost-model ...`, the demo checkpoint: the engine's steps
and the codec's calls, all through `runtime.codec_runner`, become waits of the modelled length on one shared device
timeline), then `bench/loadgen.py` levels of 1 and N streams. What is left over is the wiring's:
HTTP, parsing, guards, scheduling, framing, encoding. The goal: N=32 starts within 1.3x (+100 ms) of one alone,
with no underrun.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import standin_command, start_server, write_results  # noqa: E402
from bench.loadgen import LevelSpec, run_level, summarise  # noqa: E402
from services.device.admission_profiles import ADMISSION_PROFILE_NAMES  # noqa: E402

TEXT = (
    "The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun while the children play "
    "by the river and the old miller counts his sacks of flour."
)


def start(
    cost_model: Path, log: Path, admission: str = "auto", extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    """The stand-in server (bench/harness.py, `standin_command`) on the demo checkpoint, ready: its process and URL."""
    env = {
        "TTS_AUTH_ENABLED": "false",
        "TTS_DEVICE": "cpu",
        "TTS_DEMO_DIR": str(Path(tempfile.gettempdir()) / "tts-standin-demo"),
        "PYTHONUNBUFFERED": "1",
        "TTS_ADMISSION": admission,
        **(extra_env or {}),
    }
    server = start_server(standin_command(cost_model), env, log)
    return server.process, server.url


def first_chunk_schedules(url: str) -> dict[str, float]:
    """The server's first-chunk schedule decisions, "schedule/reason" -> count (admission's Prometheus counter)."""
    import httpx

    out = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("veena3_tts_first_chunk_schedules_total{"):
            labels, value = line[line.index("{") + 1 :].split("}")
            pairs = dict(part.split("=", 1) for part in labels.split(","))
            out[f"{pairs['schedule'].strip(chr(34))}/{pairs['reason'].strip(chr(34))}"] = float(value)
    return out


async def levels(
    url: str,
    pid: int,
    concurrency: int,
    speed: float | None = None,
    sample_rate: int = 16000,
    arrive_within_s: float = 0.0,
    seed: int | None = 0,
) -> list[dict]:
    rows = []
    for n in (1, concurrency):
        spec = LevelSpec(
            base_url=url,
            concurrency=n,
            text=TEXT,
            sample_rate=sample_rate,
            prebuffer_s=0.1,
            stagger_s=arrive_within_s if n > 1 else 0.0,
            speed=speed,
            seed=seed,
        )
        rows.append(summarise(await run_level(spec, server_pid=pid)))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cost-model", type=Path, default=ROOT / "bench" / "cost_models" / "h100-tf32.json")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument(
        "--unseeded",
        action="store_true",
        help="send no seed, as most clients do: admission may then give newcomers the exact first chunk",
    )
    p.add_argument(
        "--arrive-within",
        type=float,
        default=0.0,
        help="seconds over which the N streams' starts are spread (0: all at once)",
    )
    p.add_argument(
        "--admission",
        choices=("auto", "on", "off"),
        default="auto",
        help="TTS_ADMISSION for the server (auto: on with the stand-in), to compare with it off",
    )
    p.add_argument(
        "--admission-profile",
        choices=ADMISSION_PROFILE_NAMES,
        default="served",
        help="TTS_ADMISSION_PROFILE for the server: admission's settings and the codec seconds they read",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=None,
        help="every request's speed (the audio chain time-stretches it); default: none asked",
    )
    p.add_argument(
        "--sample-rate",
        type=int,
        choices=(8000, 16000, 22050, 24000, 44100, 48000),
        default=16000,
        help="above 16000: through AP-BWE's windows (the stand-in's sr_ms), then the resampler below 48000; "
        "8000: the resampler alone",
    )
    p.add_argument("--out", type=Path, default=None, help="default bench/results/standin_load/RATE.json")
    args = p.parse_args()
    args.out = args.out or ROOT / "bench" / "results" / "standin_load" / f"{args.sample_rate}.json"
    log = Path(tempfile.gettempdir()) / "tts-standin-server.log"
    proc, url = start(args.cost_model, log, args.admission, {"TTS_ADMISSION_PROFILE": args.admission_profile})
    try:
        rows = asyncio.run(
            levels(
                url,
                proc.pid,
                args.concurrency,
                args.speed,
                args.sample_rate,
                args.arrive_within,
                seed=None if args.unseeded else 0,
            )
        )
        schedules = first_chunk_schedules(url)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    one, many = rows
    ratio = many["ttfb_p95_s"] / one["ttfb_p50_s"] if one["ttfb_p50_s"] else None
    goal = 1.3 * one["ttfb_p50_s"] + 0.1 if one["ttfb_p50_s"] else None
    print("| streams | TTFA p50 ms | TTFA p95 ms | underruns (streams) | CPU s / audio s |")
    print("|---|---|---|---|---|")
    for r in rows:
        cpu = r.get("cpu_s_per_audio_s")
        print(
            f"| {r['concurrency']} | {1000 * r['ttfb_p50_s']:.0f} | {1000 * r['ttfb_p95_s']:.0f} | "
            f"{r['underruns']} ({r['streams_with_underruns']}) | {cpu if cpu is None else round(cpu, 4)} |"
        )
    assert goal is not None  # a zero p50 alone leaves no ratio or goal, which the line below cannot print
    print(
        f"p95 at {args.concurrency} / p50 alone: {ratio:.2f}; goal p95 <= {1000 * goal:.0f} ms "
        f"({'met' if many['ttfb_p95_s'] <= goal and many['underruns'] == 0 else 'NOT met'})"
    )
    print(f"first-chunk schedules (both levels, schedule/reason): {schedules or 'none (admission off)'}")
    write_results(
        args.out,
        {
            "cost_model": str(args.cost_model.name),
            "levels": rows,
            "ratio_p95_over_p50": ratio,
            "admission": args.admission,
            "admission_profile": args.admission_profile,
            "arrive_within_s": args.arrive_within,
            "seeded": not args.unseeded,
            "first_chunk_schedules": schedules,
            "speed": args.speed,
            "sample_rate": args.sample_rate,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
