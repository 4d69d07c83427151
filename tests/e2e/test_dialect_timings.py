"""Timings on the dialects against a real server: ElevenLabs' `alignment` / `normalizedAlignment` on the WebSocket
(a running relative clock, or from the start of the context with `sync_alignment`) and over HTTP
(`.../with-timestamps`, `.../stream/with-timestamps`), Cartesia's `timestamps` events on the WebSocket and on
`POST /tts/sse`."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest

from tests.e2e.conftest import RunningServer
from tests.e2e.test_dialects import _wait_idle, _ws

pytestmark = pytest.mark.e2e
TEXT = "Hello there. The weather is lovely today, is it not?"
WORDS = TEXT.split()


async def _elevenlabs_context(server: RunningServer, query: str) -> tuple[bytes, list[dict]]:
    """One context streamed a word at a time and closed: its PCM and its audio messages."""
    async with _ws(
        server, f"/v1/text-to-speech/default/multi-stream-input?output_format=pcm_16000{query}"
    ) as ws:
        await ws.send(json.dumps({"text": " ", "context_id": "a"}))
        for word in WORDS:
            await ws.send(json.dumps({"text": word + " ", "context_id": "a"}))
        await ws.send(json.dumps({"context_id": "a", "flush": True, "close_context": True}))
        audio, messages = b"", []
        while not (message := json.loads(await asyncio.wait_for(ws.recv(), 120))).get("isFinal"):
            assert "error" not in message, message
            audio += base64.b64decode(message["audio"])
            messages.append(message)
        await ws.send(json.dumps({"close_socket": True}))
    return audio, messages


def _check_alignment(alignment: dict) -> None:
    chars, starts, durations = alignment["chars"], alignment["charStartTimesMs"], alignment["charDurationsMs"]
    assert len(chars) == len(starts) == len(durations) > 0
    assert all(len(c) == 1 for c in chars) and all(d >= 0 for d in durations)
    assert starts == sorted(starts) and starts[0] >= 0


async def test_elevenlabs_alignment_on_a_relative_clock(server: RunningServer) -> None:
    audio, messages = await _elevenlabs_context(server, "")
    aligned = [m for m in messages if m["alignment"] is not None]
    assert aligned and all((m["alignment"] is None) == (m["normalizedAlignment"] is None) for m in messages)
    assert messages[0]["audio"]  # the first message carries audio: timing never holds it
    text = "".join(c for m in aligned for c in m["alignment"]["chars"])
    assert text.split() == WORDS  # every character once, in order
    clock = 0.0  # Pipecat's: each message's times from where the previous alignment ended
    for message in aligned:
        for key in ("alignment", "normalizedAlignment"):
            _check_alignment(message[key])
        last = message["alignment"]
        clock += last["charStartTimesMs"][-1] + last["charDurationsMs"][-1]
    assert 0 < clock <= len(audio) / 2 / 16 + 100  # the clock ends with the last word, inside the audio (ms)
    _wait_idle(server)


async def test_elevenlabs_sync_alignment_is_from_the_start_of_the_context(server: RunningServer) -> None:
    audio, messages = await _elevenlabs_context(server, "&sync_alignment=true")
    aligned = [m["alignment"] for m in messages if m["alignment"] is not None]
    assert "".join(c for a in aligned for c in a["chars"]).split() == WORDS
    starts = [s for a in aligned for s in a["charStartTimesMs"]]
    ends = [s + d for a in aligned for s, d in zip(a["charStartTimesMs"], a["charDurationsMs"], strict=True)]
    assert starts == sorted(starts) and starts[-1] > 500  # one timeline, not restarted per message
    assert max(ends) <= len(audio) / 2 / 16 + 50
    normalized = [m["normalizedAlignment"] for m in messages if m["normalizedAlignment"] is not None]
    assert [s for a in normalized for s in a["charStartTimesMs"]] == sorted(
        s for a in normalized for s in a["charStartTimesMs"]
    )


async def test_cartesia_word_timestamps_from_the_start_of_the_context(server: RunningServer) -> None:
    base = {
        "model_id": "sonic-3",
        "voice": {"mode": "id", "id": "default"},
        "context_id": "t",
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        "add_timestamps": True,
    }
    async with _ws(server, "/tts/websocket") as ws:
        for index, word in enumerate(WORDS):
            await ws.send(json.dumps({**base, "transcript": word + " ", "continue": index < len(WORDS) - 1}))
        audio, words, starts, ends = b"", [], [], []
        while (message := json.loads(await asyncio.wait_for(ws.recv(), 120)))["type"] != "done":
            assert message["type"] != "error" and message["context_id"] == "t", message
            if message["type"] == "chunk":
                audio += base64.b64decode(message["data"])
            if message["type"] == "timestamps":
                stamps = message["word_timestamps"]
                words += [w.strip() for w in stamps["words"]]  # a sentence end carries its space
                starts += stamps["start"]
                ends += stamps["end"]
    assert words == WORDS
    assert starts == sorted(starts) and all(s <= e for s, e in zip(starts, ends, strict=True))
    assert ends[-1] <= len(audio) / 2 / 16000 + 0.05 and starts[-1] > 0.5  # seconds from the context's start
    _wait_idle(server)


def _seconds_alignment(alignment: dict) -> tuple[str, list[float]]:
    chars = alignment["characters"]
    starts, ends = alignment["character_start_times_seconds"], alignment["character_end_times_seconds"]
    assert len(chars) == len(starts) == len(ends) > 0
    assert starts == sorted(starts) and all(s <= e for s, e in zip(starts, ends, strict=True))
    return "".join(chars), ends


def test_elevenlabs_http_with_timestamps(server: RunningServer) -> None:
    url = f"{server.base_url}/v1/text-to-speech/default/with-timestamps?output_format=pcm_16000"
    answer = httpx.post(url, json={"text": TEXT}, timeout=120)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    audio = base64.b64decode(body["audio_base64"])
    assert len(audio) > 16000 and len(audio) % 2 == 0
    text, ends = _seconds_alignment(body["alignment"])
    assert text == TEXT and ends[-1] <= len(audio) / 2 / 16000 + 0.05
    spoken, _ = _seconds_alignment(body["normalized_alignment"])
    assert spoken.split()
    bad = httpx.post(
        f"{server.base_url}/v1/text-to-speech/nobody/with-timestamps", json={"text": TEXT}, timeout=30
    )
    assert bad.status_code in (400, 404) and bad.json()["detail"]["code"] == "voice_not_found"


def test_elevenlabs_http_stream_with_timestamps(server: RunningServer) -> None:
    url = f"{server.base_url}/v1/text-to-speech/default/stream/with-timestamps?output_format=pcm_16000"
    text = " ".join([TEXT] * 5)  # over the chunking threshold: several text chunks
    with httpx.stream("POST", url, json={"text": text}, timeout=180) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in answer.iter_lines() if line]
    assert lines and all(set(line) == {"audio_base64", "alignment", "normalized_alignment"} for line in lines)
    audio = b"".join(base64.b64decode(line["audio_base64"]) for line in lines)
    merged: dict[str, list] = {
        "characters": [],
        "character_start_times_seconds": [],
        "character_end_times_seconds": [],
    }
    for line in lines:
        for key, values in (line["alignment"] or {}).items():
            merged[key] += values
    got, ends = _seconds_alignment(merged)  # one timeline from the request's start
    assert got == text and ends[-1] <= len(audio) / 2 / 16000 + 0.05  # the text, nothing added
    for line in lines:  # both alignments, or neither
        assert (line["alignment"] is None) == (line["normalized_alignment"] is None), line
    assert (
        sum(line["alignment"] is not None for line in lines) >= 2
    )  # a text chunk's timings ride with its audio
    _wait_idle(server)


def _sse_events(server: RunningServer, body: dict) -> list[tuple[str, dict]]:
    events = []
    with httpx.stream(
        "POST",
        f"{server.base_url}/tts/sse",
        json=body,
        timeout=120,
        headers={"Cartesia-Version": "2025-04-16"},
    ) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in answer.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                assert data["type"] == name
                events.append((name, data))
    return events


def test_cartesia_sse_chunks_timestamps_and_done(server: RunningServer) -> None:
    body = {
        "model_id": "sonic-3",
        "transcript": TEXT,
        "voice": {"mode": "id", "id": "default"},
        "output_format": {"container": "raw", "encoding": "pcm_f32le", "sample_rate": 16000},
        "add_timestamps": True,
        "context_id": "s",
    }
    events = _sse_events(server, body)
    assert events[-1] == ("done", {"type": "done", "done": True, "status_code": 200, "context_id": "s"})
    audio = b"".join(base64.b64decode(e["data"]) for name, e in events if name == "chunk")
    assert len(audio) % 4 == 0 and len(audio) > 4 * 16000 * 0.5  # float32 samples
    stamps = [e["word_timestamps"] for name, e in events if name == "timestamps"]
    words = [w for s in stamps for w in s["words"]]
    starts = [t for s in stamps for t in s["start"]]
    assert words == WORDS and starts == sorted(starts)
    assert max(t for s in stamps for t in s["end"]) <= len(audio) / 4 / 16000 + 0.05
    plain = _sse_events(
        server,
        {
            **body,
            "add_timestamps": False,
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 8000},
        },
    )
    assert {name for name, _ in plain} == {"chunk", "done"}
    spoken = _sse_events(server, {**body, "transcript": "I have 3 cats.", "use_normalized_timestamps": True})
    assert [w for name, e in spoken if name == "timestamps" for w in e["word_timestamps"]["words"]] == [
        "I",
        "have",
        "three",
        "cats.",
    ]
    bad = httpx.post(
        f"{server.base_url}/tts/sse", json={**body, "output_format": {"container": "wav"}}, timeout=30
    )
    assert bad.status_code == 400 and bad.json()["error_code"] == "validation_error"
    _wait_idle(server)


def test_elevenlabs_voice_settings_speed_is_our_speed(server: RunningServer) -> None:
    """`voice_settings.speed` is our speed: 1.1 keeps the style voice's `moderate` label (the same tokens for the
    same seed) and time-stretches the audio to 1/1.1 of its length; the other settings change nothing."""
    url = f"{server.base_url}/v1/text-to-speech/default?output_format=pcm_16000"

    def http_audio(settings: dict) -> bytes:
        answer = httpx.post(url, json={"text": TEXT, "seed": 7, "voice_settings": settings}, timeout=120)
        assert answer.status_code == 200, answer.text
        return answer.content

    plain = http_audio({"speed": 1.0})
    assert len(http_audio({"speed": 1.1})) / len(plain) == pytest.approx(1 / 1.1, abs=0.03)
    assert (
        http_audio(
            {"speed": 1.0, "stability": 0.1, "similarity_boost": 0.9, "style": 0.5, "use_speaker_boost": True}
        )
        == plain
    )
