"""CPU of the API path per second of audio, with a free codec: what one API process (one GIL) spends on parsing,
guards, framing, encoding and sending while the models cost nothing.

    PYTHONPATH=. .venv/bin/python bench/bench_host_path.py [--streams 32] [--concurrency 32,64] [--format pcm,wav]
        [--sample-rate 16000,48000] [--transport http,ws,elevenlabs,cartesia,ws+whole] [--timestamps] [--deflate] [--rounds 1]
        [--tokens-per-s 75] [--stream-interval 4] [--profile bench/results/host_path/profile.txt]
        [--out bench/results/host_path/host_path.json]
    .venv-vllm/bin/python bench/bench_host_path.py --engine vllm ...   # the product's vLLM engine instead

Serves the product app (`bench/serve_paced.py`: the demo checkpoint, the paced engine at `--tokens-per-s` per
stream handing out `--stream-interval` ids per delta as vLLM's stream_interval does) with BiCodec's decode swapped
for `FreeCodec` (quiet noise of the exact length, `POST /bench/variant {"codec": "free"}`; both the pipeline's and
the codec scheduler's decode calls), then runs `bench/loadgen.py` levels of streaming HTTP requests and divides the
server process's CPU seconds (`/proc/PID/task/*/schedstat`: every thread, nanoseconds; psutil's 10 ms ticks stay in
the JSON as `psutil_cpu_s`; the event-loop thread's share beside it) by the audio seconds served. The service paces
each stream to real time (TTS_STREAM_MAX_AHEAD_S), so a level lasts about one request's audio.

`--transport` adds the sockets voice agents speak (`bench/ws_speakers.py`: native `ws`, ElevenLabs'
multi-stream-input `elevenlabs`, `cartesia`; pcm 16 kHz, the text a word at a time) to the same server, every
transport in turn, `--rounds` times, with each mean also as a ratio to HTTP pcm's at the same concurrency (one
run: the machine's background load is shared). Modifiers: `+ts` word timestamps (`--timestamps` adds `ws+ts`,
`cartesia+ts`; ElevenLabs always aligns), `+deflate` permessage-deflate (`--deflate` adds every socket with it:
Pipecat's clients offer it and uvicorn accepts it), `+whole` the text in one message instead of a word at a time.
`http+speed`: HTTP with every request asking for `--speed` (1.1), which the audio chain time-stretches (WSOLA).
`BENCH_INLINE_TIMINGS=1` in the environment (an experiment) runs the timestamp aligner's steps on the event loop
instead of a worker thread: the difference is what the thread hop costs.
Also printed: the same less the
idle server's CPU per wall second, and a fit CPU = a x wall + b x audio per format (b: the cost at the margin). The
engine's own bookkeeping stays in the figure (vLLM's output handling lives in the API process too), but the stand-in's
is far cheaper than vLLM's: `bench/bench_vllm_output.py` measures vLLM's (~10-12 us per generated id plus ~350 us per
engine step on this CPU), and docs/benchmarks.md adds the two. `--engine vllm` (run with `.venv-vllm`) serves the
product's own engine instead, vLLM on CPU with the demo checkpoint's LLM (its engine core is another process, not
counted): the API process then pays vLLM's output path itself. On a CPU that engine makes far fewer ids per second
than an H100, so streams run slower than real time and each level's wall time stretches; the figure per audio
second still counts every id's and every delta's work, but less of the pacing's.
`--profile` profiles the event-loop thread (cProfile on CPU time) during the levels only, writes the top functions
and a table per stage (`STAGES`; cProfile inflates code that calls many builtins, so read it as a map, and
`bench/bench_host_stages.py` for the synchronous stages' true cost). The goal: under 1.5 ms per second of
audio; the cost model's `host_ms.per_audio_second` is this figure.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.flood_client import server_cpu_s  # noqa: E402
from bench.harness import start_server  # noqa: E402
from bench.loadgen import LevelSpec, run_level, summarise  # noqa: E402
from bench.ws_speakers import WS_TRANSPORTS, run_socket_level  # noqa: E402
from shared.settings import FIELDS  # noqa: E402

SENTENCE = (
    "The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun while the children "
    "play by the river and the old miller counts his sacks of flour. "
)  # ~11 s of audio


def serve(port: int, out: Path | None, tokens_per_s: float, interval: int, engine: str = "paced") -> None:
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
    if os.environ.get(
        "BENCH_INLINE_TIMINGS"
    ):  # an experiment: what the aligner's thread hop per audio piece costs
        from services.pipeline.synthesis import SynthesisJob

        async def inline_timings(self: SynthesisJob, step: Any, *args: Any) -> None:
            event = step(*args)  # on the loop: no worker thread, no GIL hand-off (blocks the loop meanwhile)
            if event is not None:
                await self.queue.put(event)

        SynthesisJob._timings = inline_timings  # type: ignore[method-assign]
    # What the codec scheduler calls; checked here so a FreeCodec that forwards it to the real model fails loudly.
    assert "decode_padded" in FreeCodec.__dict__, (
        "FreeCodec must not forward decode_padded to the real decoder"
    )
    # Deltas as the product's vLLM hands them out (TTS_LLM_STREAM_INTERVAL ids per delta after the first).
    app = build_app(
        None
        if engine == "vllm"
        else PaceConfig(tokens_per_s=tokens_per_s, tick_s=0.0, stream_interval=interval)
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # uvicorn re-raises it after its graceful shutdown
    # CPU time, not wall time: a coroutine suspended while the loop waits in epoll would otherwise be charged
    # the wait (cProfile sees no return from a suspended async generator).
    profiler = cProfile.Profile(time.thread_time)
    if out is not None:

        async def toggle(on: bool) -> dict:  # on the event loop's thread, which is the one profiled
            profiler.enable() if on else profiler.disable()
            return {"profiling": on}

        app.add_api_route("/bench/profile", toggle, methods=["POST"], include_in_schema=False)
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
    profiler.dump_stats(str(out.with_suffix(".prof")))  # for pstats: callers, other sort orders


# The API path's stages, by the file a function lives in (first match wins). A function outside them (numpy, a
# builtin, most of the standard library) is charged to its callers, in proportion to the time each call took.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("engine stand-in (not the API path)", ("bench/",)),
    ("parsing", ("core/tokens.py",)),
    ("guards", ("core/guards/", "services/pipeline/chunk_guards.py", "services/pipeline/spoken_tail.py")),
    (
        "decode planning + codec scheduler",
        ("core/streaming.py", "services/device/", "concurrent/futures/", "threading.py"),
    ),
    (
        "audio chain (crossfade, resample, frames)",
        ("audio/crossfade.py", "audio/resample.py", "audio/reframe.py", "services/pipeline/audio_output.py"),
    ),
    ("encoding", ("audio/encoders.py", "audio/pcm.py", "audio/wav.py", "audio/mulaw.py", "/av/")),
    ("alignment (timestamps)", ("core/align/", "services/pipeline/timestamps.py")),
    ("pipeline glue (synthesis job, queues)", ("services/pipeline/", "asyncio/queues.py")),
    (
        "socket dialects; JSON and base64 anywhere",
        ("api/protocols/", "api/protocols/native/requests.py", "/json/", "base64.py"),
    ),
    (
        "socket session, outbox",
        (
            "services/sessions/",
            "api/ws_connection.py",
            "api/socket_guard.py",
            "api/protocols/native/socket.py",
        ),
    ),
    ("socket framing, permessage-deflate", ("/websockets/", "/wsproto/", "/uvicorn/protocols/websockets/")),
    (
        "HTTP: ASGI, middleware, framing, sending",
        (
            "api/",
            "/starlette/",
            "/fastapi/",
            "/uvicorn/",
            "/anyio/",
            "/h11/",
            "/httptools/",
            "services/access/",
            "services/usage/",
        ),
    ),
    ("metrics", ("/prometheus_client/", "shared/metrics.py")),
    ("logging", ("/logging/", "shared/logging")),
    ("event loop (tasks, futures, timers)", ("asyncio/", "/uvloop/")),
)


def stage_of(filename: str) -> str | None:
    filename = filename.removeprefix(str(ROOT) + "/")  # a checkout under a folder named like a stage's part
    for name, parts in STAGES:
        if any(part in filename for part in parts):
            return name
    return None


def stage_table(prof: Path) -> dict[str, float]:
    """Own CPU seconds of the profiled thread per stage (`STAGES`), ungrouped functions charged to callers."""
    stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    memo: dict[Any, dict[str, float]] = {}

    def shares(func: Any, depth: int = 0) -> dict[str, float]:
        """Where one second of `func`'s own time belongs, as fractions per stage."""
        if func in memo:
            return memo[func]
        stage = stage_of(func[0])
        if stage is not None:
            memo[func] = {stage: 1.0}
            return memo[func]
        memo[func] = {"other": 1.0}  # a cycle or a dead end
        callers = stats[func][4] if func in stats else {}
        weights = {c: v[2] for c, v in callers.items() if v[2] > 0}
        total = sum(weights.values())
        if depth > 40 or total <= 0:
            return memo[func]
        out: dict[str, float] = {}
        for caller, weight in weights.items():
            for name, part in shares(caller, depth + 1).items():
                out[name] = out.get(name, 0.0) + part * weight / total
        memo[func] = out
        return out

    table: dict[str, float] = {}
    for func, (_cc, _nc, tottime, _ct, _callers) in stats.items():
        for name, part in shares(func).items():
            table[name] = table.get(name, 0.0) + tottime * part
    return table


