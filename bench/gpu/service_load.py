"""Acceptance steps `service` (16 kHz) and `service48` (48 kHz): the real app under load, the LLM paced per level.

The product app (`bench/serve_paced.py`: the service's own pipeline, codec scheduler with its CUDA graphs, admission,
SR and delivery; only the LLM is the paced engine) serves the released-size codec (and AP-BWE at 48 kHz) on the
device. This step drives it with `bench/bench_ttfa.py`'s cells, level by level:
16 kHz at 1, 8, 32, 64, 128 and 256 concurrent streams; 48 kHz (BiCodec, then AP-BWE: the service's `sample_rate=48000`
path) at 1, 32, 64 and 200; `balanced` and `lowest` at each level. Each stream speaks `TEXT` (~217 semantic tokens,
4.3 s of speech); level 1 runs `SINGLE_STREAMS` streams one after another, a level above 1 one stream per worker
(at least 16 streams).

The LLM's pace per level: at N streams each stream gets 1000 / step_ms(N) tokens/s, step_ms from the `llm` step's
CUDA-graph rows (`llm_step.paced_rate`: interpolated between measured batches, extrapolated linearly beyond the
largest from the two largest; the source is reported per level). Below 50 tokens/s (real time for Spark's 50 semantic
tokens a second) a stream cannot keep up whatever the service does; the row says so.

Per level and schedule: client TTFA p50/p95, server TTFA p95, failed streams (admission refusals included),
underruns at 0 and 100 ms of client prebuffer next to a zero-latency service's, the codec scheduler's batches and
missed deadlines, and the codec runner's calls per shape with their device time (`GET /bench/device`, diffed around
each cell). The report (`shape_table`) sets each shape's mean in-service device ms beside its isolated replay ms from
the `scheduler` step, with the ratio and a work-weighted ratio over all shapes.

Before each level the expected wall time is printed (`estimate_s`); a level whose estimate would pass `budget_s`
(what is left of the call) is skipped and listed, so a call never runs into the device tool's limit with nothing
written. `--levels` in acceptance.py runs some levels only and merges them into an earlier result of the step.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from bench.gpu.llm_step import paced_rate

ROOT = Path(__file__).resolve().parents[2]
REALTIME_TOKENS_PER_S = 50.0
LEVELS = {16000: (1, 8, 32, 64, 128, 256), 48000: (1, 32, 64, 200)}
QUICK_LEVELS = (1, 2)
SCHEDULES = ("balanced", "lowest")
SINGLE_STREAMS = 4  # sequential streams at level 1
MIN_STREAMS = 16  # streams at a level above 1 (one per worker at 16 and above)
STREAM_IDS = 34 + 217  # global block + semantic ids of `bench_ttfa.TEXT` at 3.5 tokens per character
AUDIO_S = 217 / 50.0
SERVER_START_S = (
    30.0  # load, demo checkpoint, warm-up; plus the graphs' capture (the scheduler step's figure)
)
UNMEASURED_CAPTURE_S = 90.0  # assumed when the scheduler step has not run (195 graphs at the released size)
BUDGET_S = (
    400.0  # the step's own wall limit: one device call is 600 s, installs and the llm rate file included
)
CELL_MARGIN_S = 15.0  # how long a stalled cell may run past the step's budget before it is cut and reported
QUICK_MIN_RATE = (
    150.0  # --quick: a tiny model's eager rate on a busy CPU says nothing; keep the plumbing run short
)
# Real-time streams the device sustains (the throughput step's figures, else these; H100 measured 890 and 229).
DEFAULT_CAPACITY = {16000: 300.0, 48000: 120.0}


def capacity(throughput: dict[str, Any] | None, sample_rate: int) -> float:
    """Real-time streams of decode (and SR at 48 kHz) the device sustains: the service's precisions (decode graphs in
    tf32; AP-BWE fp32, so the 48 kHz figure is the fp32 one: conservative)."""
    streams = (throughput or {}).get("streams", {})
    value = (
        streams.get("decode_16k", {}).get("tf32")
        if sample_rate == 16000
        else streams.get("decode_sr_48k", {}).get("fp32")
    )
    return float(value) if value else DEFAULT_CAPACITY[48000 if sample_rate == 48000 else 16000]


def streams_at(level: int, quick: bool = False) -> int:
    """Streams of one cell: sequential ones at level 1, one per worker (at least MIN_STREAMS) above; `quick`: one
    per worker (the CPU plumbing check)."""
    if quick:
        return level
    return SINGLE_STREAMS if level == 1 else max(level, MIN_STREAMS)


def estimate_s(
    level: int,
    rate: float,
    capacity_streams: float,
    schedules: int,
    stagger_s: float = 0.5,
    quick: bool = False,
) -> float:
    """Expected wall seconds of one level (all its schedules): the waves of streams at the engine's pace, or the
    device's work at its real-time capacity when that takes longer, plus fixed costs per cell."""
    streams = streams_at(level, quick)
    waves = math.ceil(streams / level)
    generation = waves * STREAM_IDS / rate
    device = streams * AUDIO_S / capacity_streams
    return schedules * (stagger_s + max(generation, device) + 1.5)


