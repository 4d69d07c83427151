"""Service load test: the real HTTP server and pipeline, driven by a paced LLM engine, under concurrency.

A subprocess (`bench/serve_paced.py`) serves the product app on the demo checkpoint with `PacedEngine` in
place of the LLM: semantic tokens arrive at a set rate per stream (as vLLM gives them on a GPU), so the time
from a token to audio on the wire is the service's own. The load generator (`bench/loadgen.py`) sweeps
concurrency at 16 kHz and 48 kHz (AP-BWE) output and reports, per level:
- time to first audio (TTFB) and the service-added part of it (TTFB minus the engine's own time to its first
  semantic token; that part still includes waiting for the first chunk's tokens, `first_chunk_wait_ms`);
- inter-read gap p99 and playback underruns (StreamCadence, playback starting `prebuffer` after the first
  audio), next to the underruns a zero-latency service would have with the same chunk schedule (`ideal`);
- server CPU seconds per audio second and per stream (psutil), and seconds per audio second of each stage
  from the server's `veena3_tts_stage_seconds` histogram (wall time inside the worker threads);
- the highest level at which every stream completed without an underrun ("real-time").

Optimisation check: one server per variant, all started together, levels alternating between them so every
variant sees the same background load; the summary prints before/after ratios against the first variant:
- `baseline`: torch's default intra-op threads, one codec scheduler call at a time (TTS_CODEC_CPU_CALLS=1), chunks
  growing x2 (every variant's decodes and AP-BWE windows go through the codec scheduler, `services.device`, which
  batches streams' windows; the per-stream decode of old is gone from the product);
- `threads1`: TTS_TORCH_THREADS=1 (the scheduler's calls on one core each; intra-op threads on top of concurrent
  calls oversubscribe the CPU);
- `batched`: threads1 plus TTS_CODEC_CPU_CALLS=cores (as many scheduler calls at once as cores on a CPU; one on a
  GPU);
- `tuned`: batched plus TTS_STREAM_CHUNK_GROWTH=1.5 (the product's defaults now). With growth 2 and an engine at 100 tokens/s (2x real
  time) every chunk's last look-ahead token arrives exactly when the previous chunk's audio ends, so any
  service delay is an underrun; growth g leaves (1 - g / speed) of each chunk's duration as slack.
`--quick` runs baseline and tuned; the full run all four, to show which change does what.

Usage: .venv/bin/python bench/bench_service.py [--quick] [--concurrency 1,4,16,64] [--rate 100]
           [--variants baseline,threads1,batched,tuned] [--device cpu|cuda] [--codec demo|released]
Prints markdown tables and writes bench/results/service.json (bench/plot.py draws it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from bench.harness import DEMO_DIR, Server, demo_env, paced_command, stop_server, wait_ready  # noqa: E402
from bench.loadgen import LevelResult, LevelSpec, percentile, run_level, summarise  # noqa: E402
from services.usage.flow_monitor import StreamCadence  # noqa: E402

VARIANTS = ("baseline", "threads1", "batched", "tuned")
HOP = 320
NATIVE_RATE = 16000


# ---------------------------------------------------------------------------------------------- server
def variant_options(variant: str, device: str) -> tuple[dict[str, str], list[str]]:
    """Environment and serve_paced.py flags of a variant (see the module doc)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; accepted: {', '.join(VARIANTS)}")
    cpu = device == "cpu"
    env: dict[str, str] = {}
    flags: list[str] = []
    # Every variant names its settings, so the comparison does not drift when the product's defaults change.
    env["TTS_STREAM_CHUNK_GROWTH"] = "1.5" if variant == "tuned" else "2.0"
    if cpu:
        env["TTS_TORCH_THREADS"] = str(torch.get_num_threads()) if variant == "baseline" else "1"
    env["TTS_CODEC_CPU_CALLS"] = str(os.cpu_count() or 1) if variant in ("batched", "tuned") else "1"
    return env, flags


def spawn_server(
    model_dir: Path,
    log_path: Path,
    *,
    rate: float,
    env: dict[str, str],
    flags: list[str],
    device: str,
    codec: str,
) -> Server:
    """One serve_paced.py server on a free port (bench/harness.py), not yet ready."""
    return harness.spawn_server(
        paced_command(rate, codec, flags), demo_env(model_dir, device, **env), log_path
    )


