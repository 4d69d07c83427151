"""Time to first audio (TTFA) per latency schedule, voice kind, engine rate and concurrency, in one run.

Set-up: `bench/serve_paced.py` servers (the product app with its default settings on the demo checkpoint; the LLM
is `PacedEngine`, which hands out each stream's ids at a set rate and continues every prompt kind as the trained
model does: style voices emit 4 acoustic ids and the 34-id global block before speech, prefix voices the global
block). Two servers start together: `plain` (voices as shipped) and `pinned` (`TTS_PIN_VOICES_AT_START=true`).

Cells: engine rate x codec x voice x schedule (`exact` / `balanced` / `lowest`) x concurrency; the schedules and
voices alternate within each concurrency level, so they share the background load. Voices: `fixed` (stored globals),
`style` (a style voice, unpinned), `style-pinned` (the same voice on the pinned server), `prefix` (the prompt-prefix
voice, unpinned). Codecs: `demo` (the checkpoint's BiCodec) and `free` (`bench.ideal_stream.FreeCodec`: silence of the
exact length at no cost, BENCH ONLY), which leaves the service's own share of the latency (HTTP, parsing, queues, the
codec scheduler) and removes decode compute. Variants: `now` (the product) and, for `--before-voices`, `before` (the
same server without the first-audio techniques: chunks keep growing after the short schedule, every chunk's last 50 ms
held for a crossfade, a thread hop per engine delta, the start-up heap left to the cyclic GC; `bench/serve_paced.py`
LEGACY), alternating cell by cell so both share one run.

Per cell: steps before audio (engine ids before the first audio chunk, from each request's `PipelineStats`), the
client's TTFA p50/p95, the ideal TTFA of a service that adds no time (the due time of that step), playback
underruns (`StreamCadence` on the client's arrival times, at each client prebuffer) next to those of a
zero-latency service with the same schedule (`bench.ideal_stream`), and server CPU per audio second. The summary
adds the first-boundary SNR per schedule (`bench/bench_first_chunk.py`'s measurement).

    .venv/bin/python bench/bench_ttfa.py [--quick] [--rates 100,200] [--concurrency 1,8,32]
        [--schedules exact,balanced,lowest] [--voices fixed,style,style-pinned,prefix] [--free-voices fixed]
        [--before-voices fixed]

Prints markdown tables, writes bench/results/ttfa.json and draws bench/results/ttfa.png (`--docs`:
docs/img/ttfa.png).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_service import spawn_server, variant_options  # noqa: E402
from bench.harness import DEMO_DIR, Server, stop_server, wait_ready  # noqa: E402
from bench.ideal_stream import EngineTiming, ideal_arrivals, ideal_first_audio_s, underruns  # noqa: E402
from bench.loadgen import LevelResult, LevelSpec, percentile, run_level  # noqa: E402
from bench.serve_paced import LEGACY  # noqa: E402
from core.streaming import LatencyPreference, StreamingConfig  # noqa: E402

PREFERENCES = ("exact", "balanced", "lowest")
VARIANTS = ("now", "before")
TEXT = "Hello there! This sentence measures how soon the audio starts."  # 62 chars: ~217 tokens, 4.3 s
QUICK_TEXT = "Hello there, how soon does the first audio arrive?"
OUT = ROOT / "bench" / "results" / "ttfa.json"


@dataclass(frozen=True)
class VoiceCase:
    server: str  # "plain" (voices as shipped) or "pinned" (TTS_PIN_VOICES_AT_START=true)
    speaker: str
    kind: str


VOICES: dict[str, VoiceCase] = {
    "fixed": VoiceCase("plain", "fixed", "global_tokens"),
    "style": VoiceCase("plain", "default", "style, unpinned"),
    "style-pinned": VoiceCase("pinned", "default", "style, pinned at start"),
    "prefix": VoiceCase("plain", "narrator", "prompt_prefix, unpinned"),
}


@dataclass(frozen=True)
class SnrPlan:
    config: str  # "released" (the claim) or "demo" (quick runs)
    tokens: int
    seeds: int


@dataclass
class Plan:
    rates: list[float]
    concurrency: list[int]
    schedules: list[str]
    voices: list[str]  # run with the servers' codec
    free_voices: list[str]  # run with the free codec
    before_voices: list[str]  # also run without the first-audio techniques (both codecs)
    single_streams: int  # sequential streams at concurrency 1
    min_streams: int  # streams per level above 1 (several per worker when the level is small)
    repeats: int  # runs per cell above concurrency 1
    codec: str  # the servers' codec ("demo" or "released"); cells also run with "free" for --free-voices
    text: str
    stagger_s: float
    prebuffers_s: list[float]
    snr: SnrPlan | None
    sample_rate: int = 16000  # 48000: BiCodec then AP-BWE super-resolution (the service's 48 kHz path)

    def servers(self) -> set[str]:
        return {VOICES[v].server for v in [*self.voices, *self.free_voices]}

    def cases(self, codec: str) -> list[tuple[str, str]]:
        """(voice, variant) pairs of one codec, in the order they alternate."""
        voices = self.free_voices if codec == "free" else self.voices
        return [(v, "now") for v in voices] + [(v, "before") for v in voices if v in self.before_voices]


@dataclass(frozen=True)
class Cell:
    rate: float
    codec: str
    voice: str
    variant: str
    schedule: str
    concurrency: int


# ---------------------------------------------------------------------------------------------- servers
def spawn_servers(
    model_dir: Path,
    log_dir: Path,
    names: set[str],
    device: str = "cpu",
    codec: str = "demo",
    settings: dict[str, str] | None = None,
) -> dict[str, Server]:
    """The product's default configuration (bench_service's `tuned` names it), one server per voice set;
    `settings`: TTS_* variables set on every server beside it (a measured variant, e.g. the AP-BWE precision)."""
    env, flags = variant_options("tuned", device)
    servers = {}
    for name in sorted(names):
        extra = {"TTS_PIN_VOICES_AT_START": "true"} if name == "pinned" else {}
        servers[name] = spawn_server(
            model_dir,
            log_dir / f"{name}.log",
            rate=100.0,
            env={**env, **(settings or {}), **extra},
            flags=flags,
            device=device,
            codec=codec,
        )
    return servers


async def configure(
    client: httpx.AsyncClient,
    server: Server,
    *,
    rate: float | None = None,
    codec: str | None = None,
    variant: str | None = None,
) -> None:
    if rate is not None:
        (await client.post(f"{server.url}/bench/engine", json={"tokens_per_s": rate})).raise_for_status()
    body: dict[str, Any] = {}
    if codec is not None:
        body["codec"] = "free" if codec == "free" else "model"
    if variant is not None:
        body["before"] = list(LEGACY) if variant == "before" else []
    answer = (await client.post(f"{server.url}/bench/variant", json=body)).json()
    if "error" in answer:
        raise RuntimeError(f"bench server refused {body}: {answer['error']}")


async def engine_records(
    client: httpx.AsyncClient, server: Server, expected: int, timeout_s: float = 5.0
) -> dict:
    """Engine and pipeline records since the last call; waits until `expected` requests have been settled (the
    flow monitor records a request just after its last byte)."""
    state = (await client.get(f"{server.url}/bench/engine")).json()
    deadline = time.monotonic() + timeout_s
    while len(state["pipeline"]) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        more = (await client.get(f"{server.url}/bench/engine")).json()
        state["streams"] += more["streams"]
        state["pipeline"] += more["pipeline"]
        for gen, pauses in more["gc_pauses"].items():
            seen = state["gc_pauses"][gen]
            seen.update(
                count=seen["count"] + pauses["count"],
                total_s=seen["total_s"] + pauses["total_s"],
                max_s=max(seen["max_s"], pauses["max_s"]),
            )
    return state


# ---------------------------------------------------------------------------------------------- one cell
@lru_cache(maxsize=4096)
def _ideal(schedule: StreamingConfig, timing: EngineTiming) -> tuple[tuple[float, float], ...]:
    return tuple(ideal_arrivals(schedule, timing))


def schedule_of(
    settings: dict[str, Any], preference: LatencyPreference, variant: str = "now"
) -> StreamingConfig:
    """The first text chunk's schedule the server uses for a latency preference (its own settings)."""
    schedule = StreamingConfig.from_settings(SimpleNamespace(stream=SimpleNamespace(**settings))).for_latency(
        preference
    )
    return replace(schedule, resume_chunk_tokens=None) if variant == "before" else schedule