def start(
    profile: Path | None, tokens_per_s: float, interval: int, engine: str = "paced"
) -> tuple[subprocess.Popen, str]:
    # One agent call holds one socket: no per-key or per-address socket cap (all streams share the anonymous key).
    env = {
        "TTS_AUTH_ENABLED": "false",
        "TTS_DEVICE": "cpu",
        "TTS_WS_MAX_CONNECTIONS_PER_KEY": "0",
        "TTS_WS_MAX_UNAUTHENTICATED_PER_ADDRESS": "0",
        "TTS_DEMO_DIR": str(Path(tempfile.gettempdir()) / "tts-host-path-demo"),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
    }
    if engine == "vllm":  # as the vLLM tier runs it on CPU; the stand-in's pace does not apply
        # On this CPU 64 streams share ~200 ids/s: a stream's 11 s of speech takes minutes, past the 120 s deadline.
        env.update(
            {
                "TTS_ENGINE": "vllm",
                "TTS_LLM_STREAM_INTERVAL": str(interval),
                "VLLM_CPU_KVCACHE_SPACE": "1",
                "TTS_GENERATION_TIMEOUT_S": "900",
                "VLLM_ENABLE_V1_MULTIPROCESSING": "1",
                "TOKENIZERS_PARALLELISM": "false",
            }
        )
    log = Path(tempfile.gettempdir()) / "tts-host-path-server.log"
    server = start_server(
        lambda port: [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            str(port),
            str(profile or ""),
            str(tokens_per_s),
            str(interval),
            engine,
        ],
        env,
        log,
    )
    proc, url = server.process, server.url
    httpx.post(f"{url}/bench/variant", json={"codec": "free"}, timeout=10).raise_for_status()
    return proc, url


