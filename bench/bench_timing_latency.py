"""Timing never holds audio: first audio with and without timestamps on every transport, and whether each
word's span reached the client before the word had finished playing.

One real server (`bench/serve_paced.py`: the product app on the demo checkpoint, the LLM replaced by the paced engine
at `--rate` semantic tokens per second, 100 = twice real time, as a GPU gives them) serves every transport in turn,
runs alternating with and without timing so both see the same load:
- `http`: POST /v1/tts/generate stream=true (raw PCM / JSON lines with `timestamps: "word"`)
- `openai-sse`: POST /v1/audio/speech stream_format=sse (+ `timestamps: "word"`)
- `ws`: our WebSocket (+ `timestamps: "word"`)
- `elevenlabs-http`: /v1/text-to-speech/{voice}/stream against /stream/with-timestamps
- `elevenlabs-ws`: multi-stream-input (always timed; its baseline is `ws` without timing)
- `cartesia-ws`: /tts/websocket with add_timestamps false / true
- `cartesia-sse`: /tts/sse with add_timestamps false / true

Per transport: median first audio (ms from sending the request to the first audio byte) without and with timing,
their ratio, whether it meets the target (with <= 1.3 x without + 100 ms), and on the playback clock (real time from
the first audio byte, never ahead of the audio received) how many words' spans arrived after the word had finished
playing, and the worst such lateness.

`--simulate` (no server, seconds): the incremental aligner against the offline estimate on synthetic speech (tone
bursts per word by expected length at a random speaker rate, +-30 % per word, pauses at punctuation) cut into the
planner's 170-character text chunks and fed in the decoder's pieces: mean error of word starts against the truth,
and words late on a simulated clock with the engine at twice real time (tests/unit/services/pipeline/test_timing_playback.py holds it).

Usage: .venv/bin/python bench/bench_timing_latency.py [--runs 3] [--rate 100] [--simulate]
Prints a markdown table and writes bench/results/timing_latency.json (or timing_accuracy.json).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from bench.bench_service import start_server, stop_server  # noqa: E402
from bench.ws_speakers import turn  # noqa: E402

TEXT = (
    "Thanks for calling. Your order of three items shipped this morning and should arrive on Thursday. "
    "Is there anything else I can help you with today, or would you like a text message when it is delivered?"
)
RATE = 16_000  # every transport asks for 16 kHz 16-bit PCM (f32 nowhere), so bytes / 32000 = seconds
TRANSPORTS = ("http", "openai-sse", "ws", "elevenlabs-http", "elevenlabs-ws", "cartesia-ws", "cartesia-sse")


@dataclass
class Run:
    first_audio_s: float | None = None
    words: list[tuple[float, float]] = field(default_factory=list)  # (playback clock when received, word end)
    _t0: float = 0.0
    _first: float | None = None
    _audio_bytes: int = 0

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def audio(self, data: bytes, sample_bytes: int = 2) -> None:
        if not data:
            return
        now = time.perf_counter()
        if self._first is None:
            self._first = now
            self.first_audio_s = now - self._t0
        self._audio_bytes += len(data) * 2 // sample_bytes

    def timing(self, ends: list[float]) -> None:
        now = time.perf_counter()
        played = 0.0 if self._first is None else min(now - self._first, self._audio_bytes / (2 * RATE))
        self.words += [(played, end) for end in ends]


# ------------------------------------------------------------------------------------------------ transports
async def http_stream(client: httpx.AsyncClient, timed: bool) -> Run:
    run = Run()
    body = {
        "text": TEXT,
        "stream": True,
        "format": "pcm",
        "seed": 1,
        **({"timestamps": "word"} if timed else {}),
    }

    def on_item(item: dict) -> None:
        if item["type"] == "audio":
            run.audio(base64.b64decode(item["audio"]))
        elif item["type"] == "timestamps":
            run.timing([w["end"] for w in item["words"]])

    run.start()
    async with client.stream("POST", "/v1/tts/generate", json=body) as response:
        await read_body(response, run, timed, on_item)
    return run


async def read_body(response: httpx.Response, run: Run, timed: bool, on_item: Callable[[dict], None]) -> None:
    """An HTTP stream's raw audio bytes, or (timed) its JSON lines, each handed to `on_item`."""
    if not timed:
        async for data in response.aiter_bytes():
            run.audio(data)
        return
    async for line in response.aiter_lines():
        if line.strip():
            on_item(json.loads(line))


