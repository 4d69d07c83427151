"""Timestamps on every transport of a real uvicorn server (demo checkpoint): POST /v1/tts/generate complete (JSON)
and streamed (JSON lines, read with curl), captions, OpenAI SSE through the official SDK, and the WebSocket. Every
answer's words are the request's words in order, monotonic, inside the audio; timing never holds audio (a stream's
first item is audio, and its words follow the audio as the aligner settles them); with and without normalisation,
short and long (chunked) text. That each word reaches the client before it has finished playing is checked on a
simulated clock (tests/unit/services/pipeline/test_timing_playback.py); bench/bench_timing_latency.py measures it here."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess

import pytest
from openai import OpenAI
from websockets.asyncio.client import connect

from core.align import split_words
from tests.e2e.conftest import RunningServer
from tests.texts import LONG_ENGLISH

pytestmark = pytest.mark.e2e

RATE = 16_000
SHORT = "I paid $5 on 15/03/2024 at 3:30pm, [excited] really!"
OPENAI_RATE = 24_000


def check_words(words: list[dict], text: str, duration: float) -> None:
    assert [w["text"] for w in words] == split_words(text)
    times = [t for w in words for t in (w["start"], w["end"])]
    assert times == sorted(times), "not monotonic"
    assert times[0] >= 0 and times[-1] <= duration + 1e-3, (times[-1], duration)


@pytest.mark.parametrize("normalize", [True, False])
def test_complete_json_answer_with_words_and_characters(server: RunningServer, normalize: bool) -> None:
    import httpx

    body = {
        "text": SHORT,
        "format": "pcm",
        "max_tokens": 60,
        "seed": 5,
        "timestamps": "character",
        "normalize": normalize,
    }
    response = httpx.post(f"{server.base_url}/v1/tts/generate", json=body, timeout=300)
    assert response.status_code == 200, response.text
    assert response.headers["X-Chunks-Retried"] == "0" and response.headers["X-Timestamps-Status"] == "ok"
    answer = response.json()
    assert answer["timestamps_status"] == "ok"
    audio = base64.b64decode(answer["audio"])
    duration = len(audio) / 2 / RATE
    assert duration > 0 and answer["audio_seconds"] == pytest.approx(duration, abs=0.01)
    check_words(answer["words"], SHORT, duration)
    spoken = [w["text"] for w in answer["normalized_words"]]
    assert ("five" in spoken and "dollars" in spoken) == normalize
    chars = answer["characters"]
    assert "".join(c["text"] for c in chars) == " ".join(split_words(SHORT))
    assert all(0 <= c["start"] <= c["end"] <= duration + 1e-3 for c in chars)


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_captions(server: RunningServer, fmt: str) -> None:
    import httpx

    body = {"text": SHORT, "format": "wav", "max_tokens": 40, "seed": 5, "captions": fmt}
    answer = httpx.post(f"{server.base_url}/v1/tts/generate", json=body, timeout=300).json()
    captions = answer["captions"]
    if fmt == "vtt":
        assert captions.startswith("WEBVTT\n\n")
    else:
        assert captions.startswith("1\n00:00:")
    separator = "." if fmt == "vtt" else ","
    assert f"{separator}" in captions.splitlines()[2 if fmt == "vtt" else 1]
    cue_words = " ".join(
        line
        for line in captions.splitlines()
        if line and "-->" not in line and not line.isdigit() and line != "WEBVTT"
    ).split()
    assert cue_words == [w for w in split_words(SHORT) if w != "[excited]"]


@pytest.mark.parametrize("text", [SHORT, LONG_ENGLISH], ids=["short", "long"])
def test_streamed_json_lines_send_audio_first_and_words_beside_it(server: RunningServer, text: str) -> None:
    body = json.dumps(
        {"text": text, "stream": True, "format": "pcm", "max_tokens": 40, "seed": 3, "timestamps": "word"}
    )
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "-N",
            "--fail-with-body",
            "-H",
            "Content-Type: application/json",
            "-D",
            "-",
            "-d",
            body,
            f"{server.base_url}/v1/tts/generate",
        ],
        capture_output=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    head, _, payload = done.stdout.partition(b"\r\n\r\n")
    assert b"application/x-ndjson" in head.lower()
    lines = [json.loads(line) for line in payload.decode().splitlines() if line.strip()]
    assert lines[-1] == {"type": "done"}
    assert lines[0]["type"] == "audio"  # timing never holds the first audio
    sent = 0
    words: list[dict] = []
    for line in lines[:-1]:
        if line["type"] == "audio":
            sent += len(base64.b64decode(line["audio"]))
            continue
        assert line["type"] == "timestamps"
        words += line["words"]
    check_words(words, text, sent / 2 / RATE)
    if text is LONG_ENGLISH:
        assert sum(1 for line in lines if line["type"] == "timestamps") >= 3  # at least one per text chunk


def test_openai_sse_carries_timestamp_events(server: RunningServer) -> None:
    client = OpenAI(base_url=f"{server.base_url}/v1", api_key="unused-e2e-key", max_retries=0, timeout=300)
    events: list[dict] = []
    with client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="alloy",
        input=LONG_ENGLISH,
        response_format="pcm",
        stream_format="sse",
        extra_body={"timestamps": "word"},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line.removeprefix("data:").strip()))
    client.close()
    assert events[-1]["type"] == "speech.audio.done"
    assert events[0]["type"] == "speech.audio.delta"
    sent = 0
    words: list[dict] = []
    for event in events[:-1]:
        if event["type"] == "speech.audio.delta":
            sent += len(base64.b64decode(event["audio"]))
        else:
            assert event["type"] == "speech.timestamps"
            words += event["words"]
    check_words(words, LONG_ENGLISH, sent / 2 / OPENAI_RATE)


@pytest.mark.parametrize("normalize", [True, False])
def test_websocket_sends_audio_first_and_timestamps_beside_it(server: RunningServer, normalize: bool) -> None:
    pieces = ["I paid $5 ", "on 15/03/2024. ", LONG_ENGLISH[:400]]

    async def run() -> tuple[list[dict], list[tuple[int, dict]], int]:
        url = server.base_url.replace("http://", "ws://") + "/v1/tts/ws"
        received: list[tuple[int, dict]] = []
        sent = 0
        async with connect(url, max_size=None) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "start",
                        "format": "pcm",
                        "max_tokens": 40,
                        "seed": 2,
                        "timestamps": "word",
                        "normalize": normalize,
                    }
                )
            )
            for piece in pieces:
                await ws.send(json.dumps({"type": "text", "text": piece}))
            await ws.send(json.dumps({"type": "end"}))
            while True:
                message = await asyncio.wait_for(ws.recv(), 300)
                if isinstance(message, bytes):
                    sent += len(message)
                    continue
                event = json.loads(message)
                if event["type"] == "timestamps":
                    received.append((sent, event))
                if event["type"] in ("done", "error"):
                    assert event["type"] == "done", event
                    return [w for _, e in received for w in e["words"]], received, sent

    words, received, total = asyncio.run(run())
    assert len(received) >= 2
    assert received[0][0] > 0  # audio went out before the first timing
    check_words(words, "".join(pieces), total / 2 / RATE)


def test_bad_timestamp_requests_get_the_error_envelope(server: RunningServer) -> None:
    import httpx

    cases = [
        ("/v1/tts/generate", {"text": "Hi.", "timestamps": "syllable"}, "timestamps"),
        ("/v1/tts/generate", {"text": "Hi.", "captions": "ass"}, "captions"),
        ("/v1/tts/generate", {"text": "Hi.", "stream": True, "captions": "srt"}, "captions"),
        ("/v1/audio/speech", {"input": "Hi.", "voice": "alloy", "timestamps": "word"}, "timestamps"),
    ]
    for path, body, param in cases:
        response = httpx.post(f"{server.base_url}{path}", json=body, timeout=60)
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR" and error["param"] == param, error


def test_a_server_with_the_ctc_method_returns_scored_words(demo_model_dir, tmp_path_factory) -> None:  # noqa: ANN001
    """TTS_ALIGN_METHOD=ctc with a (tiny, random) Wav2Vec2ForCTC for English: every word carries its score; the
    contract (the request's words, monotonic, inside the audio) holds as with estimate."""
    import httpx

    from tests.ctc_model import build_tiny_ctc_model
    from tests.e2e.conftest import start_server, stop_server

    model = build_tiny_ctc_model(tmp_path_factory.mktemp("ctc-model"))
    running = start_server(
        demo_model_dir,
        tmp_path_factory.mktemp("ctc-server") / "server.log",
        {"TTS_ALIGN_METHOD": "ctc", "TTS_ALIGN_CTC_MODEL": f"en={model}"},
    )
    try:
        text = "Hello, a bad code. Each dead cab!"  # letters the tiny vocabulary has
        body = {"text": text, "format": "pcm", "max_tokens": 80, "seed": 5, "timestamps": "word"}
        answer = httpx.post(f"{running.base_url}/v1/tts/generate", json=body, timeout=300).json()
    finally:
        stop_server(running)
    duration = len(base64.b64decode(answer["audio"])) / 2 / RATE
    check_words(answer["words"], text, duration)
    assert all("score" in w and w["score"] <= 0 for w in answer["normalized_words"])