def idle_cpu_rate(pid: int, seconds: float = 3.0, main_thread_only: bool = False) -> float:
    """The server's CPU seconds per wall second while it serves nothing (threads, timers, the paced engine); with
    `main_thread_only`, the event loop's thread's."""
    t0, c0 = time.perf_counter(), server_cpu_s(pid, main_thread_only=main_thread_only)
    time.sleep(seconds)
    return (server_cpu_s(pid, main_thread_only=main_thread_only) - c0) / (time.perf_counter() - t0)


def fit(rows: list[dict]) -> tuple[float, float] | None:
    """Least squares CPU = a x wall + b x audio over a format's levels: (a CPU s per wall s, b CPU s per audio s)."""
    import numpy as np

    if len(rows) < 2:
        return None
    x = np.array([[r["wall_s"], r["audio_s"]] for r in rows])
    y = np.array([r["server_cpu_s"] for r in rows])
    (a, b), *_ = np.linalg.lstsq(x, y, rcond=None)
    return float(a), float(b)


async def measure(
    url: str,
    pid: int,
    streams: int,
    levels: list[int],
    formats: list[str],
    idle: float = 0.0,
    repeat: int = 3,
    speed: float | None = None,
    rates: tuple[int, ...] = (16000,),
) -> list[dict]:
    """Streaming HTTP at every format, sample rate and level; `speed`: every request asks for it (the audio is
    time-stretched). 48 kHz goes through AP-BWE's windows (free too: `bench.ideal_stream.FreeSR`)."""
    rows = []
    for fmt, rate in ((f, r) for f in formats for r in rates):
        for conc in levels:
            spec = LevelSpec(
                base_url=url,
                concurrency=conc,
                text=SENTENCE * repeat,
                sample_rate=rate,
                stagger_s=0.0,
                requests_per_worker=max(1, streams // conc),
                audio_format=fmt,
                speed=speed,
            )
            row = await measured_level(url, pid, spec)
            rows.append(finish_row(row, "http" if speed is None else "http+speed", fmt, idle))
    return rows


async def measured_level(url: str, pid: int, spec: LevelSpec) -> dict[str, Any]:
    """One `loadgen` level of streaming HTTP requests, summarised, with the server's CPU over it: every thread
    (`server_cpu_s`, schedstat; psutil's ticks as `psutil_cpu_s`) and the event loop's (`loop_cpu_s`), and the
    audio the server served (`audio_s`; the client's count as `client_audio_s`)."""
    cpu0, loop0, audio0 = server_cpu_s(pid), server_cpu_s(pid, main_thread_only=True), served_audio_s(url)
    row = summarise(await run_level(spec, server_pid=pid))
    row["psutil_cpu_s"], row["server_cpu_s"] = row["server_cpu_s"], server_cpu_s(pid) - cpu0
    row["loop_cpu_s"] = server_cpu_s(pid, main_thread_only=True) - loop0
    # The server's own count: the client's reads are s16le only for pcm and wav, not for mp3 or opus.
    row["client_audio_s"], row["audio_s"] = row["audio_s"], served_audio_s(url) - audio0
    return row


def served_audio_s(url: str) -> float:
    """Seconds of audio the server has finished serving (`veena3_tts_audio_duration_seconds_sum`)."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("veena3_tts_audio_duration_seconds_sum"):
            return float(line.split()[-1])
    return 0.0


def finish_row(row: dict, transport: str, fmt: str, idle: float) -> dict:
    row["transport"], row["format"] = transport, fmt
    audio = row["audio_s"]
    row["cpu_ms_per_audio_s"] = 1000 * row["server_cpu_s"] / audio if audio else None
    row["loop_ms_per_audio_s"] = 1000 * row["loop_cpu_s"] / audio if audio else None  # the event-loop thread
    # Less what the process burns per wall second anyway: the API path's own cost per audio second.
    row["idle_cpu_per_wall_s"] = idle
    row["marginal_ms_per_audio_s"] = (
        1000 * (row["server_cpu_s"] - idle * row["wall_s"]) / audio if audio else None
    )
    return row


async def measure_socket(
    url: str, pid: int, transport: str, streams: int, levels: list[int], idle: float = 0.0, repeat: int = 3
) -> list[dict]:
    """`transport` is one of WS_TRANSPORTS, `+ts` for word timestamps, `+deflate` for permessage-deflate, `+whole`
    for the text in one message."""
    name, *extras = transport.split("+")
    rows = []
    for conc in levels:
        cpu0, loop0, t0 = server_cpu_s(pid), server_cpu_s(pid, main_thread_only=True), time.process_time()
        level = await run_socket_level(
            url,
            name,
            SENTENCE * repeat,
            concurrency=conc,
            streams=max(streams, conc),
            timestamps="ts" in extras,
            deflate="deflate" in extras,
            whole="whole" in extras,
        )
        failed = [h.error for h in level.heard if h.error]
        if failed:
            print(f"{transport}: {len(failed)} failed streams, first: {failed[0]}", file=sys.stderr)
        row = {
            "concurrency": conc,
            "streams": len(level.heard),
            "failed": level.failed,
            "wall_s": level.wall_s,
            "audio_s": level.audio_s,
            "server_cpu_s": server_cpu_s(pid) - cpu0,
            "loop_cpu_s": server_cpu_s(pid, main_thread_only=True) - loop0,
            "client_cpu_s": time.process_time() - t0,
            "messages_per_audio_s": sum(h.messages for h in level.heard) / level.audio_s
            if level.audio_s
            else None,
            "timing_messages": sum(h.timing_messages for h in level.heard),
        }
        rows.append(finish_row(row, transport, "pcm", idle))
    return rows


async def measure_all(
    url: str,
    pid: int,
    transports: list[str],
    streams: int,
    levels: list[int],
    formats: list[str],
    idle: float,
    repeat: int,
    rounds: int,
    speed: float = 1.1,
    rates: tuple[int, ...] = (16000,),
) -> list[dict]:
    """Every transport in turn, `rounds` times over (alternated: they share the machine's background load)."""
    rows = []
    for round_no in range(rounds):
        for transport in transports:
            if transport in ("http", "http+speed"):
                got = await measure(
                    url,
                    pid,
                    streams,
                    levels,
                    formats,
                    idle,
                    repeat,
                    speed=speed if transport == "http+speed" else None,
                    rates=rates,
                )
            else:
                got = await measure_socket(url, pid, transport, streams, levels, idle, repeat)
            for row in got:
                row["round"] = round_no
            rows += got
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    """Per transport, format and concurrency: the runs' CPU ms per audio s, their mean, and the mean's ratio to HTTP
    pcm's mean at that concurrency (the same server, the same run)."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        if r["cpu_ms_per_audio_s"] is not None:
            key = (r["transport"], r["format"], r.get("sample_rate", 16000), r["concurrency"])
            groups.setdefault(key, []).append(r["cpu_ms_per_audio_s"])
    out = []
    for (transport, fmt, rate, conc), runs in groups.items():
        base = groups.get(("http", "pcm", 16000, conc))
        mean = sum(runs) / len(runs)
        out.append(
            {
                "transport": transport,
                "format": fmt,
                "sample_rate": rate,
                "concurrency": conc,
                "runs_ms_per_audio_s": runs,
                "mean_ms_per_audio_s": mean,
                "ratio_to_http_pcm": mean / (sum(base) / len(base)) if base else None,
            }
        )
    return out


def main() -> int:
    if len(sys.argv) == 7 and sys.argv[1] == "--serve":
        serve(
            int(sys.argv[2]),
            Path(sys.argv[3]) if sys.argv[3] else None,
            float(sys.argv[4]),
            int(sys.argv[5]),
            sys.argv[6],
        )
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--streams", type=int, default=32, help="requests per level (at least one per concurrent stream)"
    )
    p.add_argument("--concurrency", default="32,64")
    p.add_argument("--format", default="pcm,wav", help="HTTP's formats (the sockets ask for pcm)")
    p.add_argument(
        "--sample-rate",
        default="16000",
        help="HTTP's sample rates, comma-separated (48000: through AP-BWE's windows, the model free too)",
    )
    p.add_argument(
        "--transport",
        default="http",
        help=f"comma-separated: http, http+speed (every request asks for --speed: a time-stretch) and "
        f"any of {', '.join(WS_TRANSPORTS)}, each with any of +ts (word timestamps), +deflate "
        "(permessage-deflate), +whole (the text in one message)",
    )
    p.add_argument("--speed", type=float, default=1.1, help="the speed http+speed asks for")
    p.add_argument(
        "--timestamps",
        action="store_true",
        help="also the native and Cartesia sockets with word timestamps (ws+ts, cartesia+ts)",
    )
    p.add_argument(
        "--deflate",
        action="store_true",
        help="also every socket with permessage-deflate (name+deflate), as Pipecat's clients offer it",
    )
    p.add_argument("--rounds", type=int, default=1, help="times every transport runs, alternated")
    p.add_argument("--profile", type=Path, default=None)
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="the sentence's copies per request (~11 s of audio each; a short run on a shared machine: 1)",
    )
    p.add_argument(
        "--tokens-per-s",
        type=float,
        default=75.0,
        help="the engine's ids per second per stream (50 semantic ids are one second of audio)",
    )
    p.add_argument(
        "--stream-interval",
        type=int,
        default=None,
        help="ids per engine delta after the first; default TTS_LLM_STREAM_INTERVAL's default",
    )
    p.add_argument(
        "--engine",
        choices=("paced", "vllm"),
        default="paced",
        help="paced: the stand-in (--tokens-per-s); vllm: the product's vLLM engine (run with .venv-vllm)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "host_path" / "host_path.json")
    args = p.parse_args()
    interval = args.stream_interval or FIELDS["llm_stream_interval"].default
    proc, url = start(args.profile, args.tokens_per_s, interval, args.engine)
    try:
        formats = args.format.split(",")
        transports = args.transport.split(",")
        if args.timestamps:
            transports += [f"{t}+ts" for t in ("ws", "cartesia") if t in transports]
        if args.deflate:
            transports += [f"{t}+deflate" for t in transports if not t.startswith("http")]
        unknown = {
            t
            for t in transports
            if t not in ("http", "http+speed")
            and (
                t.split("+")[0] not in WS_TRANSPORTS
                or not set(t.split("+")[1:]) <= {"ts", "deflate", "whole"}
            )
        }
        if unknown:
            p.error(f"unknown transport(s): {', '.join(sorted(unknown))}")
        # warm: first-request costs stay out
        rates = tuple(int(r) for r in args.sample_rate.split(","))
        asyncio.run(measure_all(url, proc.pid, transports, 1, [1], formats, 0.0, 1, 1, args.speed, rates))
        idle = idle_cpu_rate(proc.pid)
        if args.profile:  # the levels only: start-up and warm-up stay out of the stage table
            httpx.post(f"{url}/bench/profile", params={"on": True}, timeout=10).raise_for_status()
        rows = asyncio.run(
            measure_all(
                url,
                proc.pid,
                transports,
                args.streams,
                [int(c) for c in args.concurrency.split(",")],
                formats,
                idle,
                args.repeat,
                args.rounds,
                args.speed,
                rates,
            )
        )
        if args.profile:
            httpx.post(f"{url}/bench/profile", params={"on": False}, timeout=10).raise_for_status()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    stages: dict[str, float] = {}
    if args.profile:
        audio = sum(r["audio_s"] for r in rows)
        stages = {
            k: 1000 * v / audio
            for k, v in sorted(stage_table(args.profile.with_suffix(".prof")).items(), key=lambda kv: -kv[1])
        }
        total = sum(stages.values())
        print("| stage (event-loop thread, under cProfile) | ms per audio s | share |")
        print("|---|---|---|")
        for name, ms in stages.items():
            print(f"| {name} | {ms:.3f} | {ms / total:.0%} |")
    print(f"idle server: {1000 * idle:.1f} ms CPU per wall second")
    print(
        "| round | transport | format | Hz | concurrency | streams | failed | audio s | wall s | server CPU s | "
        "CPU ms per audio s | of which event loop | less idle |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['round']} | {r['transport']} | {r['format']} | {r.get('sample_rate', 16000)} | "
            f"{r['concurrency']} | {r['streams']} | "
            f"{r['failed']} | {r['audio_s']:.1f} | {r['wall_s']:.2f} | {r['server_cpu_s']:.3f} | "
            f"{r['cpu_ms_per_audio_s'] or 0:.2f} | {r['loop_ms_per_audio_s'] or 0:.2f} | "
            f"{r['marginal_ms_per_audio_s'] or 0:.2f} |"
        )
    summary = ratios(rows)
    if len(transports) > 1 or len(rates) > 1:
        print(
            "| transport | format | Hz | concurrency | runs (CPU ms per audio s) | mean | ratio to HTTP pcm 16 kHz |"
        )
        print("|---|---|---|---|---|---|---|")
        for g in summary:
            ratio = "-" if g["ratio_to_http_pcm"] is None else f"{g['ratio_to_http_pcm']:.2f}"
            print(
                f"| {g['transport']} | {g['format']} | {g['sample_rate']} | {g['concurrency']} | "
                f"{', '.join(f'{v:.2f}' for v in g['runs_ms_per_audio_s'])} | {g['mean_ms_per_audio_s']:.2f} | "
                f"{ratio} |"
            )
    fits = {}
    for fmt in formats:
        http = [
            r
            for r in rows
            if r["format"] == fmt and r["transport"] == "http" and r.get("sample_rate") == 16000
        ]
        ab = fit(http) if len({r["concurrency"] for r in http}) > 1 else None  # one level: no slope to fit
        if ab is not None:
            fits[fmt] = {"cpu_s_per_wall_s": ab[0], "ms_per_audio_s": 1000 * ab[1]}
            print(f"fit {fmt}: CPU = {ab[0]:.3f} x wall + {1000 * ab[1]:.2f} ms x audio s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "engine": args.engine,
                "tokens_per_s": args.tokens_per_s if args.engine == "paced" else None,
                "stream_interval": interval,
                "speed": args.speed,
                "idle_cpu_per_wall_s": idle,
                "fits": fits,
                "levels": rows,
                "transports": summary,
                "load_average": list(os.getloadavg()),
                "profiled_stages_ms_per_audio_s": stages or None,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
