"""Sockets that speak one text the way voice-agent frameworks do, for host-path measurements: the native socket
(`/v1/tts/ws`), ElevenLabs' multi-stream-input (Pipecat's and LiveKit's ElevenLabs plugins) and Cartesia's
(`/tts/websocket`), all asking for 16 kHz s16le. A level runs `streams` utterances over `concurrency` sockets at once
and returns the audio seconds the clients received; the caller meters the server's CPU around it.

The text goes a word at a time, as an LLM's tokens reach the TTS when a framework streams them (LiveKit does;
Pipecat sends whole sentences): ElevenLabs: a `" "` opener, the words, `flush`, `close_context` (Pipecat's messages,
as bench/bench_barge_in.py sends them); Cartesia: the words with `continue: true`, then an empty transcript with
`continue: false`, the server's default `max_buffer_delay_ms` (text is cut at sentence ends; with Pipecat's 0 each
word would be a text chunk of its own); native: `start`, `text` pieces, `end`. `whole`: the text in one message
instead (what the per-message input costs is the difference).
Word timestamps: off unless `timestamps` (ElevenLabs always sends its character alignment: its clients read it
from every audio message, so that transport has no "off"). permessage-deflate: off unless `deflate`. Pipecat's
clients (the `websockets` library's `connect`) offer it by default and uvicorn accepts it, so the server then
compresses every message; LiveKit's (aiohttp's `ws_connect`) do not offer it, nor does httpx over HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import connect

from services.usage.flow_monitor import StreamCadence

WS_TRANSPORTS = ("ws", "elevenlabs", "cartesia")
RATE = (
    16_000  # the sockets' pcm rate unless asked otherwise (24 kHz is the frameworks' usual: through AP-BWE)
)


def bytes_per_audio_s(sample_rate: int) -> int:
    return 2 * sample_rate  # s16le mono


def path_of(transport: str, voice: str, sample_rate: int = RATE) -> str:
    if transport == "ws":
        return "/v1/tts/ws"
    if transport == "elevenlabs":
        return f"/v1/text-to-speech/{voice}/multi-stream-input?output_format=pcm_{sample_rate}"
    if transport == "cartesia":
        return "/tts/websocket"
    raise ValueError(f"unknown socket transport {transport!r}; one of {', '.join(WS_TRANSPORTS)}")


def turn(
    transport: str,
    text: str,
    context_id: str,
    voice: str,
    timestamps: bool = False,
    whole: bool = False,
    max_buffer_delay_ms: int | None = None,
    sample_rate: int = RATE,
) -> list[str]:
    """One utterance's client messages, JSON-encoded, in the order a framework sends them. `max_buffer_delay_ms`
    (Cartesia): Pipecat sends 0 (each message a text chunk of its own); None leaves the server's default."""
    words = [text.strip() + " "] if whole else [w + " " for w in text.split()]
    if transport == "ws":
        start = {
            "type": "start",
            "speaker": voice,
            "format": "pcm",
            "sample_rate": sample_rate,
            **({"timestamps": "word"} if timestamps else {}),
        }
        messages = [start, *({"type": "text", "text": w} for w in words), {"type": "end"}]
    elif transport == "elevenlabs":
        messages = [
            {"text": " ", "context_id": context_id},
            *({"text": w, "context_id": context_id} for w in words),
            {"context_id": context_id, "flush": True},
            {"context_id": context_id, "close_context": True},
        ]
    elif transport == "cartesia":
        base = {
            "model_id": "sonic",
            "voice": {"mode": "id", "id": voice},
            "context_id": context_id,
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": sample_rate},
            "add_timestamps": timestamps,
            **({} if max_buffer_delay_ms is None else {"max_buffer_delay_ms": max_buffer_delay_ms}),
        }
        messages = [
            *({**base, "transcript": w, "continue": True} for w in words),
            {**base, "transcript": "", "continue": False},
        ]
    else:
        raise ValueError(f"unknown socket transport {transport!r}")
    return [json.dumps(m) for m in messages]


@dataclass
class Heard:
    """What one utterance brought back."""

    audio_bytes: int = 0
    messages: int = 0  # server messages (frames) received for it
    timing_messages: int = 0  # messages that carried timestamps or alignment
    error: str | None = None
    first_audio_s: float | None = None  # from the first message sent to the first audio received
    underruns: int = (
        0  # playback ran dry after it began (`prebuffer_s` after the first audio), real-time playback
    )
    underrun_s: float = 0.0