def start_server(
    model_dir: Path,
    log_path: Path,
    *,
    rate: float = 100.0,
    env: dict[str, str] | None = None,
    flags: list[str] | None = None,
    device: str = "cpu",
    codec: str = "demo",
) -> Server:
    """One serve_paced.py server on a free port, ready (used by tests and ad-hoc runs)."""
    return harness.start_server(
        paced_command(rate, codec, flags or []), demo_env(model_dir, device, **(env or {})), log_path
    )


# -------------------------------------------------------------------------------------- an ideal service
def ideal_underruns(
    semantic_tokens: int,
    first_due_s: float,
    rate: float,
    cfg: dict[str, Any],
    holdback_samples: int,
    prebuffer_s: float,
) -> int:
    """Underruns of a service that decodes, upsamples and sends in zero time with the same chunk schedule.

    Chunk k (StreamingDecoder rule: emitted once `chunk + lookahead` tokens are pending) goes out when its
    last look-ahead token arrives; with SR, the last `holdback_samples` (16 kHz) wait for the next chunk.
    """
    first = int(cfg["stream_first_chunk_tokens"])
    largest = int(cfg["stream_max_chunk_tokens"])
    growth = float(cfg["stream_chunk_growth"])
    lookahead = int(cfg["stream_lookahead_tokens"])
    cadence = StreamCadence(prebuffer_s=prebuffer_s, observe_metrics=False)
    emitted, size, released = 0, first, 0
    while emitted + size + lookahead <= semantic_tokens:
        emitted += size
        at = first_due_s + (emitted + lookahead - 1) / rate
        ready = max(0, emitted * HOP - holdback_samples)
        cadence.on_chunk((ready - released) / NATIVE_RATE, at=at)
        released = ready
        size = min(largest, max(size, int(-(-size * growth // 1))))
    end = first_due_s + semantic_tokens / rate  # the stop id follows the last semantic token
    cadence.on_chunk((semantic_tokens * HOP - released) / NATIVE_RATE, at=end)
    return cadence.underruns


# ---------------------------------------------------------------------------------------------- one level
def level_row(
    level: LevelResult, engine: dict[str, Any], variant: str, rate: float, prebuffer_s: float
) -> dict[str, Any]:
    """Summary row plus the service-added latency (joined to the engine's own records by request id)."""
    row = summarise(level)
    records = engine.get("streams", [])
    cfg = engine["settings"]
    sr = level.spec.sample_rate > NATIVE_RATE and engine.get("sr_context_samples") is not None
    holdback = int(engine["sr_context_samples"]) if sr else 0
    added, ideal, lag, per_stream = [], 0, [], []
    for s in level.streams:
        rec = _first_chunk_record(records, s.request_id)
        item: dict[str, Any] = {
            "ttfb_s": s.ttfb_s,
            "gaps_s": [round(g, 5) for g in s.gaps],
            "underruns": s.cadence.get("underruns"),
            "ok": s.ok,
        }
        if rec is not None:
            lag.append(rec["max_lag_s"])
            if s.ok and s.ttfb_s is not None:
                item["service_added_s"] = s.ttfb_s - rec["first_semantic_due_s"]
                added.append(item["service_added_s"])
                ideal += ideal_underruns(
                    rec["semantic_tokens"], rec["first_semantic_due_s"], rate, cfg, holdback, prebuffer_s
                )
        per_stream.append(item)
    first_chunk_wait = (
        int(cfg["stream_first_chunk_tokens"]) + int(cfg["stream_lookahead_tokens"]) - 1
    ) / rate
    realtime = row["failed"] == 0 and row["underruns"] == 0 and row["streams"] > 0
    row.update(
        {
            "variant": variant,
            "tokens_per_s": rate,
            "service_added_p50_s": percentile(added, 50),
            "service_added_p95_s": percentile(added, 95),
            "service_added_p99_s": percentile(added, 99),
            "first_chunk_wait_s": first_chunk_wait,
            "ideal_underruns": ideal,
            "engine_lag_p99_s": percentile(lag, 99),
            "realtime": realtime,
            "scheduler": engine.get("scheduler"),
            "speaker_vector_computations": engine.get("speaker_vector_computations"),
            "per_stream": per_stream,
        }
    )
    return row


def _first_chunk_record(records: list[dict[str, Any]], request_id: str | None) -> dict[str, Any] | None:
    """The engine's record of a request's first text chunk: the pipeline names engine requests
    `<request id>-<chunk index>[-<suffix>]`."""
    if request_id is None:
        return None
    prefix = f"{request_id}-0"
    for rec in records:
        rid = rec["request_id"]
        if rid == prefix or rid.startswith(prefix + "-"):
            return rec
    return None


async def _level(server: Server, spec: LevelSpec, variant: str, rate: float) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        await client.post(f"{server.url}/bench/engine", json={"tokens_per_s": rate})
        await client.get(f"{server.url}/bench/engine")  # drain records of earlier streams
    level = await run_level(spec, server_pid=server.pid)
    engine = httpx.get(f"{server.url}/bench/engine", timeout=30).json()
    return level_row(level, engine, variant, rate, spec.prebuffer_s)


# ---------------------------------------------------------------------------------------------- printing
def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def print_levels(rows: list[dict[str, Any]]) -> None:
    print(
        "| variant | out Hz | tok/s | conc | streams | TTFB p50 ms | service-added p50/p95/p99 ms | "
        "gap p99 ms | "
        "underruns (ideal) | streams w/ underrun | CPU s / audio s | cores / stream | decode s / audio s | "
        "SR s / audio s | real-time |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        stages = r["stages"]
        dec = stages.get("decode", {}).get("s_per_audio_s")
        srs = stages.get("super_resolution", {}).get("s_per_audio_s")

        def f3(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        streams = f"{r['streams']}" + (f" ({r['failed']} failed)" if r["failed"] else "")
        print(
            f"| {r['variant']} | {r['sample_rate']} | {r['tokens_per_s']:.0f} | {r['concurrency']} | "
            f"{streams} | "
            f"{_ms(r['ttfb_p50_s'])} | {_ms(r['service_added_p50_s'])}/{_ms(r['service_added_p95_s'])}/"
            f"{_ms(r['service_added_p99_s'])} | {_ms(r['gap_p99_s'])} | "
            f"{r['underruns']} ({r['ideal_underruns']}) | "
            f"{r['streams_with_underruns']} | {f3(r['cpu_s_per_audio_s'])} | {f3(r['cores_per_stream'])} | "
            f"{f3(dec)} | {f3(srs) if r['sample_rate'] > NATIVE_RATE else '-'} | "
            f"{'yes' if r['realtime'] else 'no'} |"
        )


def max_realtime(rows: list[dict[str, Any]], variant: str, sample_rate: int, rate: float) -> int | None:
    """Highest concurrency whose level (and every lower one) was real-time."""
    best = None
    for r in sorted(
        (
            r
            for r in rows
            if r["variant"] == variant and r["sample_rate"] == sample_rate and r["tokens_per_s"] == rate
        ),
        key=lambda r: r["concurrency"],
    ):
        if not r["realtime"]:
            break
        best = r["concurrency"]
    return best


def comparison(rows: list[dict[str, Any]], rate: float, before: str = "baseline") -> list[dict[str, Any]]:
    """Every other variant against `before` per (sample rate, concurrency); ratios > 1 favour the variant."""
    cores = os.cpu_count() or 1
    out = []
    keyed = {(r["variant"], r["sample_rate"], r["concurrency"]): r for r in rows if r["tokens_per_s"] == rate}
    for (variant, sample_rate, conc), after in sorted(
        keyed.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])
    ):
        base = keyed.get((before, sample_rate, conc))
        if variant == before or base is None:
            continue

        def ratio(key: str, a: dict = after, b: dict = base) -> float | None:
            x, y = b.get(key), a.get(key)
            return (x / y) if (x is not None and y) else None

        def capacity(r: dict) -> float | None:
            return cores / r["cpu_s_per_audio_s"] if r.get("cpu_s_per_audio_s") else None

        out.append(
            {
                "variant": variant,
                "sample_rate": sample_rate,
                "concurrency": conc,
                "cpu_per_audio_before": base["cpu_s_per_audio_s"],
                "cpu_per_audio_after": after["cpu_s_per_audio_s"],
                "cpu_ratio": ratio("cpu_s_per_audio_s"),
                "capacity_before": capacity(base),
                "capacity_after": capacity(after),
                "ttfb_p95_ratio": ratio("ttfb_p95_s"),
                "gap_p99_ratio": ratio("gap_p99_s"),
                "underruns_before": base["underruns"],
                "underruns_after": after["underruns"],
                "mean_batch": (after.get("scheduler") or {}).get("mean_batch"),
            }
        )
    return out


def print_comparison(comp: list[dict[str, Any]]) -> None:
    print(
        "| variant | out Hz | conc | CPU s / audio s: baseline | variant | CPU ratio | "
        "streams the CPU sustains: "
        "baseline -> variant | TTFB p95 ratio | gap p99 ratio | underruns baseline -> variant | mean batch |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|")
    for c in comp:

        def f(v: float | None, d: int = 3) -> str:
            return "-" if v is None else f"{v:.{d}f}"

        print(
            f"| {c['variant']} | {c['sample_rate']} | {c['concurrency']} | {f(c['cpu_per_audio_before'])} | "
            f"{f(c['cpu_per_audio_after'])} | {f(c['cpu_ratio'], 2)} | {f(c['capacity_before'], 0)} -> "
            f"{f(c['capacity_after'], 0)} | {f(c['ttfb_p95_ratio'], 2)} | {f(c['gap_p99_ratio'], 2)} | "
            f"{c['underruns_before']} -> {c['underruns_after']} | {f(c['mean_batch'], 2)} |"
        )


# ---------------------------------------------------------------------------------------------- main
@dataclass
class Plan:
    concurrency: list[int]
    sample_rates: list[int]
    variants: list[str]
    rate: float
    rate_sweep: list[float]
    rate_sweep_concurrency: int
    min_streams: int
    min_streams_single: int  # at concurrency 1 (sequential requests: each costs a whole stream's time)
    text: str
    stagger_s: float
    prebuffer_s: float
    warmup_concurrency: int


async def run_plan(servers: dict[str, Server], plan: Plan) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def spec(server: Server, conc: int, sample_rate: int, streams: int | None = None) -> LevelSpec:
        per_worker = max(1, -(-(streams or plan.min_streams) // conc))
        return LevelSpec(
            server.url,
            conc,
            text=plan.text,
            sample_rate=sample_rate,
            requests_per_worker=per_worker,
            stagger_s=plan.stagger_s,
            prebuffer_s=plan.prebuffer_s,
        )

    # Warm-up, not recorded: every server meets the window and batch shapes it will see (on a CPU the first
    # call with a new tensor shape costs about three times a repeat).
    for variant, server in servers.items():
        for sample_rate in plan.sample_rates:
            await _level(
                server,
                spec(server, plan.warmup_concurrency, sample_rate, plan.warmup_concurrency),
                variant,
                plan.rate,
            )
    for sample_rate in plan.sample_rates:
        for conc in plan.concurrency:
            for variant, server in servers.items():  # alternate: every variant sees the same background load
                streams = plan.min_streams_single if conc == 1 else None
                row = await _level(server, spec(server, conc, sample_rate, streams), variant, plan.rate)
                rows.append(row)
                print(
                    f"  {variant:>10} {sample_rate} Hz x{conc}: TTFB p50 {_ms(row['ttfb_p50_s'])} ms, "
                    f"underruns {row['underruns']}, CPU/audio {row['cpu_s_per_audio_s'] or 0:.3f}",
                    flush=True,
                )
    for rate in plan.rate_sweep:
        if rate == plan.rate:
            continue
        for sample_rate in plan.sample_rates:
            for variant, server in servers.items():
                rows.append(
                    await _level(
                        server, spec(server, plan.rate_sweep_concurrency, sample_rate), variant, rate
                    )
                )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="concurrency 1,4,16, baseline vs tuned (~2 min)")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument(
        "--sample-rates", type=lambda s: [int(x) for x in s.split(",")], default=[16000, 48000]
    )
    parser.add_argument(
        "--variants",
        type=lambda s: s.split(","),
        default=None,
        help=f"comma list of {', '.join(VARIANTS)} (the first is the 'before')",
    )
    parser.add_argument("--rate", type=float, default=100.0, help="engine tokens/s per stream for the sweep")
    parser.add_argument(
        "--rate-sweep",
        type=lambda s: [float(x) for x in s.split(",") if x],
        default=None,
        help="extra engine rates, run at --rate-sweep-concurrency (default 50,200; none with --quick)",
    )
    parser.add_argument("--rate-sweep-concurrency", type=int, default=4)
    parser.add_argument("--min-streams", type=int, default=None, help="streams per level at least")
    parser.add_argument("--text", default=None, help="request text (default: 81 characters, ~5.7 s of audio)")
    parser.add_argument("--stagger-s", type=float, default=0.5, help="spread of the workers' first requests")
    parser.add_argument(
        "--prebuffer-ms",
        type=float,
        default=100.0,
        help="client playback starts this long after the first audio (underrun model)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="TTS_DEVICE of the servers")
    parser.add_argument(
        "--codec",
        choices=("demo", "released"),
        default="demo",
        help="demo checkpoint codecs, or released sizes with random weights (for a GPU)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip bench/plot.py")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "service.json")
    args = parser.parse_args(argv)
    variants = args.variants or (["baseline", "tuned"] if args.quick else list(VARIANTS))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; accepted: {', '.join(VARIANTS)}")

    from bench.loadgen import DEFAULT_TEXT

    plan = Plan(
        concurrency=args.concurrency or ([1, 4, 16] if args.quick else [1, 4, 16, 32, 64]),
        sample_rates=args.sample_rates,
        variants=variants,
        rate=args.rate,
        rate_sweep=args.rate_sweep if args.rate_sweep is not None else ([] if args.quick else [50, 200]),
        rate_sweep_concurrency=args.rate_sweep_concurrency,
        min_streams=args.min_streams or (4 if args.quick else 16),
        min_streams_single=args.min_streams or (2 if args.quick else 6),
        text=args.text or DEFAULT_TEXT,
        stagger_s=args.stagger_s,
        prebuffer_s=args.prebuffer_ms / 1000.0,
        warmup_concurrency=0,
    )
    plan.warmup_concurrency = min(4, max(plan.concurrency))
    started = time.perf_counter()
    load_at_start = os.getloadavg()
    from core.demo.checkpoint import build_demo_checkpoint

    model_dir = build_demo_checkpoint(DEMO_DIR, seed=0)
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        servers: dict[str, Server] = {}
        try:
            for variant in variants:  # all start together: loading overlaps
                env, flags = variant_options(variant, args.device)
                servers[variant] = spawn_server(
                    model_dir,
                    Path(tmp) / f"{variant}.log",
                    rate=plan.rate,
                    env=env,
                    flags=flags,
                    device=args.device,
                    codec=args.codec,
                )
            wait_ready(list(servers.values()))
            info = {v: httpx.get(f"{s.url}/bench/engine", timeout=30).json() for v, s in servers.items()}
            rows = asyncio.run(run_plan(servers, plan))
            final = {v: httpx.get(f"{s.url}/bench/engine", timeout=30).json() for v, s in servers.items()}
        finally:
            for server in servers.values():
                stop_server(server)
    wall = time.perf_counter() - started

    first = info[variants[0]]
    env_info = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs)",
        "device": args.device,
        "python": platform.python_version(),
        "torch_threads": {v: i.get("torch_threads") for v, i in info.items()},
        "load_avg_at_start": [round(x, 2) for x in load_at_start],
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
        "model": f"demo checkpoint, {args.codec} codecs (random weights); the paced engine as the LLM",
        "settings": first.get("settings"),
        "sr_context_samples": first.get("sr_context_samples"),
        "text_chars": len(plan.text),
        "prebuffer_s": plan.prebuffer_s,
        "quick": args.quick,
        "wall_s": round(wall, 1),
        "speaker_vector_computations": {v: f.get("speaker_vector_computations") for v, f in final.items()},
        "scheduler": {v: f.get("scheduler") for v, f in final.items()},
    }
    print(
        f"\nService load test: {env_info['model']}; {env_info['machine']}; torch threads "
        f"{env_info['torch_threads']}; load avg {load_at_start[0]:.1f} at start, "
        f"{env_info['load_avg_at_end'][0]:.1f} at end; text {len(plan.text)} chars; client prebuffer "
        f"{plan.prebuffer_s * 1000:.0f} ms\n"
    )
    print_levels(rows)
    comp = comparison(rows, plan.rate, before=variants[0])
    if comp:
        print(
            f"\nBefore/after ({variants[0]} -> each variant), engine {plan.rate:.0f} tokens/s; "
            f"streams the CPU "
            f"sustains = {os.cpu_count()} cores / (CPU s per audio s):\n"
        )
        print_comparison(comp)
    print("\nHighest real-time concurrency (no underrun in the level or any lower level):")
    for sample_rate in plan.sample_rates:
        parts = [f"{v}: {max_realtime(rows, v, sample_rate, plan.rate) or 'none'}" for v in variants]
        print(f"  {sample_rate} Hz, {plan.rate:.0f} tok/s: " + ", ".join(parts))
    print(
        "\nSpeaker-vector computations per server over the whole run: "
        f"{env_info['speaker_vector_computations']} "
        f"(warm-up voice + the bench voice: cached per voice, not per request)"
    )
    print(f"Total wall time {wall:.0f} s")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "env": env_info,
        "plan": plan.__dict__,
        "levels": rows,
        "comparison": comp,
        "max_realtime": {
            f"{v}@{sr}": max_realtime(rows, v, sr, plan.rate) for v in variants for sr in plan.sample_rates
        },
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    if not args.no_plots:
        subprocess.run([sys.executable, str(ROOT / "bench" / "plot.py"), str(args.out)], check=False)


if __name__ == "__main__":
    main()
