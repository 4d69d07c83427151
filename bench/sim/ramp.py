"""The engine rate a stream's chunk schedule needs, and what a burst's streams at that rate cost the device:
`python -m bench sim ramp [--cost-model F] [--json OUT]`.

A stream plays from its first chunk (plus the client's prebuffer) at real time, while each later chunk waits for its
tokens and its look-ahead. With chunks that grow (the service's `growth`, 1.5), every chunk needs more new tokens
than the audio played while they are made, so the engine must give the stream more than real time until the
chunks stop growing. Part 1 finds, from the service's own window plan (`bench.sim.windows.plan_decode`), the least
constant engine rate (a multiple of real time) at which streams of 8, 10 and 12 s (the simulator's lengths) never
run dry, for each first-chunk schedule and chunk growth, at several prebuffers.

Part 2 prices that rate for N streams generating at once, as the streams of a 5 s burst all are at its peak (each
generates for its length / rate, longer than 5 s): the engine in lockstep (every row in every step, the fewest steps
N rows at that rate can take) and a floor for the codec (each window's own decode at the cost model's per-token
cost and prenet share, with no padding and no call's fixed cost; at 48 kHz AP-BWE's blocks with their context, no
fixed cost). A total above 1 means the device cannot give every stream that rate with that schedule for as long as
they all generate, however the calls are ordered (work done ahead of that rate, before the peak, is not counted).

Part 3 checks it in the simulator (`bench.sim.run`, admission off: what the modelled device carries): the two 5 s
bursts of the goals and the streams held around the capacity line, with newcomers on the served schedule (the
balanced first chunk, growth 1.5) and on the exact first chunk at each growth, seeds 0-2, host 1.4 ms per audio
second (measured). `--no-simulate` skips it (it takes a few minutes).
"""

from __future__ import annotations

import argparse
import itertools
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import write_results
from bench.sim.goals import MEASURED_HOST_MS
from bench.sim.run import ADMISSION_OFF, TOKENS_PER_SECOND, SimConfig, served_streaming, simulate
from bench.sim.windows import HOP, SR_CONTEXT, SR_GRID, PlannedDecode, plan_decode, plan_sr
from bench.standin.cost_model import CostModel
from core.streaming import LatencyPreference, StreamingConfig
from services.device.calls import Call, SchedulerPolicy
from services.device.windows import DecodeWindow
from services.pipeline.audio_output import SR_MAX_BLOCK, SR_MIN_BLOCK

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "bench" / "cost_models" / "h200-graphs.json"
STREAM_SECONDS = (8.0, 10.0, 12.0)  # the simulator's 10 s +-20%
PREBUFFERS_S = (0.1, 0.3, 0.5)
GROWTHS = (1.0, 1.1, 1.25, 1.5, 2.0)
LATENCIES: tuple[LatencyPreference, ...] = ("balanced", "lowest", "exact")
PEAK_LATENCIES: tuple[LatencyPreference, ...] = (
    "balanced",
    "exact",
)  # the served default, and what admission gives newcomers under load
# (streams generating at once, sample rate): the burst goals' peaks and the capacity line's
PEAKS = ((64, 16_000), (150, 16_000), (250, 16_000), (75, 48_000), (200, 48_000))
# Part 3: (streams within 5 s, sample rate, first chunk, growth). The goals' bursts on every schedule, then the
# capacity line on the served schedule and on the exact first chunk at growth 1.1.
SIM_SCHEDULES: tuple[tuple[LatencyPreference, float], ...] = (
    ("balanced", 1.5),
    ("exact", 1.5),
    ("exact", 1.25),
    ("exact", 1.1),
    ("exact", 1.0),
)
LOAD_SCHEDULES: tuple[tuple[LatencyPreference, float], ...] = (("balanced", 1.5), ("exact", 1.1))
SimCase = tuple[int, int, LatencyPreference, float]  # streams, sample rate, first chunk, growth
SIM_CASES: tuple[SimCase, ...] = tuple(
    (streams, rate, latency, growth)
    for streams, rate in ((250, 16_000), (200, 48_000))
    for latency, growth in SIM_SCHEDULES
) + tuple(
    (streams, rate, latency, growth)
    for rate, levels in ((16_000, (150, 200, 275)), (48_000, (75, 100, 125, 150, 175)))
    for streams in levels
    for latency, growth in LOAD_SCHEDULES
)
SIM_SEEDS = (0, 1, 2)


