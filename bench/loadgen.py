"""Load generator for the streaming TTS endpoint: concurrent WAV streams, timed on the client.

Each worker sends streaming `POST /v1/tts/generate` requests back to back; a level runs `concurrency` workers
whose starts are spread over `stagger_s` (a burst of simultaneous arrivals is a different, harsher test).
Per stream it records the time to the first audio byte and when each chunk of audio arrived (reads less
than `MERGE_S` apart are one chunk: the server sends a chunk as one body part, TCP may split it; the chunk
counts as arrived with its last read). Playback and underruns follow `services.usage.flow_monitor.StreamCadence`:
playback starts `prebuffer_s` after the first audio, and a chunk that lands after the audio received so far
has finished playing is an underrun.

Server-side figures for a level come from two snapshots around it: CPU seconds of the server process
(psutil, when its pid is known) and the `veena3_tts_stage_seconds` histogram from `/metrics`.

Library use: `await run_level(LevelSpec(...), server_pid=...)` -> `LevelResult`. Stand-alone, against any
running server (GPU or not):

    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:8000 --concurrency 1,4,16 [--sample-rate 48000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.usage.flow_monitor import StreamCadence  # noqa: E402

WAV_HEADER_BYTES = 44
MERGE_S = 0.005  # reads closer than this belong to one chunk
STAGE_METRIC = "veena3_tts_stage_seconds"
DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun."


@dataclass(frozen=True)
class LevelSpec:
    base_url: str
    concurrency: int
    text: str = DEFAULT_TEXT
    speaker: str = "fixed"
    sample_rate: int = 16000
    requests_per_worker: int = 1
    stagger_s: float = 0.5
    prebuffer_s: float = 0.0
    timeout_s: float = 300.0
    api_key: str | None = None
    latency: str | None = None  # the request's latency preference; None: the server's default
    audio_format: str = "wav"  # the cadence counts s16le bytes: only wav and pcm streams have meaningful gaps
    speed: float | None = None  # the request's `speed` (a time-stretch on the audio); None: the voice's own
    # The request's seed; None sends none, as most clients do: the server may then give the stream the exact first
    # chunk under load (a seeded stream keeps the schedule it asked for, so its audio is reproducible).
    seed: int | None = 0

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "text": self.text,
            "speaker": self.speaker,
            "stream": True,
            "format": self.audio_format,
            "sample_rate": self.sample_rate,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        if self.latency is not None:
            body["latency"] = self.latency
        if self.speed is not None:
            body["speed"] = self.speed
        return body


@dataclass
class StreamResult:
    request_id: str | None
    status: int
    error: str | None
    started: float  # perf_counter when the request was sent
    ttfb_s: float | None  # request sent -> first read holding audio samples
    wall_s: float
    audio_s: float
    reads: int
    # (seconds after the request was sent, audio seconds in the chunk), one entry per chunk
    arrivals: list[tuple[float, float]] = field(default_factory=list)
    cadence: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None

    @property
    def gaps(self) -> list[float]:
        times = [t for t, _ in self.arrivals]
        return [b - a for a, b in zip(times, times[1:], strict=False)]


@dataclass
class LevelResult:
    spec: LevelSpec
    wall_s: float
    streams: list[StreamResult]
    cpu_s: float | None  # server process CPU seconds during the level
    stages: dict[str, dict[str, float]]  # stage -> {"seconds", "calls"} during the level


async def stream_once(client: httpx.AsyncClient, spec: LevelSpec) -> StreamResult:
    """One streaming request; every read is timed as it arrives."""
    bytes_per_second = 2.0 * spec.sample_rate  # mono s16le
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
    started = time.perf_counter()
    ttfb = None
    audio_bytes = 0
    header_left = WAV_HEADER_BYTES
    arrivals: list[tuple[float, float]] = []
    reads = 0
    status, error, request_id = 0, None, None
    try:
        async with client.stream(
            "POST",
            f"{spec.base_url}/v1/tts/generate",
            json=spec.body(),
            headers=headers,
            timeout=spec.timeout_s,
        ) as response:
            status = response.status_code
            request_id = response.headers.get("x-request-id")
            if status != 200:
                error = (await response.aread())[:300].decode(errors="replace")
            else:
                async for data in response.aiter_raw():
                    now = time.perf_counter()
                    reads += 1
                    skip = min(header_left, len(data))
                    header_left -= skip
                    n = len(data) - skip
                    if n <= 0:
                        continue
                    audio_bytes += n
                    seconds = n / bytes_per_second
                    if ttfb is None:
                        ttfb = now - started
                    if arrivals and now - started - arrivals[-1][0] < MERGE_S:
                        arrivals[-1] = (now - started, arrivals[-1][1] + seconds)
                    else:
                        arrivals.append((now - started, seconds))
    except (httpx.HTTPError, OSError) as exc:
        error = f"{exc.__class__.__name__}: {exc}"
    wall = time.perf_counter() - started
    cadence = StreamCadence(prebuffer_s=spec.prebuffer_s, observe_metrics=False)
    for at, seconds in arrivals:
        cadence.on_chunk(seconds, at=at)
    return StreamResult(
        request_id,
        status,
        error,
        started,
        ttfb,
        wall,
        audio_bytes / bytes_per_second,
        reads,
        arrivals,
        cadence.summary(),
    )


async def _worker(client: httpx.AsyncClient, spec: LevelSpec, delay: float, out: list[StreamResult]) -> None:
    await asyncio.sleep(delay)
    for _ in range(spec.requests_per_worker):
        out.append(await stream_once(client, spec))


def scrape_stages(base_url: str) -> dict[str, dict[str, float]]:
    """`veena3_tts_stage_seconds` sum and count per stage from /metrics (empty when unreachable)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(f"{base_url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != STAGE_METRIC:
            continue
        for sample in family.samples:
            stage = sample.labels.get("stage")
            if stage is None:
                continue
            if sample.name.endswith("_sum"):
                out.setdefault(stage, {})["seconds"] = sample.value
            elif sample.name.endswith("_count"):
                out.setdefault(stage, {})["calls"] = sample.value
    return out


def _stage_delta(before: dict, after: dict) -> dict[str, dict[str, float]]:
    delta = {}
    for stage, values in after.items():
        prev = before.get(stage, {})
        delta[stage] = {k: values.get(k, 0.0) - prev.get(k, 0.0) for k in ("seconds", "calls")}
    return delta


def _cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return t.user + t.system


async def run_level(spec: LevelSpec, server_pid: int | None = None) -> LevelResult:
    """Run one concurrency level to completion and snapshot the server around it."""
    stages_before = await asyncio.to_thread(scrape_stages, spec.base_url)
    cpu_before = _cpu_seconds(server_pid)
    results: list[StreamResult] = []
    limits = httpx.Limits(
        max_connections=spec.concurrency + 4, max_keepalive_connections=spec.concurrency + 4
    )
    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=spec.timeout_s) as client:
        step = spec.stagger_s / spec.concurrency if spec.concurrency > 1 else 0.0
        await asyncio.gather(*(_worker(client, spec, i * step, results) for i in range(spec.concurrency)))
    wall = time.perf_counter() - started
    cpu_after = _cpu_seconds(server_pid)
    stages_after = await asyncio.to_thread(scrape_stages, spec.base_url)
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return LevelResult(spec, wall, results, cpu, _stage_delta(stages_before, stages_after))