async def openai_sse(client: httpx.AsyncClient, timed: bool) -> Run:
    run = Run()
    body = {
        "model": "tts-1",
        "voice": "alloy",
        "input": TEXT,
        "response_format": "pcm",
        "stream_format": "sse",
        **({"timestamps": "word"} if timed else {}),
    }
    rate_scale = 24_000 / RATE  # OpenAI's pcm is 24 kHz
    run.start()
    async with client.stream("POST", "/v1/audio/speech", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if event["type"] == "speech.audio.delta":
                data = base64.b64decode(event["audio"])
                run.audio(data[: int(len(data) / rate_scale) // 2 * 2] or data[:2])
            elif event["type"] == "speech.timestamps":
                run.timing([w["end"] for w in event["words"]])
    return run


async def native_ws(base: str, timed: bool) -> Run:
    run = Run()
    async with connect(base + "/v1/tts/ws", max_size=None) as ws:
        run.start()
        await ws.send(
            json.dumps(
                {"type": "start", "format": "pcm", "seed": 1, **({"timestamps": "word"} if timed else {})}
            )
        )
        await ws.send(json.dumps({"type": "text", "text": TEXT}))
        await ws.send(json.dumps({"type": "end"}))
        while True:
            message = await ws.recv()
            if isinstance(message, bytes):
                run.audio(message)
                continue
            event = json.loads(message)
            if event["type"] == "timestamps":
                run.timing([w["end"] for w in event["words"]])
            if event["type"] in ("done", "error"):
                return run


async def elevenlabs_http(client: httpx.AsyncClient, timed: bool) -> Run:
    run = Run()
    path = "/v1/text-to-speech/default/stream" + ("/with-timestamps" if timed else "")

    def on_item(item: dict) -> None:
        run.audio(base64.b64decode(item["audio_base64"]))
        if item.get("alignment"):
            run.timing(word_ends(item["alignment"]))

    run.start()
    async with client.stream(
        "POST", path + "?output_format=pcm_16000", json={"text": TEXT, "seed": 1}
    ) as response:
        await read_body(response, run, timed, on_item)
    return run


def word_ends(alignment: dict) -> list[float]:
    """End of each word completed in one ElevenLabs alignment (seconds; a space closes a word)."""
    ends, last = [], None
    for ch, end in zip(alignment["characters"], alignment["character_end_times_seconds"], strict=True):
        if ch == " ":
            if last is not None:
                ends.append(last)
            last = None
        else:
            last = end
    return ends


async def elevenlabs_ws(base: str, timed: bool) -> Run:
    run = Run()
    async with connect(
        base + "/v1/text-to-speech/default/multi-stream-input?output_format=pcm_16000&sync_alignment=true",
        max_size=None,
    ) as ws:
        run.start()
        # The turn as Pipecat ends it: flush, then close (close_context alone is a barge-in: the server drops
        # unflushed text, docs/architecture.md, and the context would end without audio).
        for message in turn("elevenlabs", TEXT, "a", "default", whole=True):
            await ws.send(message)
        while not (message := json.loads(await ws.recv())).get("isFinal"):
            run.audio(base64.b64decode(message.get("audio") or ""))
            if message.get("alignment"):
                a = message["alignment"]
                run.timing(
                    word_ends(
                        {
                            "characters": a["chars"],
                            "character_end_times_seconds": [
                                (s + d) / 1000
                                for s, d in zip(a["charStartTimesMs"], a["charDurationsMs"], strict=True)
                            ],
                        }
                    )
                )
        await ws.send(json.dumps({"close_socket": True}))
    return run


async def cartesia_ws(base: str, timed: bool) -> Run:
    run = Run()
    message = {
        "model_id": "sonic-3",
        "voice": {"mode": "id", "id": "default"},
        "context_id": "t",
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": RATE},
        "add_timestamps": timed,
        "transcript": TEXT,
        "continue": False,
    }
    async with connect(base + "/tts/websocket", max_size=None) as ws:
        run.start()
        await ws.send(json.dumps(message))
        while (event := json.loads(await ws.recv()))["type"] not in ("done", "error"):
            if event["type"] == "chunk":
                run.audio(base64.b64decode(event["data"]))
            elif event["type"] == "timestamps":
                run.timing(event["word_timestamps"]["end"])
    return run


async def cartesia_sse(client: httpx.AsyncClient, timed: bool) -> Run:
    run = Run()
    body = {
        "model_id": "sonic-3",
        "transcript": TEXT,
        "voice": {"mode": "id", "id": "default"},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": RATE},
        "add_timestamps": timed,
    }
    run.start()
    async with client.stream(
        "POST", "/tts/sse", json=body, headers={"Cartesia-Version": "2025-04-16"}
    ) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["type"] == "chunk":
                    run.audio(base64.b64decode(event["data"]))
                elif event["type"] == "timestamps":
                    run.timing(event["word_timestamps"]["end"])
    return run


async def one(transport: str, base: str, client: httpx.AsyncClient, timed: bool) -> Run:
    ws_base = base.replace("http://", "ws://")
    if transport == "http":
        return await http_stream(client, timed)
    if transport == "openai-sse":
        return await openai_sse(client, timed)
    if transport == "ws":
        return await native_ws(ws_base, timed)
    if transport == "elevenlabs-http":
        return await elevenlabs_http(client, timed)
    if transport == "elevenlabs-ws":
        return await (elevenlabs_ws(ws_base, True) if timed else native_ws(ws_base, False))
    if transport == "cartesia-ws":
        return await cartesia_ws(ws_base, timed)
    return await cartesia_sse(client, timed)


async def measure(base: str, runs: int, transports: tuple[str, ...]) -> list[dict]:
    rows = []
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        for transport in transports:
            plain: list[float] = []
            timed: list[float] = []
            words: list[tuple[float, float]] = []
            for _ in range(runs):  # alternating: both see the same background
                off = await one(transport, base, client, False)
                on = await one(transport, base, client, True)
                plain.append(off.first_audio_s or float("nan"))
                timed.append(on.first_audio_s or float("nan"))
                words += on.words
            without, with_ = statistics.median(plain), statistics.median(timed)
            late = [played - end for played, end in words if played > end]
            rows.append(
                {
                    "transport": transport,
                    "first_audio_ms_without": round(without * 1000, 1),
                    "first_audio_ms_with": round(with_ * 1000, 1),
                    "ratio": round(with_ / without, 3),
                    "meets_target": with_ <= 1.3 * without + 0.1,
                    "words": len(words),
                    "words_late": len(late),
                    "worst_late_ms": round(max(late) * 1000, 1) if late else 0.0,
                }
            )
            print(f"{transport}: {rows[-1]}", flush=True)
    return rows


def simulate(seeds: int = 20) -> dict:
    """Incremental vs offline start errors and simulated lateness (see the module doc)."""
    import numpy as np

    from bench.sim.timestamps import PlaybackFeed, speech
    from core.align import align
    from processing.chunking import split_text
    from services.pipeline.timestamps import TimestampTrack

    text = (TEXT + " ") * 6
    chunks = split_text(text, 170)
    errors, offline, late, count = [], [], [], 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        rate = rng.uniform(3.7, 5.5)
        track = TimestampTrack()
        track.add_text(text, " ".join(chunks))
        feed = PlaybackFeed(track)
        for index, chunk in enumerate(chunks):
            audio, starts = speech(chunk.split(), rate, rng)
            truth = [s + feed.sent / RATE for s in starts]
            offline += [
                abs(w.start + feed.sent / RATE - s)
                for w, s in zip(align(audio, chunk.split()).words, truth, strict=True)
            ]
            got = feed.chunk(chunk, audio, last=index == len(chunks) - 1)
            errors += [abs(w.start - s) for (_, w), s in zip(got, truth, strict=True)]
            late += [c - w.end for c, w in got if c > w.end]
            count += len(got)
    return {
        "seeds": seeds,
        "words": count,
        "incremental_start_error_ms": round(float(np.mean(errors)) * 1000, 1),
        "offline_start_error_ms": round(float(np.mean(offline)) * 1000, 1),
        "incremental_p90_error_ms": round(float(np.percentile(errors, 90)) * 1000, 1),
        "offline_p90_error_ms": round(float(np.percentile(offline, 90)) * 1000, 1),
        "words_late_at_2x": len(late),
        "worst_late_ms": round(max(late, default=0.0) * 1000, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per transport and variant (medians are reported)"
    )
    parser.add_argument("--rate", type=float, default=100.0, help="paced engine: semantic tokens per second")
    parser.add_argument("--transports", default=",".join(TRANSPORTS))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--simulate", action="store_true", help="aligner accuracy and lateness on synthetic speech"
    )
    args = parser.parse_args(argv)
    results = ROOT / "bench" / "results"
    if args.simulate:
        figures = simulate()
        print("| | incremental | offline |\n|---|---|---|")
        print(
            f"| mean start error (ms) | {figures['incremental_start_error_ms']} | {figures['offline_start_error_ms']} |"
        )
        print(
            f"| p90 start error (ms) | {figures['incremental_p90_error_ms']} | {figures['offline_p90_error_ms']} |"
        )
        print(
            f"\nwords late on the simulated clock (engine 2x real time): {figures['words_late_at_2x']} of "
            f"{figures['words']} (worst {figures['worst_late_ms']} ms)"
        )
        out = args.out or results / "timing_accuracy.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {out}")
        return
    args.out = args.out or results / "timing_latency.json"
    from core.demo.checkpoint import build_demo_checkpoint

    model = build_demo_checkpoint(ROOT / "var" / "test-demo-model", seed=0)
    log = Path(tempfile.mkdtemp(prefix="bench-timing-")) / "server.log"
    server = start_server(model, log, rate=args.rate, env={"TTS_TORCH_THREADS": "1"})
    try:
        rows = asyncio.run(measure(server.url, args.runs, tuple(args.transports.split(","))))
    finally:
        stop_server(server)
    print(
        "\n| transport | first audio without (ms) | with timing (ms) | ratio | <= 1.3x + 100 ms | words late "
        "on the playback clock | worst late (ms) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['transport']} | {r['first_audio_ms_without']} | {r['first_audio_ms_with']} | {r['ratio']} | "
            f"{'yes' if r['meets_target'] else 'NO'} | {r['words_late']} / {r['words']} | {r['worst_late_ms']} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"rate_tokens_per_s": args.rate, "runs": args.runs, "text": TEXT, "rows": rows}, indent=2)
        + "\n"
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