def dry_seconds(windows: list[PlannedDecode], rate: float, prebuffer_s: float) -> float:
    """Seconds a listener waits in all, playing from the first window plus `prebuffer_s`, when the engine makes the
    stream's tokens at `rate` times real time and each window goes out as soon as its tokens exist (decoding takes
    no time: the same delay on every window would move playback with them)."""
    play_end: float | None = None
    dry = 0.0
    for w in windows:
        ready = w.ready_at_tokens / (TOKENS_PER_SECOND * rate)
        audio = w.sent_tokens / TOKENS_PER_SECOND
        if play_end is None:
            play_end = ready + prebuffer_s + audio
        elif ready > play_end:
            dry += ready - play_end
            play_end = ready + audio
        else:
            play_end += audio
    return dry


def needed_rate(
    config: StreamingConfig, prebuffer_s: float, seconds: tuple[float, ...] = STREAM_SECONDS
) -> float:
    """The least constant engine rate (x real time, to 0.01) at which streams of these lengths never run dry."""
    need = 0.0
    for length in seconds:
        windows = plan_decode(config, round(length * TOKENS_PER_SECOND))
        low, high = 0.05, 20.0
        while high - low > 0.005:
            mid = (low + high) / 2
            low, high = (mid, high) if dry_seconds(windows, mid, prebuffer_s) > 1e-9 else (low, mid)
        need = max(need, high)
    return round(need, 2)


@dataclass(frozen=True)
class CodecFloor:
    """Device milliseconds per second of a stream's audio, below anything a call can cost."""

    decode_ms: float
    sr_ms: float  # 0 at 16 kHz


def codec_floor(
    model: CostModel, config: StreamingConfig, sample_rate: int, seconds: float = 10.0
) -> CodecFloor:
    """Each window alone in a call of its own exact length, as the service's policy shapes it (the wave generator on
    its span, the prenet its margin further: `SchedulerPolicy.units`, `CostModel.call_seconds`), less the call's
    fixed cost; at 48 kHz each AP-BWE block with its context, no fixed cost. No padding."""
    policy = SchedulerPolicy()
    decode = 0.0
    windows = plan_decode(config, round(seconds * TOKENS_PER_SECOND))
    for w in windows:
        window = DecodeWindow(np.zeros(w.length, np.int32), None, w.keep_start, w.keep_end)
        units, span = policy.units("decode", window)
        assert span is not None
        call = Call("decode", (window,), units, 1, spans=(span,), margin=policy.prenet_margin)
        decode += 1000.0 * model.call_seconds(call) - model.decode.fixed
    sr = 0.0
    if sample_rate == 48_000:
        chunks = [w.sent_tokens * HOP for w in windows]
        for s in plan_sr(
            chunks, context=SR_CONTEXT, grid=SR_GRID, min_block=SR_MIN_BLOCK, max_block=SR_MAX_BLOCK
        ):
            sr += model.sr.per_unit * s.length
    return CodecFloor(decode / seconds, sr / seconds)


def peak_share(model: CostModel, streams: int, rate: float, floor: CodecFloor) -> dict[str, float]:
    """The device's share per second for `streams` generating at once at `rate`: the engine in lockstep, and the
    codec's floor for the audio that rate makes."""
    steps = TOKENS_PER_SECOND * rate
    engine = steps * model.llm_step.seconds(streams)
    audio_per_s = streams * rate
    decode = audio_per_s * floor.decode_ms / 1000.0
    sr = audio_per_s * floor.sr_ms / 1000.0
    return {
        "engine": round(engine, 3),
        "bicodec": round(decode, 3),
        "apbwe": round(sr, 3),
        "total": round(engine + decode + sr, 3),
    }


def schedule(base: StreamingConfig, latency: LatencyPreference, growth: float) -> StreamingConfig:
    return replace(base, growth=growth).for_latency(latency)


def run(model: CostModel) -> dict[str, Any]:
    base = served_streaming()
    rates = [
        {
            "latency": latency,
            "growth": growth,
            "served": growth == base.growth,
            "rate_by_prebuffer": {
                str(p): needed_rate(schedule(base, latency, growth), p) for p in PREBUFFERS_S
            },
            "windows_per_10s": len(plan_decode(schedule(base, latency, growth), 10 * TOKENS_PER_SECOND)),
        }
        for latency in LATENCIES
        for growth in GROWTHS
    ]
    peaks = []
    for (streams, sample_rate), latency, growth in itertools.product(PEAKS, PEAK_LATENCIES, GROWTHS):
        config = schedule(base, latency, growth)
        rate = needed_rate(config, PREBUFFERS_S[0])
        floor = codec_floor(model, config, sample_rate)
        peaks.append(
            {
                "streams": streams,
                "sample_rate": sample_rate,
                "latency": latency,
                "growth": growth,
                "rate": rate,
                "codec_floor_ms_per_audio_s": {
                    "bicodec": round(floor.decode_ms, 3),
                    "apbwe": round(floor.sr_ms, 3),
                },
                "share": peak_share(model, streams, rate, floor),
            }
        )
    return {"cost_model": model.name, "served_growth": base.growth, "rates": rates, "peaks": peaks}