# ---------------------------------------------------------------------------------------------- summaries
def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


def summarise(level: LevelResult) -> dict[str, Any]:
    """One table row: client-side latency, gaps, underruns, server CPU and stage seconds."""
    ok = [s for s in level.streams if s.ok]
    ttfb = [s.ttfb_s for s in ok if s.ttfb_s is not None]
    gaps = [g for s in ok for g in s.gaps]
    audio = sum(s.audio_s for s in ok)
    row: dict[str, Any] = {
        "concurrency": level.spec.concurrency,
        "sample_rate": level.spec.sample_rate,
        "streams": len(level.streams),
        "failed": len(level.streams) - len(ok),
        "wall_s": level.wall_s,
        "audio_s": audio,
        "ttfb_p50_s": percentile(ttfb, 50),
        "ttfb_p95_s": percentile(ttfb, 95),
        "ttfb_p99_s": percentile(ttfb, 99),
        "gap_p50_s": percentile(gaps, 50),
        "gap_p99_s": percentile(gaps, 99),
        "gap_max_s": max(gaps) if gaps else None,
        "underruns": sum(s.cadence.get("underruns", 0) for s in ok),
        "underrun_s": sum(s.cadence.get("underrun_seconds", 0.0) for s in ok),
        "streams_with_underruns": sum(1 for s in ok if s.cadence.get("underruns")),
        "rtf_p50": percentile([s.wall_s / s.audio_s for s in ok if s.audio_s > 0], 50),
        "server_cpu_s": level.cpu_s,
        "cpu_s_per_audio_s": (level.cpu_s / audio) if (level.cpu_s is not None and audio) else None,
        "cores_per_stream": (level.cpu_s / level.wall_s / level.spec.concurrency) if level.cpu_s else None,
        "stages": {
            name: {**v, "s_per_audio_s": (v["seconds"] / audio) if audio else None}
            for name, v in level.stages.items()
        },
    }
    return row


def _print_rows(rows: list[dict[str, Any]]) -> None:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:.0f}"

    print("| conc | rate | streams | failed | TTFB p50/p95/p99 ms | gap p99 ms | underruns | CPU s/audio s |")
    print("|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        cpu = "-" if r["cpu_s_per_audio_s"] is None else f"{r['cpu_s_per_audio_s']:.3f}"
        print(
            f"| {r['concurrency']} | {r['sample_rate']} | {r['streams']} | {r['failed']} | "
            f"{ms(r['ttfb_p50_s'])}/{ms(r['ttfb_p95_s'])}/{ms(r['ttfb_p99_s'])} | {ms(r['gap_p99_s'])} | "
            f"{r['underruns']} in {r['streams_with_underruns']} | {cpu} |"
        )


async def _main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for concurrency in args.concurrency:
        spec = LevelSpec(
            base_url=args.url.rstrip("/"),
            concurrency=concurrency,
            text=args.text,
            speaker=args.speaker,
            sample_rate=args.sample_rate,
            requests_per_worker=args.requests_per_worker,
            stagger_s=args.stagger_s,
            prebuffer_s=args.prebuffer_ms / 1000.0,
            api_key=args.api_key,
        )
        rows.append(summarise(await run_level(spec, server_pid=args.pid)))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="server base URL")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16])
    parser.add_argument("--text", default=DEFAULT_TEXT)
    parser.add_argument("--speaker", default="fixed")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--requests-per-worker", type=int, default=2)
    parser.add_argument("--stagger-s", type=float, default=0.5)
    parser.add_argument("--prebuffer-ms", type=float, default=0.0)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--pid", type=int, default=None, help="server pid, for CPU seconds (same machine)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = asyncio.run(_main_async(args))
    _print_rows(rows)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()


__all__ = [
    "LevelResult",
    "LevelSpec",
    "StreamResult",
    "percentile",
    "run_level",
    "stream_once",
    "summarise",
    "asdict",
]