def _engine_record(records: list[dict[str, Any]], request_id: str | None) -> dict[str, Any] | None:
    """The engine's record of a request's first text chunk (engine requests are `<request id>-0-<suffix>`)."""
    prefix = f"{request_id}-0-"
    return next((r for r in records if request_id and r["request_id"].startswith(prefix)), None)


def stream_figures(
    stream: Any,
    record: dict[str, Any] | None,
    served: dict[str, Any] | None,
    schedule: StreamingConfig,
    rate: float,
    prebuffers: list[float],
) -> dict[str, Any]:
    """One stream: TTFA (client and server), its ideal, and underruns measured and ideal at each prebuffer."""
    item: dict[str, Any] = {"ok": stream.ok, "ttfa_s": stream.ttfb_s}
    if served is not None and served["server_ttfa_ms"] is not None:
        item["server_ttfa_s"] = served["server_ttfa_ms"] / 1000.0
        item["steps_before_audio"] = served["first_audio_engine_ids"]
    item["underruns"] = {str(pb): underruns(stream.arrivals, pb) for pb in prebuffers}
    if record is not None:
        timing = EngineTiming(record["semantic_tokens"], record["first_semantic_due_s"], rate)
        item["ideal_ttfa_s"] = ideal_first_audio_s(schedule, timing)
        arrivals = list(_ideal(schedule, timing))
        item["ideal_underruns"] = {str(pb): underruns(arrivals, pb) for pb in prebuffers}
        item["engine_max_lag_s"] = record["max_lag_s"]
    return item