def hear(transport: str, message: str | bytes, heard: Heard) -> bool:
    """Count one server message into `heard`; True when it ends the utterance."""
    heard.messages += 1
    if isinstance(message, bytes):  # native: audio is binary frames
        heard.audio_bytes += len(message)
        return False
    event = json.loads(message)
    if transport == "ws":
        kind = event.get("type")
        heard.timing_messages += kind == "timestamps"
        if kind == "error":
            heard.error = json.dumps(event)[:300]
        return kind in ("done", "error", "cancelled")
    if transport == "elevenlabs":
        if "error" in event:
            heard.error = json.dumps(event)[:300]
            return True
        if event.get("audio"):
            heard.audio_bytes += len(base64.b64decode(event["audio"]))
        heard.timing_messages += event.get("alignment") is not None
        return event.get("isFinal") is True
    kind = event.get("type")  # cartesia
    if kind == "chunk":
        heard.audio_bytes += len(base64.b64decode(event["data"]))
    heard.timing_messages += kind == "timestamps"
    if kind == "error":
        heard.error = json.dumps(event)[:300]
    return kind in ("done", "error")


async def speak(
    base_url: str,
    transport: str,
    text: str,
    voice: str,
    timestamps: bool,
    index: int,
    deflate: bool = False,
    whole: bool = False,
    timeout_s: float = 300.0,
    prebuffer_s: float = 0.1,
    sample_rate: int = RATE,
) -> Heard:
    """One socket, one utterance: send its messages, read until its end (first audio and underruns as a client
    playing in real time from `prebuffer_s` after its first audio hears them)."""
    url = base_url.replace("http://", "ws://") + path_of(transport, voice, sample_rate)
    heard = Heard()
    cadence = StreamCadence(prebuffer_s=prebuffer_s, observe_metrics=False)
    try:
        async with connect(
            url, max_size=None, open_timeout=60, compression="deflate" if deflate else None
        ) as ws:
            started = time.monotonic()
            for message in turn(
                transport, text, f"ctx{index}", voice, timestamps, whole, sample_rate=sample_rate
            ):
                await ws.send(message)
            while True:
                before = heard.audio_bytes
                ended = hear(transport, await asyncio.wait_for(ws.recv(), timeout_s), heard)
                if heard.audio_bytes > before:
                    now = time.monotonic()
                    if heard.first_audio_s is None:
                        heard.first_audio_s = now - started
                    cadence.on_chunk((heard.audio_bytes - before) / bytes_per_audio_s(sample_rate), at=now)
                if ended:
                    break
            heard.underruns, heard.underrun_s = cadence.underruns, cadence.underrun_seconds
    except (
        OSError,
        TimeoutError,
        ValueError,
    ) as exc:  # websockets' errors are OSError or ValueError subclasses
        heard.error = f"{exc.__class__.__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a closed socket mid-level is a failed stream, not a failed bench
        heard.error = f"{exc.__class__.__name__}: {exc}"
    return heard


@dataclass
class SocketLevel:
    wall_s: float
    heard: list[Heard] = field(default_factory=list)
    sample_rate: int = RATE

    @property
    def audio_s(self) -> float:
        return sum(h.audio_bytes for h in self.heard if h.error is None) / bytes_per_audio_s(self.sample_rate)

    @property
    def failed(self) -> int:
        return sum(1 for h in self.heard if h.error is not None)


async def run_socket_level(
    base_url: str,
    transport: str,
    text: str,
    *,
    concurrency: int,
    streams: int,
    voice: str = "fixed",
    timestamps: bool = False,
    deflate: bool = False,
    whole: bool = False,
    sample_rate: int = RATE,
) -> SocketLevel:
    """`streams` utterances, `concurrency` at a time (each on its own socket, as one agent call holds one)."""
    heard: list[Heard] = []
    per_worker = max(1, streams // concurrency)

    async def worker(w: int) -> None:
        for i in range(per_worker):
            heard.append(
                await speak(
                    base_url,
                    transport,
                    text,
                    voice,
                    timestamps,
                    w * per_worker + i,
                    deflate,
                    whole,
                    sample_rate=sample_rate,
                )
            )

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return SocketLevel(time.perf_counter() - started, heard, sample_rate)