def simulate_case(job: tuple[str, SimCase, int]) -> dict[str, Any]:
    """One burst within 5 s on the simulator, admission off, newcomers on the given first chunk and growth."""
    model_path, (streams, sample_rate, latency, growth), seed = job
    model = CostModel.load(model_path).with_overrides(host_ms=MEASURED_HOST_MS)
    config = SimConfig(
        model,
        streams,
        sample_rate=sample_rate,
        arrive_within_s=5.0,
        seed=seed,
        latency=latency,
        streaming=served_streaming(growth=growth),
        admission=ADMISSION_OFF,
    )
    report = simulate(config)
    return {
        "streams": streams,
        "sample_rate": sample_rate,
        "latency": latency,
        "growth": growth,
        "seed": seed,
        "underrunning": report["underruns_prebuffer_100ms"],
        "ttfa_ms_p95": report["ttfa_ms_p95"],
        "generation_s_p50": report["generation_s_p50"],
        "mean_decode_batch": report["mean_decode_batch"],
    }


def run_simulated(model_path: Path, workers: int) -> list[dict[str, Any]]:
    jobs = [(str(model_path), case, seed) for case in SIM_CASES for seed in SIM_SEEDS]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(simulate_case, jobs))


def print_tables(result: dict[str, Any]) -> None:
    print("The engine rate (x real time) a stream needs to never run dry, by prebuffer")
    print("| first chunk | growth | " + " | ".join(f"{p} s" for p in PREBUFFERS_S) + " | windows in 10 s |")
    print("|---|---|" + "---|" * len(PREBUFFERS_S) + "---|")
    for r in result["rates"]:
        growth_cell = f"{r['growth']}{' (served)' if r['served'] else ''}"
        cells = " | ".join(str(v) for v in r["rate_by_prebuffer"].values())
        print(f"| {r['latency']} | {growth_cell} | {cells} | {r['windows_per_10s']} |")
    print()
    print(
        f"N streams generating at once at the rate they need (0.1 s prebuffer): the device's share ({result['cost_model']})"
    )
    print(
        "| streams | sample rate | first chunk | growth | rate needed | engine | BiCodec floor | AP-BWE floor | total |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for p in result["peaks"]:
        s = p["share"]
        khz = f"{p['sample_rate'] // 1000} kHz"
        apbwe = s["apbwe"] if p["sample_rate"] == 48_000 else ""
        print(
            f"| {p['streams']} | {khz} | {p['latency']} | {p['growth']} | {p['rate']} | {s['engine']} | {s['bicodec']} | {apbwe} | "
            f"{s['total']} |"
        )
    runs = result.get("simulated")
    if not runs:
        return
    print()
    print(
        f"Simulated, admission off, within 5 s (host {MEASURED_HOST_MS} ms per audio second; seeds "
        f"{', '.join(map(str, SIM_SEEDS))}): streams that underran, first audio p95 ms, generation p50 s"
    )
    print(
        "| streams | sample rate | first chunk | growth | underran | first audio p95 | generation p50 | decode rows per call |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for case in SIM_CASES:
        rows = [r for r in runs if (r["streams"], r["sample_rate"], r["latency"], r["growth"]) == case]
        streams, rate, latency, growth = case
        print(
            f"| {streams} | {rate // 1000} kHz | {latency} | {growth} | "
            f"{', '.join(str(r['underrunning']) for r in rows)} | "
            f"{', '.join(str(round(r['ttfa_ms_p95'])) for r in rows)} | "
            f"{', '.join(str(r['generation_s_p50']) for r in rows)} | "
            f"{', '.join(str(r['mean_decode_batch']) for r in rows)} |"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cost-model", type=Path, default=MODEL)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "simulate" / "ramp.json")
    p.add_argument("--no-simulate", action="store_true", help="parts 1 and 2 only (no simulator runs)")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    result = run(CostModel.load(args.cost_model))
    if not args.no_simulate:
        result["simulated"] = run_simulated(args.cost_model, args.workers)
    print_tables(result)
    print()
    write_results(args.json, result)
    return 0