@dataclass
class Run:
    """One level of a cell: the client's streams and the server's records of them."""

    level: LevelResult
    state: dict[str, Any]


def run_streams(
    run: Run, schedule: StreamingConfig, rate: float, prebuffers: list[float]
) -> list[dict[str, Any]]:
    served = {p["request_id"]: p for p in run.state["pipeline"]}
    return [
        stream_figures(
            s,
            _engine_record(run.state["streams"], s.request_id),
            served.get(s.request_id or ""),
            schedule,
            rate,
            prebuffers,
        )
        for s in run.level.streams
    ]


def _merged_gc(runs: list[Run]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for run in runs:
        for gen, p in run.state["gc_pauses"].items():
            seen = out.setdefault(gen, {"count": 0, "max_s": 0.0, "total_s": 0.0})
            seen.update(
                count=seen["count"] + p["count"],
                total_s=seen["total_s"] + p["total_s"],
                max_s=max(seen["max_s"], p["max_s"]),
            )
    return out


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def cell_row(cell: Cell, runs: list[Run], plan: Plan, load: float) -> dict[str, Any]:
    """A cell's figures over all its runs (streams pooled; p95 also per run, since one burst of other jobs on this
    shared box can stall a whole run)."""
    # a cell's schedule is a latency preference: one of PREFERENCES here, of SCHEDULES in bench/gpu/service_load.py
    schedule = schedule_of(runs[0].state["settings"], cast(LatencyPreference, cell.schedule), cell.variant)
    per_run = [
        [s for s in run_streams(r, schedule, cell.rate, plan.prebuffers_s) if s["ok"] and s["ttfa_s"]]
        for r in runs
    ]
    ok = [s for streams in per_run for s in streams]
    ttfa = [s["ttfa_s"] for s in ok]
    server = [s["server_ttfa_s"] for s in ok if "server_ttfa_s" in s]
    added = [s["ttfa_s"] - s["ideal_ttfa_s"] for s in ok if "ideal_ttfa_s" in s]
    steps = [s["steps_before_audio"] for s in ok if s.get("steps_before_audio") is not None]
    preamble = [p["preamble_ids"] for r in runs for p in r.state["pipeline"] if p["preamble_ids"] is not None]
    run_p95 = [percentile([s["ttfa_s"] for s in streams], 95) for streams in per_run if streams]
    audio = sum(s.audio_s for r in runs for s in r.level.streams if s.ok)
    cpu = [r.level.cpu_s for r in runs]
    streams = sum(len(r.level.streams) for r in runs)

    def total(key: str) -> dict[str, int]:
        return {str(pb): sum(s.get(key, {}).get(str(pb), 0) for s in ok) for pb in plan.prebuffers_s}

    return {
        **asdict(cell),
        "load_1min": load,
        "runs": len(runs),
        "streams": streams,
        "failed": streams - len(ok),
        "steps_before_audio": _median(steps),
        "steps_max": max(steps, default=None),
        "preamble_ids": _median(preamble),
        "nominal_steps": schedule.tokens_before_first_audio,
        "ttfa_p50_s": percentile(ttfa, 50),
        "ttfa_p95_s": percentile(ttfa, 95),
        "ttfa_p95_runs_s": run_p95,
        "ttfa_p95_median_run_s": _median(
            [p for p in run_p95 if p is not None]
        ),  # a run without streams has no p95
        "server_ttfa_p50_s": percentile(server, 50),
        "server_ttfa_p95_s": percentile(server, 95),
        "ideal_ttfa_s": _median([s["ideal_ttfa_s"] for s in ok if "ideal_ttfa_s" in s]),
        "service_added_p50_s": percentile(added, 50),
        "service_added_p95_s": percentile(added, 95),
        "underruns": total("underruns"),
        "ideal_underruns": total("ideal_underruns"),
        "engine_lag_p95_s": percentile([s["engine_max_lag_s"] for s in ok if "engine_max_lag_s" in s], 95),
        "cpu_s_per_audio_s": sum(cpu) / audio if audio and None not in cpu else None,  # type: ignore[arg-type]
        "gc_pauses": _merged_gc(runs),
        "per_stream": [s for streams in per_run for s in streams],
    }


async def run_cell(client: httpx.AsyncClient, server: Server, cell: Cell, plan: Plan) -> dict[str, Any]:
    """Concurrency 1: `single_streams` sequential streams; above: `repeats` runs of `min_streams` streams."""
    await configure(client, server, variant=cell.variant)
    before = await engine_records(client, server, 0, timeout_s=0)  # drop records of earlier streams
    single = cell.concurrency == 1
    streams = plan.single_streams if single else plan.min_streams
    spec = LevelSpec(
        server.url,
        cell.concurrency,
        text=plan.text,
        speaker=VOICES[cell.voice].speaker,
        requests_per_worker=max(1, -(-streams // cell.concurrency)),
        stagger_s=plan.stagger_s,
        latency=cell.schedule,
        sample_rate=plan.sample_rate,
    )
    load = os.getloadavg()[0]
    runs = []
    for _ in range(1 if single else plan.repeats):
        level = await run_level(spec, server_pid=server.pid)
        runs.append(Run(level, await engine_records(client, server, len(level.streams))))
    after = runs[-1].state
    return {
        **cell_row(cell, runs, plan, load),
        "scheduler": scheduler_delta(before.get("scheduler"), after.get("scheduler")),
        "host_cpu_s": _delta(before.get("process_cpu_s"), after.get("process_cpu_s")),
        "admission": admission_delta(before.get("admission"), after.get("admission")),
    }


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def admission_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any] | None:
    """Admission's decisions during one cell: admitted, refused by rule, first chunks by schedule/reason."""
    if not before or not after:
        return None

    def added(name: str) -> dict[str, int]:
        was = before.get(name, {})
        return {k: n - was.get(k, 0) for k, n in after.get(name, {}).items() if n - was.get(k, 0)}

    return {
        "admitted": after["admitted"] - before["admitted"],
        "refused": added("refused"),
        "first_chunks": added("first_chunks"),
    }


def scheduler_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any] | None:
    """The codec scheduler's work during one cell (its counters are cumulative per server)."""
    if not before or not after:
        return None
    added: dict[str, Any] = {
        k: after[k] - before.get(k, 0)
        for k in ("calls", "rows", "padded_rows", "eager_calls", "busy_seconds", "missed_deadlines")
        if k in after
    }
    kinds = {
        kind: {
            "calls": after["calls_by_kind"][kind] - before["calls_by_kind"].get(kind, 0),
            "rows": after["rows_by_kind"][kind] - before["rows_by_kind"].get(kind, 0),
        }
        for kind in after.get("calls_by_kind", {})
    }
    return {
        **added,
        "mean_batch": added["rows"] / added["calls"] if added.get("calls") else None,
        "mean_decode_batch": (
            kinds["decode"]["rows"] / kinds["decode"]["calls"]
            if kinds.get("decode", {}).get("calls")
            else None
        ),
        "mean_sr_batch": kinds["sr"]["rows"] / kinds["sr"]["calls"]
        if kinds.get("sr", {}).get("calls")
        else None,
    }


async def warm_up(client: httpx.AsyncClient, servers: dict[str, Server], plan: Plan) -> None:
    """Not recorded: every voice and schedule once at two streams (new tensor shapes cost more the first time)."""
    for voice in dict.fromkeys([*plan.voices, *plan.free_voices]):
        for schedule in plan.schedules:
            server = servers[VOICES[voice].server]
            spec = LevelSpec(
                server.url,
                2,
                text=plan.text,
                speaker=VOICES[voice].speaker,
                stagger_s=0.1,
                latency=schedule,
                sample_rate=plan.sample_rate,
            )
            await run_level(spec)
    for server in servers.values():
        await engine_records(client, server, 0, timeout_s=0)


async def run_plan(servers: dict[str, Server], plan: Plan) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=60) as client:
        await warm_up(client, servers, plan)
        for rate in plan.rates:
            for codec, voices in ((plan.codec, plan.voices), ("free", plan.free_voices)):
                if not voices:
                    continue
                for server in servers.values():
                    await configure(client, server, rate=rate, codec=codec)
                for conc in plan.concurrency:
                    for (
                        schedule
                    ) in plan.schedules:  # alternate: every schedule, voice and variant sees the same load
                        for voice, variant in plan.cases(codec):
                            cell = Cell(rate, codec, voice, variant, schedule, conc)
                            row = await run_cell(client, servers[VOICES[voice].server], cell, plan)
                            rows.append(row)
                            print(
                                f"  {rate:.0f} tok/s {codec:>4} {voice:>12} {variant:>6} {schedule:>8} x{conc:<3} "
                                f"TTFA p50/p95 {_ms(row['ttfa_p50_s'])}/{_ms(row['ttfa_p95_s'])} ms, steps "
                                f"{row['steps_before_audio']}, underruns {row['underruns']} "
                                f"(ideal {row['ideal_underruns']}), load {row['load_1min']:.1f}",
                                flush=True,
                            )
        for server in servers.values():
            await configure(client, server, rate=plan.rates[0], codec=plan.codec, variant="now")
    return rows


