"""The official `openai` Python SDK pointed at the server: streamed speech in wav, mp3 and opus decodes with
PyAV at 24 kHz (what OpenAI clients assume), and `stream_format="sse"` yields speech.audio.delta events and a
final speech.audio.done."""

from __future__ import annotations

import base64
import io
import json
import struct
from collections.abc import Iterator

import av
import pytest
from openai import OpenAI

from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

TEXT = "Hello from the OpenAI SDK."
OPENAI_RATE = 24_000


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[OpenAI]:
    # Auth is off on the test server; the SDK insists on some key.
    sdk = OpenAI(base_url=f"{server.base_url}/v1", api_key="unused-e2e-key", max_retries=0, timeout=120)
    yield sdk
    sdk.close()


def _decode(data: bytes) -> tuple[int, float]:
    samples, rates = 0, set()
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(audio=0):
            samples += frame.samples
            rates.add(frame.sample_rate)
    assert len(rates) == 1
    rate = rates.pop()
    return rate, samples / rate


@pytest.mark.parametrize("fmt", ["wav", "mp3", "opus"])
def test_streamed_speech_decodes(client: OpenAI, fmt: str) -> None:
    pieces: list[bytes] = []
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TEXT, response_format=fmt
    ) as response:
        assert response.status_code == 200
        # wav comes as one complete file (exact RIFF sizes); the other formats stream as they are made.
        assert response.headers["x-stream"] == ("false" if fmt == "wav" else "true")
        assert response.headers["x-sample-rate"] == str(OPENAI_RATE)
        assert response.headers["x-format"] == fmt
        assert response.headers.get("x-request-id")
        for piece in response.iter_bytes():
            pieces.append(piece)
    data = b"".join(pieces)
    rate, seconds = _decode(data)
    if fmt == "opus":
        assert rate == 48_000  # Opus always decodes at 48 kHz; OpusHead carries the input rate
        at = data.find(b"OpusHead")
        assert struct.unpack_from("<I", data, at + 12)[0] == OPENAI_RATE
    else:
        assert rate == OPENAI_RATE
    assert seconds > 0.5
    if fmt == "wav":
        assert data[:4] == b"RIFF" and struct.unpack_from("<I", data, 40)[0] == len(data) - 44  # exact sizes
        assert (len(data) - 44) % 2 == 0


def test_complete_speech_file(client: OpenAI) -> None:
    audio = client.audio.speech.create(model="tts-1-hd", voice="nova", input=TEXT, response_format="flac")
    rate, seconds = _decode(audio.content)
    assert rate == OPENAI_RATE and seconds > 0.5


def test_sse_stream_has_deltas_and_a_done_event(client: OpenAI) -> None:
    events: list[dict] = []
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="pcm", stream_format="sse"
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line.removeprefix("data:").strip()))
    kinds = [event["type"] for event in events]
    assert kinds[-1] == "speech.audio.done"
    assert kinds[:-1] and set(kinds[:-1]) == {"speech.audio.delta"}
    pcm = b"".join(base64.b64decode(event["audio"]) for event in events[:-1])
    assert len(pcm) % 2 == 0 and len(pcm) / 2 / OPENAI_RATE > 0.5
    usage = events[-1]["usage"]
    assert usage["input_tokens"] == len(TEXT) and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_models_and_voices_are_listed(client: OpenAI) -> None:
    ids = {model.id for model in client.models.list()}
    assert {"tts-1", "tts-1-hd"} <= ids
