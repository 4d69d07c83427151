"""A long reply (~29 s of audio) sent whole on the voice-agent sockets, on the device stand-in (a GPU's engine, far
ahead of playback, so the reply is paced): what the wire looks like to a framework that plays it as it comes.

    PYTHONPATH=. .venv/bin/python bench/bench_long_reply.py [--rounds 2] [--out bench/results/long_reply/h100-tf32.json]

Per socket (ElevenLabs stream-input with auto_mode and pcm_24000, as Pipecat connects; Cartesia's websocket with word
timestamps, as LiveKit does): first audio (ms from the text sent), the largest gap between audio messages inside the
reply (Pipecat ends a context silent for 3 s), the least audio the client held once 3 s had played (real-time
playback from the first audio), and words whose time arrived after the word had finished playing on that clock.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import websockets  # noqa: E402

from bench.bench_standin_load import start  # noqa: E402
from bench.harness import write_results  # noqa: E402

REPLY = (
    "So here is the whole story, told from the start. We left early in the morning, before the sun was up, and "
    "drove north along the coast for most of the day. The road was narrow, and the views were wide, and we stopped "
    "twice for coffee. By the evening we had reached the little harbour town where my aunt still lives, and she "
    "had cooked enough food for ten people. We ate, we talked, and then we slept for a very long time."
)
RATE = 24_000


async def elevenlabs(url: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]], float]:
    """Audio messages (arrival s, seconds of audio), words (arrival s, end s from the context start), text sent at."""
    path = (
        "/v1/text-to-speech/default/stream-input?output_format=pcm_24000&auto_mode=true&sync_alignment=true"
    )
    audio, words = [], []
    async with websockets.connect(url.replace("http", "ws") + path, max_size=None) as ws:
        await ws.send(json.dumps({"text": " "}))
        sent = time.monotonic()
        await ws.send(json.dumps({"text": REPLY + " "}))
        await ws.send(json.dumps({"text": ""}))
        word_end: float | None = None
        async for raw in ws:
            message = json.loads(raw)
            now = time.monotonic()
            if message.get("audio"):
                audio.append((now, len(base64.b64decode(message["audio"])) / 2 / RATE))
            alignment = message.get("alignment")
            if alignment:
                for char, start, length in zip(
                    alignment["chars"],
                    alignment["charStartTimesMs"],
                    alignment["charDurationsMs"],
                    strict=True,
                ):
                    if char.strip():
                        word_end = (start + length) / 1000
                    elif word_end is not None:
                        words.append((now, word_end))
                        word_end = None
            if message.get("isFinal"):
                if word_end is not None:
                    words.append((now, word_end))
                break
    return audio, words, sent


async def cartesia(url: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]], float]:
    body = {
        "model_id": "sonic-2",
        "voice": {"mode": "id", "id": "default"},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": RATE},
        "add_timestamps": True,
        "context_id": "long",
    }
    audio, words = [], []
    async with websockets.connect(url.replace("http", "ws") + "/tts/websocket", max_size=None) as ws:
        sent = time.monotonic()
        await ws.send(json.dumps({**body, "transcript": REPLY + " ", "continue": True}))
        await ws.send(json.dumps({**body, "transcript": "", "continue": False}))
        async for raw in ws:
            message = json.loads(raw)
            now = time.monotonic()
            if message.get("type") == "chunk" and message.get("data"):
                audio.append((now, len(base64.b64decode(message["data"])) / 2 / RATE))
            elif message.get("type") == "timestamps":
                words += [(now, end) for end in message["word_timestamps"]["end"]]
            elif message.get("type") in ("done", "error"):
                break
    return audio, words, sent


def summarise(
    socket: str, audio: list[tuple[float, float]], words: list[tuple[float, float]], sent: float
) -> dict:
    first = audio[0][0]
    held, total, least = [], 0.0, float("inf")
    for at, seconds in audio:
        buffered = total - (at - first)
        if at - first > 3.0:
            least = min(least, buffered)
        held.append(buffered)
        total += seconds
    gaps = [b[0] - a[0] for a, b in zip(audio, audio[1:], strict=False)]
    late = [at - first - end for at, end in words if at - first > end]
    return {
        "socket": socket,
        "first_audio_ms": round((first - sent) * 1000, 1),
        "audio_s": round(total, 2),
        "largest_gap_s": round(max(gaps), 2),
        "least_held_s": round(least, 2),
        "words": len(words),
        "late_words": len(late),
        "worst_late_s": round(max(late, default=0.0), 2),
    }


async def measure(url: str, rounds: int) -> list[dict]:
    rows = []
    for _ in range(rounds):
        rows.append(summarise("elevenlabs", *await elevenlabs(url)))
        rows.append(summarise("cartesia", *await cartesia(url)))
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cost-model", type=Path, default=ROOT / "bench" / "cost_models" / "h100-tf32.json")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "long_reply" / "h100-tf32.json")
    args = p.parse_args()
    log = Path(tempfile.gettempdir()) / "tts-long-reply-server.log"
    proc, url = start(args.cost_model, log, admission="on")
    try:
        rows = asyncio.run(measure(url, args.rounds))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(table(rows))
    write_results(args.out, {"cost_model": args.cost_model.name, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
