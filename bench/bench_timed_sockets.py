"""Voice-agent sockets under load with word timestamps on and off: what timing costs the listeners.

    PYTHONPATH=. .venv/bin/python bench/bench_timed_sockets.py [--streams 32] [--transport ws,cartesia]
        [--rounds 2] [--out bench/results/timed_sockets/RATE.json]

One server with the device stand-in (bench/standin, h100-tf32: the engine and the codec cost modelled time
on one timeline), then, per round and transport: `--streams` sockets at once speaking a ~11 s sentence a word at a
time (`bench/ws_speakers.py`: the messages Pipecat and LiveKit send), without timestamps and with them, alternated.
Per variant: first audio (from the first message sent, p50 / p95), streams that ran dry after first audio with a
100 ms prebuffer, and the timing messages received; then with / without as ratios in the same round. ElevenLabs'
multi-stream-input always carries its alignment (its clients read it from every audio message), so it has no
"without": `elevenlabs` runs once per round beside the native socket's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_standin_load import TEXT, start  # noqa: E402
from bench.harness import write_results  # noqa: E402
from bench.loadgen import percentile  # noqa: E402
from bench.ws_speakers import run_socket_level  # noqa: E402


def summarise(transport: str, timestamps: bool, level: Any) -> dict:
    heard = [h for h in level.heard if h.error is None]
    first = [h.first_audio_s for h in heard if h.first_audio_s is not None]
    p95 = percentile(first, 95)  # None only where no stream heard audio
    return {
        "transport": transport,
        "timestamps": timestamps,
        "streams": len(level.heard),
        "failed": level.failed,
        "errors": sorted({h.error for h in level.heard if h.error})[:3],
        "first_audio_ms_p50": round(statistics.median(first) * 1000, 1) if first else None,
        "first_audio_ms_p95": round(p95 * 1000, 1) if p95 is not None else None,
        "streams_with_underruns": sum(1 for h in heard if h.underruns),
        "underrun_s": round(sum(h.underrun_s for h in heard), 3),
        "timing_messages": sum(h.timing_messages for h in heard),
        "audio_s": round(level.audio_s, 1),
    }


async def measure(
    url: str, streams: int, transports: list[str], rounds: int, sample_rate: int = 16_000
) -> list[dict]:
    rows = []
    for round_index in range(rounds):
        for transport in transports:
            variants = (True,) if transport == "elevenlabs" else (False, True)
            for timestamps in variants:
                level = await run_socket_level(
                    url,
                    transport,
                    TEXT,
                    concurrency=streams,
                    streams=streams,
                    timestamps=timestamps,
                    sample_rate=sample_rate,
                )
                row = summarise(transport, timestamps, level) | {"round": round_index}
                rows.append(row)
                print(json.dumps(row), flush=True)
                await asyncio.sleep(
                    1.0
                )  # the admission ramp's window: each level starts on a device seen idle
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| round | transport | timestamps | streams | failed | first audio p50 / p95 (ms) | streams that ran dry "
        "(100 ms prebuffer) | timing messages | p95 with / without |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = "-"
        if row["timestamps"] and row["transport"] != "elevenlabs":
            base = next(
                (
                    r
                    for r in rows
                    if r["round"] == row["round"]
                    and r["transport"] == row["transport"]
                    and not r["timestamps"]
                ),
                None,
            )
            if base and base["first_audio_ms_p95"] and row["first_audio_ms_p95"]:
                ratio = f"{row['first_audio_ms_p95'] / base['first_audio_ms_p95']:.2f}"
        lines.append(
            f"| {row['round']} | {row['transport']} | {'on' if row['timestamps'] else 'off'} | "
            f"{row['streams']} | {row['failed']} | {row['first_audio_ms_p50']} / {row['first_audio_ms_p95']} | "
            f"{row['streams_with_underruns']} | {row['timing_messages']} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cost-model", type=Path, default=ROOT / "bench" / "cost_models" / "h100-tf32.json")
    p.add_argument(
        "--streams", type=int, default=32, help="sockets at once (the admission ramp admits 32 at once)"
    )
    p.add_argument("--transport", default="ws,cartesia,elevenlabs")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--sample-rate",
        type=int,
        default=16_000,
        choices=(8_000, 16_000, 22_050, 24_000, 44_100),
        help="the sockets' pcm rate (above 16 kHz through AP-BWE's windows: the stand-in's sr_ms)",
    )
    p.add_argument("--out", type=Path, default=None, help="default bench/results/timed_sockets/RATE.json")
    args = p.parse_args()
    args.out = args.out or ROOT / "bench" / "results" / "timed_sockets" / f"{args.sample_rate}.json"
    log = Path(tempfile.gettempdir()) / "tts-timed-sockets-server.log"
    # One agent call holds one socket: no per-key or per-address socket cap (every stream is the anonymous key).
    proc, url = start(
        args.cost_model,
        log,
        extra_env={"TTS_WS_MAX_CONNECTIONS_PER_KEY": "0", "TTS_WS_MAX_UNAUTHENTICATED_PER_ADDRESS": "0"},
    )
    try:
        rows = asyncio.run(
            measure(url, args.streams, args.transport.split(","), args.rounds, args.sample_rate)
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(table(rows))
    write_results(
        args.out,
        {
            "cost_model": args.cost_model.name,
            "streams": args.streams,
            "sample_rate": args.sample_rate,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