async def forced_gc_ms(server: Server) -> dict[str, float]:
    """A full GC collection's pause on the bench server, with the start-up heap in reach (before) and frozen (now)."""
    out = {}
    async with httpx.AsyncClient(timeout=60) as client:
        for variant in ("before", "now"):
            await configure(client, server, variant=variant)
            answer = (await client.post(f"{server.url}/bench/gc")).json()
            out[variant] = round(answer["full_collection_ms"], 1)
    return out


# ---------------------------------------------------------------------------------------------- summary
def first_boundary_snr(plan: SnrPlan, schedules: list[str]) -> dict[str, dict[str, Any]]:
    """bench_first_chunk's measurement for the latency presets (codec size and random weights as it states)."""
    from bench.bench_first_chunk import run

    presets = {name: StreamingConfig().for_latency(name) for name in schedules}  # type: ignore[arg-type]
    return {
        row["schedule"]: {**row, "codec_config": plan.config, "seeds": plan.seeds, "tokens": plan.tokens}
        for row in run(plan.config, plan.tokens, plan.seeds, presets)
    }


def summarise(rows: list[dict[str, Any]], snr: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (rate, codec, voice, variant, schedule): figures by concurrency, and the p95 spread at the top
    level against the 1-stream p50 (the issue's target: within 1.5x)."""
    keyed: dict[tuple, dict[int, dict[str, Any]]] = {}
    for r in rows:
        keyed.setdefault((r["rate"], r["codec"], r["voice"], r["variant"], r["schedule"]), {})[
            r["concurrency"]
        ] = r
    out = []
    for (rate, codec, voice, variant, schedule), by_conc in keyed.items():
        levels = sorted(by_conc)
        single, top = by_conc[levels[0]], by_conc[levels[-1]]

        def ratio(a: float | None, b: float | None) -> float | None:
            return a / b if a and b else None

        out.append(
            {
                "rate": rate,
                "codec": codec,
                "voice": voice,
                "variant": variant,
                "schedule": schedule,
                "steps_before_audio": single["steps_before_audio"],
                "nominal_steps": single["nominal_steps"],
                "preamble_ids": single["preamble_ids"],
                "ideal_ttfa_s": single["ideal_ttfa_s"],
                "ttfa_p50_s": {c: by_conc[c]["ttfa_p50_s"] for c in levels},
                "ttfa_p95_s": {c: by_conc[c]["ttfa_p95_s"] for c in levels},
                "ttfa_p95_median_run_s": {c: by_conc[c]["ttfa_p95_median_run_s"] for c in levels},
                "server_ttfa_p50_s": {c: by_conc[c]["server_ttfa_p50_s"] for c in levels},
                "server_ttfa_p95_s": {c: by_conc[c]["server_ttfa_p95_s"] for c in levels},
                "cpu_s_per_audio_s": {c: by_conc[c]["cpu_s_per_audio_s"] for c in levels},
                "gen2_gc_max_s": max(by_conc[c]["gc_pauses"].get("2", {}).get("max_s", 0.0) for c in levels),
                "top_concurrency": levels[-1],
                "p95_over_single_p50": ratio(top["ttfa_p95_s"], single["ttfa_p50_s"]),
                "median_run_p95_over_single_p50": ratio(top["ttfa_p95_median_run_s"], single["ttfa_p50_s"]),
                "server_p95_over_single_p50": ratio(top["server_ttfa_p95_s"], single["server_ttfa_p50_s"]),
                "underruns": {c: by_conc[c]["underruns"] for c in levels},
                "ideal_underruns": {c: by_conc[c]["ideal_underruns"] for c in levels},
                "streams": {c: by_conc[c]["streams"] - by_conc[c]["failed"] for c in levels},
                "first_second_snr_db": snr.get(schedule, {}).get("first_second_snr_db"),
                "scheduler": {c: by_conc[c].get("scheduler") for c in levels},
            }
        )
    return out


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def print_summary(summary: list[dict[str, Any]], plan: Plan) -> None:
    """The headline table: steps, TTFA by concurrency, the spread, underruns (measured and ideal), SNR."""
    levels = plan.concurrency
    p95_cols = " | ".join(f"p95 at {c}" for c in levels[1:])
    pbs = " | ".join(
        f"underruns at {'/'.join(map(str, levels))}, {pb * 1000:.0f} ms prebuffer: measured (ideal)"
        for pb in plan.prebuffers_s
    )
    print(
        f"| tok/s | codec | voice | variant | schedule | steps before audio (schedule) | ideal TTFA ms | TTFA p50 at 1 | {p95_cols} | "
        f"p95 at {levels[-1]} / p50 at 1 | {pbs} | SNR first s dB |"
    )
    print("|" + "---|" * (10 + len(levels[1:]) + len(plan.prebuffers_s)))
    for s in summary:
        p95 = " | ".join(_ms(s["ttfa_p95_s"].get(c)) for c in levels[1:])
        runs = " | ".join(
            "/".join(
                f"{s['underruns'][c][str(pb)]} ({s['ideal_underruns'][c][str(pb)]})"
                for c in levels
                if c in s["underruns"]
            )
            for pb in plan.prebuffers_s
        )
        snr = "-" if s["first_second_snr_db"] is None else f"{s['first_second_snr_db']:.1f}"
        steps = "-" if s["steps_before_audio"] is None else f"{s['steps_before_audio']:g}"
        if (
            s["preamble_ids"] is not None
        ):  # the schedule's own count next to it (deltas of several ids round up)
            steps += f" ({s['preamble_ids'] + s['nominal_steps']:g})"
        print(
            f"| {s['rate']:.0f} | {s['codec']} | {s['voice']} | {s['variant']} | {s['schedule']} | {steps} | "
            f"{_ms(s['ideal_ttfa_s'])} | {_ms(s['ttfa_p50_s'].get(levels[0]))} | {p95} | "
            f"{_x(s['p95_over_single_p50'])} | {runs} | {snr} |"
        )


def print_spread(summary: list[dict[str, Any]], plan: Plan, voice: str = "fixed") -> None:
    """Where the top level's p95 goes: client vs server, per run, CPU, GC pauses."""
    top = plan.concurrency[-1]
    print(
        f"| tok/s | codec | variant | schedule | p50 at 1 (client / server) | p95 at {top}: pooled / median run / "
        f"server | p95 / 1-stream p50: pooled / median run / server | CPU s per audio s at {top} | "
        "largest gen-2 GC pause |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for s in summary:
        if s["voice"] != voice or top not in s["ttfa_p95_s"]:
            continue
        cpu = s["cpu_s_per_audio_s"].get(top)
        print(
            f"| {s['rate']:.0f} | {s['codec']} | {s['variant']} | {s['schedule']} | "
            f"{_ms(s['ttfa_p50_s'][plan.concurrency[0]])} / {_ms(s['server_ttfa_p50_s'][plan.concurrency[0]])} | "
            f"{_ms(s['ttfa_p95_s'][top])} / {_ms(s['ttfa_p95_median_run_s'][top])} / "
            f"{_ms(s['server_ttfa_p95_s'][top])} | {_x(s['p95_over_single_p50'])} / "
            f"{_x(s['median_run_p95_over_single_p50'])} / {_x(s['server_p95_over_single_p50'])} | "
            f"{'-' if cpu is None else f'{cpu:.3f}'} | {_ms(s['gen2_gc_max_s'])} ms |"
        )


# ---------------------------------------------------------------------------------------------- main
def build_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    snr = (
        None
        if args.no_snr
        else SnrPlan(
            args.snr_config or ("demo" if quick else "released"),
            args.snr_tokens or (100 if quick else 200),
            args.snr_seeds or (1 if quick else 2),
        )
    )
    return Plan(
        rates=args.rates or ([200.0] if quick else [100.0, 200.0]),
        concurrency=args.concurrency or ([1, 8] if quick else [1, 8, 32]),
        schedules=args.schedules or list(PREFERENCES),
        voices=args.voices or (["fixed", "style"] if quick else list(VOICES)),
        free_voices=args.free_voices if args.free_voices is not None else ["fixed"],
        before_voices=args.before_voices if args.before_voices is not None else ([] if quick else ["fixed"]),
        single_streams=args.streams or (2 if quick else 5),
        min_streams=args.min_streams or (8 if quick else 16),
        repeats=args.repeats or (1 if quick else 3),
        codec=args.codec,
        text=args.text or (QUICK_TEXT if quick else TEXT),
        stagger_s=args.stagger_s,
        prebuffers_s=[ms / 1000.0 for ms in args.prebuffers_ms],
        snr=snr,
        sample_rate=args.sample_rate,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    def floats(s: str) -> list[float]:
        return [float(x) for x in s.split(",") if x]

    def ints(s: str) -> list[int]:
        return [int(x) for x in s.split(",") if x]

    def names(choices: tuple[str, ...] | list[str]):
        def parse(s: str) -> list[str]:
            out = [x for x in s.split(",") if x]
            bad = [x for x in out if x not in choices]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown {bad}; accepted: {', '.join(choices)}")
            return out

        return parse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="200 tok/s, 1 and 8 streams, fixed and style (~2 min)"
    )
    parser.add_argument(
        "--rates", type=floats, default=None, help="engine tokens/s per stream (default 100,200)"
    )
    parser.add_argument(
        "--concurrency", type=ints, default=None, help="levels (default 1,8,32); the first is the base"
    )
    parser.add_argument("--schedules", type=names(PREFERENCES), default=None)
    parser.add_argument(
        "--voices", type=names(list(VOICES)), default=None, help="voices with the servers' codec"
    )
    parser.add_argument(
        "--free-voices",
        type=names(list(VOICES)),
        default=None,
        help="voices with the free codec (default fixed; empty: none)",
    )
    parser.add_argument(
        "--before-voices",
        type=names(list(VOICES)),
        default=None,
        help="voices also served without the first-audio techniques (default fixed; --quick: none)",
    )
    parser.add_argument("--streams", type=int, default=None, help="sequential streams at concurrency 1")
    parser.add_argument("--min-streams", type=int, default=None, help="streams per level above 1")
    parser.add_argument(
        "--repeats", type=int, default=None, help="runs per cell above concurrency 1 (default 3)"
    )
    parser.add_argument("--text", default=None)
    parser.add_argument("--stagger-s", type=float, default=0.5, help="spread of a level's first requests")
    parser.add_argument("--prebuffers-ms", type=floats, default=[0.0, 100.0], help="client prebuffers")
    parser.add_argument("--snr-config", choices=("released", "demo"), default=None)
    parser.add_argument("--snr-tokens", type=int, default=None)
    parser.add_argument("--snr-seeds", type=int, default=None)
    parser.add_argument("--no-snr", action="store_true")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="TTS_DEVICE of the servers")
    parser.add_argument(
        "--codec",
        choices=("demo", "released"),
        default="demo",
        help="the servers' BiCodec/AP-BWE: the demo checkpoint's, or released sizes (random weights)",
    )
    parser.add_argument(
        "--sample-rate",
        type=int,
        choices=(8000, 16000, 22050, 24000, 44100, 48000),
        default=16000,
        help="the streams' output rate (48000: with AP-BWE super-resolution)",
    )
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--docs", action="store_true", help="draw the plot into docs/img/ttfa.png (committed)"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    plan = build_plan(args)
    started, load_at_start = time.perf_counter(), os.getloadavg()
    from core.demo.checkpoint import build_demo_checkpoint

    model_dir = build_demo_checkpoint(DEMO_DIR, seed=0)
    with tempfile.TemporaryDirectory(prefix="bench-ttfa-") as tmp:
        servers = spawn_servers(model_dir, Path(tmp), plan.servers(), args.device, args.codec)
        try:
            wait_ready(list(servers.values()))
            settings = httpx.get(f"{next(iter(servers.values())).url}/bench/engine", timeout=30).json()[
                "settings"
            ]
            rows = asyncio.run(run_plan(servers, plan))
            gc_ms = asyncio.run(forced_gc_ms(next(iter(servers.values()))))
        finally:
            for server in servers.values():
                stop_server(server)
    load_after_serving = os.getloadavg()
    snr = first_boundary_snr(plan.snr, plan.schedules) if plan.snr else {}
    summary = summarise(rows, snr)
    env = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs)",
        "python": platform.python_version(),
        "settings": settings,
        "load_avg_at_start": [round(x, 2) for x in load_at_start],
        "load_avg_after_serving": [round(x, 2) for x in load_after_serving],
        "forced_full_gc_ms": gc_ms,
        "wall_s": round(time.perf_counter() - started, 1),
        "quick": args.quick,
        "device": args.device,
        "codec": args.codec,
    }
    print(
        f"\nTTFA: demo checkpoint ({args.codec} codecs, {args.device}), paced engine; {env['machine']}; load avg {load_at_start[0]:.2f} at start, "
        f"{load_after_serving[0]:.2f} after serving; text {len(plan.text)} chars; stagger {plan.stagger_s} s\n"
    )
    print_summary(summary, plan)
    print(
        f"\nThe {plan.concurrency[-1]}-stream spread, voice fixed (client TTFA includes the load generator's own "
        "delays on this shared box; server: request in -> first audio handed to the server):\n"
    )
    print_spread(summary, plan)
    print(
        f"\nOne forced full GC collection on the bench server: {gc_ms['before']} ms with the start-up heap in reach "
        f"(before), {gc_ms['now']} ms with it frozen after warm-up (now)"
    )
    if snr:
        assert plan.snr is not None  # snr is measured only with an SNR plan
        print(
            f"\nSNR: first second vs the offline decode, {plan.snr.config} codec size, random weights (pessimistic), "
            f"worst of {plan.snr.seeds} seeds, {plan.snr.tokens} tokens"
        )
    print(f"\nTotal wall time {env['wall_s']:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"env": env, "plan": asdict(plan), "summary": summary, "snr": snr, "rows": rows}
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    if not args.no_plot:
        from bench.plot import draw_ttfa

        path = ROOT / "docs" / "img" / "ttfa.png" if args.docs else args.out.with_suffix(".png")
        draw_ttfa(result, path)
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