def plan_levels(
    levels: list[int],
    llm: dict[str, Any] | None,
    capacity_streams: float,
    schedules: int,
    quick: bool = False,
) -> list[dict[str, Any]]:
    out = []
    for level in levels:
        pace = paced_rate(llm, level)
        if quick and pace["rate"] < QUICK_MIN_RATE:
            pace = {
                **pace,
                "rate": QUICK_MIN_RATE,
                "source": f"{pace['source']}; quick: raised to {QUICK_MIN_RATE:.0f}",
            }
        out.append(
            {
                "streams": level,
                **pace,
                "below_realtime": pace["rate"] < REALTIME_TOKENS_PER_S,
                "clients": streams_at(level, quick),
                "estimate_s": round(
                    estimate_s(level, pace["rate"], capacity_streams, schedules, quick=quick), 1
                ),
            }
        )
    return out


# ---------------------------------------------------------------------------------------------- device time
def shape_delta(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The codec runner's calls per shape between two readings of `GET /bench/device`."""

    def key(row: dict[str, Any]) -> tuple:
        return row["kind"], row["length"], row["rows"], row["graph"]

    seen = {key(r): r for r in before}
    out = []
    for row in after:
        old = seen.get(key(row), {})
        calls = row["calls"] - old.get("calls", 0)
        if calls <= 0:
            continue
        device = row.get("device_seconds")
        out.append(
            {
                **row,
                "calls": calls,
                "seconds": row["seconds"] - old.get("seconds", 0.0),
                "device_seconds": None if device is None else device - (old.get("device_seconds") or 0.0),
            }
        )
    return out


def isolated_costs(scheduler: dict[str, Any] | None) -> dict[tuple, dict[str, float]]:
    """(kind, length, rows) -> the scheduler step's isolated replay and eager ms of that captured shape."""
    return {
        (g["kind"], g["length"], g["rows"]): {"replay_ms": g.get("replay_ms"), "eager_ms": g.get("eager_ms")}
        for g in (scheduler or {}).get("graphs", [])
    }


def merge_shapes(rows: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    merged: dict[tuple, dict[str, Any]] = {}
    for shapes in rows:
        for s in shapes:
            entry = merged.setdefault(
                (s["kind"], s["length"], s["rows"], s["graph"]),
                {**s, "calls": 0, "seconds": 0.0, "device_seconds": None},
            )
            entry["calls"] += s["calls"]
            entry["seconds"] += s["seconds"]
            if s.get("device_seconds") is not None:
                entry["device_seconds"] = (entry["device_seconds"] or 0.0) + s["device_seconds"]
    return list(merged.values())


def shape_table(
    shapes: list[dict[str, Any]], scheduler: dict[str, Any] | None, top: int | None = None
) -> dict[str, Any]:
    """Each shape's mean in-service ms (the device's own time on CUDA, else the device thread's) beside its isolated
    cost (a graph call: the scheduler step's replay ms of that shape; an eager call of a bucketed shape: its eager
    ms; an exact-length call: none), the ratio, and the work-weighted ratio over the shapes with an isolated cost
    (sum of in-service seconds over the sum of calls x isolated seconds)."""
    isolated = isolated_costs(scheduler)
    rows, served_s, isolated_s, covered_s = [], 0.0, 0.0, 0.0
    for s in sorted(
        shapes, key=lambda s: -(s["device_seconds"] if s.get("device_seconds") is not None else s["seconds"])
    ):
        service_s = s["device_seconds"] if s.get("device_seconds") is not None else s["seconds"]
        cost = isolated.get((s["kind"], s["length"], s["rows"]), {})
        alone_ms = cost.get("replay_ms" if s["graph"] else "eager_ms")
        mean_ms = service_s / s["calls"] * 1000
        rows.append(
            {
                "kind": s["kind"],
                "length": s["length"],
                "rows": s["rows"],
                "mode": "graph" if s["graph"] else "eager",
                "calls": s["calls"],
                "in_service_ms": mean_ms,
                "thread_ms": s["seconds"] / s["calls"] * 1000,
                "isolated_ms": alone_ms,
                "ratio": mean_ms / alone_ms if alone_ms else None,
                "total_s": service_s,
            }
        )
        served_s += service_s
        if alone_ms:
            covered_s += service_s
            isolated_s += s["calls"] * alone_ms / 1000
    return {
        "rows": rows[:top] if top else rows,
        "shapes": len(rows),
        "in_service_s": served_s,
        "weighted_ratio": covered_s / isolated_s if isolated_s else None,
        "covered": covered_s / served_s if served_s else None,
        "device_clock": any(s.get("device_seconds") is not None for s in shapes),
        "isolated": "measured" if isolated else "not measured",
    }


# ---------------------------------------------------------------------------------------------- the run
async def _device(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    return (await client.get(f"{url}/bench/device")).json()["shapes"]


async def _drive(
    server: Any,
    plan: Any,
    levels: list[dict[str, Any]],
    schedules: list[str],
    budget_s: float,
    started: float,
    progress: Callable[[list[dict[str, Any]], list[int]], None],
) -> tuple[list[dict[str, Any]], list[int]]:
    from bench import bench_ttfa

    rows: list[dict[str, Any]] = []
    skipped: list[int] = []
    async with httpx.AsyncClient(timeout=60) as client:
        await bench_ttfa.warm_up(client, {"plain": server}, plan)
        for level in levels:
            left = budget_s - (time.perf_counter() - started)
            if level["estimate_s"] > left:
                print(
                    f"  {level['streams']} streams: skipped (expected {level['estimate_s']:.0f} s, "
                    f"{left:.0f} s of the step's budget left)",
                    flush=True,
                )
                skipped.append(level["streams"])
                progress(rows, skipped)
                continue
            await bench_ttfa.configure(client, server, rate=level["rate"], codec=plan.codec)
            level_plan = replace(
                plan, rates=[level["rate"]], single_streams=level["clients"], min_streams=level["clients"]
            )
            for schedule in schedules:
                cell = bench_ttfa.Cell(level["rate"], plan.codec, "fixed", "now", schedule, level["streams"])
                began = time.perf_counter()
                before = await _device(client, server.url)
                try:
                    # A stalled cell ends (and is reported) within the step's budget plus a margin, never the call's.
                    limit = min(
                        max(60.0, 4 * level["estimate_s"]),
                        budget_s + CELL_MARGIN_S - (time.perf_counter() - started),
                    )
                    row = await asyncio.wait_for(
                        bench_ttfa.run_cell(client, server, cell, level_plan), timeout=max(5.0, limit)
                    )
                except (TimeoutError, httpx.HTTPError, RuntimeError) as exc:
                    rows.append(
                        {
                            "schedule": schedule,
                            "streams": level["streams"],
                            "rate": level["rate"],
                            "error": f"{type(exc).__name__}: {exc}"[:300],
                        }
                    )
                    print(f"  {schedule} x{level['streams']}: {rows[-1]['error']}", flush=True)
                    progress(rows, skipped)
                    continue
                shapes = shape_delta(before, await _device(client, server.url))
                rows.append(_row(row, level, shapes, time.perf_counter() - began))
                progress(rows, skipped)
                r = rows[-1]
                print(
                    f"  {schedule:>8} x{level['streams']:<3} {level['rate']:.0f} tok/s: TTFA p50/p95 "
                    f"{_ms(r['ttfa_p50_s'])}/{_ms(r['ttfa_p95_s'])} ms, failed {r['failed']}, underruns "
                    f"{r['underruns']} (ideal {r['ideal_underruns']}), host CPU {_seconds(r['host_cpu_s'])}, "
                    f"admission {r['admission']}, {r['wall_s']:.1f} s",
                    flush=True,
                )
    return rows, skipped


def _row(
    row: dict[str, Any], level: dict[str, Any], shapes: list[dict[str, Any]], wall_s: float
) -> dict[str, Any]:
    scheduler = row.get("scheduler") or {}
    return {
        "schedule": row["schedule"],
        "streams": level["streams"],
        "clients": row["streams"],
        "failed": row["failed"],
        "rate": level["rate"],
        "rate_source": level["source"],
        "below_realtime": level["below_realtime"],
        "estimate_s": level["estimate_s"],
        "wall_s": round(wall_s, 1),
        "ttfa_p50_s": row["ttfa_p50_s"],
        "ttfa_p95_s": row["ttfa_p95_s"],
        "server_ttfa_p95_s": row["server_ttfa_p95_s"],
        "underruns": row["underruns"],
        "ideal_underruns": row["ideal_underruns"],
        "engine_lag_p95_s": row["engine_lag_p95_s"],
        "mean_batch": scheduler.get("mean_batch"),
        "mean_decode_batch": scheduler.get("mean_decode_batch"),
        "mean_sr_batch": scheduler.get("mean_sr_batch"),
        "missed_deadlines": scheduler.get("missed_deadlines"),
        "busy_seconds": scheduler.get("busy_seconds"),
        # What else binds: the API process's CPU seconds (all threads) and admission's decisions in the cell.
        "host_cpu_s": row.get("host_cpu_s"),
        "admission": row.get("admission"),
        "device_shapes": shapes,
    }


def _seconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def run(
    device: str,
    quick: bool,
    sample_rate: int,
    *,
    llm: dict[str, Any] | None = None,
    scheduler: dict[str, Any] | None = None,
    throughput: dict[str, Any] | None = None,
    levels: list[int] | None = None,
    schedules: list[str] | None = None,
    budget_s: float = BUDGET_S,
    settings: dict[str, str] | None = None,
    on_rows: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The step; `on_rows` gets the result so far (`"partial": true`) after each cell, for the caller to write at once
    (a call cut short keeps the levels it measured)."""
    from bench import bench_ttfa
    from bench.harness import DEMO_DIR, stop_server, wait_ready
    from core.demo.checkpoint import build_demo_checkpoint

    started = time.perf_counter()
    cuda = device.startswith("cuda")
    levels = levels or list(QUICK_LEVELS if quick else LEVELS[sample_rate])
    # --quick at 48 kHz: `balanced` only (16 kHz covers `lowest`; the CPU check stays short).
    schedules = schedules or (["balanced"] if quick and sample_rate == 48000 else list(SCHEDULES))
    codec = "demo" if quick else "released"
    capacity_streams = capacity(throughput, sample_rate)
    plan_rows = plan_levels(levels, llm, capacity_streams, len(schedules), quick)
    capture_s = (scheduler or {}).get("capture_s") if cuda else 0.0
    start_s = SERVER_START_S + (capture_s if capture_s is not None else UNMEASURED_CAPTURE_S)
    capture = (
        "no graphs on a CPU"
        if not cuda
        else "graph capture as the scheduler step measured it"
        if capture_s is not None
        else f"graph capture not measured yet: {UNMEASURED_CAPTURE_S:.0f} s assumed"
    )
    print(
        f"{sample_rate} Hz, {codec} codec on {device}, schedules {', '.join(schedules)}; expected: server start "
        f"~{start_s:.0f} s ({capture}), then per level (device capacity {capacity_streams:.0f} real-time streams):",
        flush=True,
    )
    for p in plan_rows:
        print(
            f"  {p['streams']:>3} streams ({p['clients']} in all): {p['rate']:.0f} tok/s per stream "
            f"({p['source']}{'; BELOW REAL TIME' if p['below_realtime'] else ''}), ~{p['estimate_s']:.0f} s",
            flush=True,
        )
    print(
        f"  total ~{start_s + sum(p['estimate_s'] for p in plan_rows) + 10:.0f} s (budget {budget_s:.0f} s)",
        flush=True,
    )
    plan = bench_ttfa.Plan(
        rates=[plan_rows[0]["rate"]],
        concurrency=levels,
        schedules=schedules,
        voices=["fixed"],
        free_voices=[],
        before_voices=[],
        single_streams=plan_rows[0]["clients"],
        min_streams=MIN_STREAMS,
        repeats=1,
        codec=codec,
        text=bench_ttfa.QUICK_TEXT if quick else bench_ttfa.TEXT,
        stagger_s=0.5,
        prebuffers_s=[0.0, 0.1],
        snr=None,
        sample_rate=sample_rate,
    )
    base = {
        "sample_rate": sample_rate,
        "codec": codec,
        "settings": settings or {},
        "levels": levels,
        "schedules": schedules,
        "plan": plan_rows,
        "capacity_streams": capacity_streams,
        "expected_start_s": start_s,
    }
    model_dir = build_demo_checkpoint(DEMO_DIR, seed=0)
    with tempfile.TemporaryDirectory(prefix="acceptance-service-") as tmp:
        servers = bench_ttfa.spawn_servers(
            model_dir, Path(tmp), {"plain"}, "cuda" if cuda else "cpu", codec, settings=settings
        )
        server = servers["plain"]
        try:
            # The start may take the step's whole budget (no level fits after it), never more.
            wait_ready([server], timeout_s=max(30.0, budget_s - (time.perf_counter() - started)))
            ready_s = time.perf_counter() - started
            print(f"  server ready in {ready_s:.0f} s", flush=True)
            served = httpx.get(f"{server.url}/bench/device", timeout=30).json()
            graphs, sr_precision = served.get("graphs"), served.get("sr_precision")
            so_far = {
                **base,
                "server_ready_s": round(ready_s, 1),
                "graphs": graphs,
                "sr_precision": sr_precision,
            }

            def progress(rows: list[dict[str, Any]], skipped: list[int]) -> None:
                if on_rows is not None:
                    on_rows({**so_far, "rows": list(rows), "skipped_levels": list(skipped), "partial": True})

            rows, skipped = asyncio.run(
                _drive(server, plan, plan_rows, schedules, budget_s, started, progress)
            )
        except (RuntimeError, httpx.HTTPError) as exc:
            log = server.log_path.read_text(errors="replace")[-2000:] if server.log_path.is_file() else ""
            return {**base, "error": f"{exc}"[:2000], "log_tail": log}
        finally:
            stop_server(server)
    result = {
        **base,
        "server_ready_s": round(ready_s, 1),
        "graphs": graphs,
        "sr_precision": sr_precision,
        "rows": rows,
        "skipped_levels": skipped,
        "below_realtime": any(p["below_realtime"] for p in plan_rows),
    }
    table = shape_table(merge_shapes([r.get("device_shapes", []) for r in rows]), scheduler, top=8)
    print(
        f"  device time per call shape, all levels ({table['isolated']} isolated costs): "
        + json.dumps(
            [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in table["rows"]]
        ),
        flush=True,
    )
    return result


def merge_levels(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """A `--levels` rerun: its rows replace the earlier result's rows of the same levels and schedules, the rest
    stay."""
    if not old or "rows" not in old or "rows" not in new or old.get("sample_rate") != new.get("sample_rate"):
        return new
    redone = set(new["levels"])
    schedules = set(new.get("schedules") or [r["schedule"] for r in new["rows"]])
    rows = [r for r in old["rows"] if r["streams"] not in redone or r["schedule"] not in schedules] + new[
        "rows"
    ]
    rows.sort(key=lambda r: (r["streams"], r["schedule"]))
    plan = {p["streams"]: p for p in [*old.get("plan", []), *new["plan"]]}
    return {
        **new,
        "levels": sorted({r["streams"] for r in rows}),
        "rows": rows,
        "schedules": sorted({r["schedule"] for r in rows}),
        "plan": [plan[k] for k in sorted(plan)],
        "skipped_levels": sorted((set(old.get("skipped_levels", [])) - redone) | set(new["skipped_levels"])),
        "below_realtime": any(p["below_realtime"] for p in plan.values()),
    }
