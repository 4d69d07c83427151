"""`POST /v1/tts/generate` against a real uvicorn server on the demo checkpoint, as a user sees it:
curl streaming, the WAV headers, the response headers, every format at its sample rate, 48 kHz through SR,
and audio that starts arriving while the rest is still being generated.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import av
import httpx
import pytest

from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

UNKNOWN_SIZE = 0xFFFFFFFF
WAV_HEADER = 44
SHORT_TEXT = "Hello there, this is a short test of the speech service."
LONG_TEXT = (
    "The quick brown fox jumps over the lazy dog near the river bank. Every morning the baker opens his shop at "
    "six and sells fresh bread to the villagers. Children walk to school along the narrow road, laughing and "
    "talking about their games. In the afternoon the sun warms the stone walls of the old church. Later, when "
    "evening comes, families gather for dinner and share stories about their day. Finally the lights go out and "
    "the whole village sleeps quietly."
)
COMMON_HEADERS = (
    "x-request-id",
    "x-model-version",
    "x-format",
    "x-sample-rate",
    "x-stream",
    "x-text-chunked",
    "x-chunking-enabled",
    "x-sr-applied",
)
COMPLETE_HEADERS = ("x-audio-bytes", "x-audio-seconds", "x-ttfb-ms", "x-rtf")
FORMATS = ("wav", "pcm", "mp3", "opus", "flac", "aac", "mulaw")
# Codec framing (mp3 frames, AAC priming, Opus pre-skip) may add a little audio; never remove any.
CODEC_SLACK_S = 0.15


@dataclass
class CurlResult:
    status: int
    headers: dict[str, str]
    body: bytes


def curl_post(
    server: RunningServer, body: dict, tmp_path: Path, path: str = "/v1/tts/generate"
) -> CurlResult:
    """`curl -N` (no output buffering), the way a user streams audio from a shell."""
    head, out = tmp_path / "headers.txt", tmp_path / "body.bin"
    subprocess.run(
        [
            "curl",
            "-sS",
            "-N",
            "-D",
            str(head),
            "-o",
            str(out),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            json.dumps(body),
            f"{server.base_url}{path}",
        ],
        check=True,
        timeout=180,
    )
    lines = head.read_text(errors="replace").splitlines()
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return CurlResult(status, headers, out.read_bytes())


def decode_audio(data: bytes, fmt: str, declared_rate: int) -> tuple[int, int]:
    """(decoded sample rate, samples) through PyAV. Raw formats carry no header: they are read at the declared
    rate. Opus always decodes at 48 kHz; its OpusHead records the input rate, which must be the declared one."""
    options: dict = {}
    if fmt in ("pcm", "mulaw"):
        options = {
            "format": "s16le" if fmt == "pcm" else "mulaw",
            "options": {"sample_rate": str(declared_rate), "ch_layout": "mono"},
        }
    samples, rates = 0, set()
    with av.open(io.BytesIO(data), **options) as container:
        for frame in container.decode(audio=0):
            samples += frame.samples
            rates.add(frame.sample_rate)
    assert len(rates) == 1, f"{fmt}: frames at several rates {rates}"
    rate = rates.pop()
    if fmt == "opus":
        at = data.find(b"OpusHead")
        assert at >= 0, "no OpusHead in the Ogg stream"
        input_rate = struct.unpack_from("<I", data, at + 12)[0]
        assert input_rate == declared_rate
        assert rate == 48_000
    return rate, samples


def wav_sizes(data: bytes) -> tuple[int, int]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and data[36:40] == b"data"
    return struct.unpack_from("<I", data, 4)[0], struct.unpack_from("<I", data, 40)[0]


def assert_contract_headers(headers: dict[str, str] | httpx.Headers, *, stream: bool) -> None:
    missing = [h for h in COMMON_HEADERS if h not in headers]
    assert not missing, f"missing headers {missing}"
    assert headers["x-stream"] == ("true" if stream else "false")
    for name in ("x-text-chunked", "x-chunking-enabled", "x-sr-applied"):
        assert headers[name] in ("true", "false")
    assert int(headers["x-sample-rate"]) > 0
    if stream:
        assert headers["x-accel-buffering"] == "no"
        assert headers["cache-control"] == "no-cache"
        for name in COMPLETE_HEADERS[:2]:
            assert name not in headers, f"{name} cannot be known when the headers of a stream go out"
    else:
        missing = [h for h in COMPLETE_HEADERS if h not in headers]
        assert not missing, f"missing headers {missing}"
        assert float(headers["x-audio-seconds"]) > 0
        assert float(headers["x-ttfb-ms"]) > 0
        assert float(headers["x-rtf"]) > 0


def test_a_seeded_stream_is_reproducible_at_the_default_latency(server: RunningServer) -> None:
    """`balanced` (the default) decodes the first second with a short look-ahead: the stream then differs from the
    complete file there, but the same seed still gives the same bytes, and the same length as the complete file."""
    body = {"text": SHORT_TEXT, "format": "pcm", "max_tokens": 60, "seed": 5}
    first, second = (
        httpx.post(f"{server.base_url}/v1/tts/generate", json={**body, "stream": True}, timeout=60)
        for _ in range(2)
    )
    complete = httpx.post(f"{server.base_url}/v1/tts/generate", json=body, timeout=60)
    assert first.status_code == second.status_code == complete.status_code == 200
    assert first.content == second.content and len(first.content) == len(complete.content)


def test_curl_streamed_wav_equals_the_complete_file(server: RunningServer, tmp_path: Path) -> None:
    body = {"text": SHORT_TEXT, "seed": 42, "latency": "exact"}  # exact: the stream equals the complete file
    streamed = curl_post(server, {**body, "stream": True}, tmp_path)
    complete = curl_post(server, body, tmp_path)
    assert streamed.status == complete.status == 200

    # Streamed: one 44-byte header with unknown sizes, then raw PCM.
    assert wav_sizes(streamed.body) == (UNKNOWN_SIZE, UNKNOWN_SIZE)
    assert streamed.body[12:16] == b"fmt " and struct.unpack_from("<HHIIHH", streamed.body, 20) == (
        1,
        1,
        16000,
        32000,
        2,
        16,
    )
    assert streamed.headers["content-type"] == "audio/wav"
    assert "chunked" in streamed.headers.get("transfer-encoding", "")
    assert_contract_headers(streamed.headers, stream=True)

    # Complete: exact sizes, readable by the standard library.
    data = complete.body
    assert wav_sizes(data) == (len(data) - 8, len(data) - WAV_HEADER)
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        frames = wav.getnframes()
        pcm = wav.readframes(frames)
    assert_contract_headers(complete.headers, stream=False)
    assert int(complete.headers["x-audio-bytes"]) == len(data)
    assert float(complete.headers["x-audio-seconds"]) == pytest.approx(frames / 16000, abs=1e-3)

    # Same seed, same pipeline: the same samples, streamed or not.
    assert len(streamed.body) - WAV_HEADER == len(pcm) > 16000
    assert streamed.body[WAV_HEADER:] == pcm
    for result in (streamed, complete):
        assert result.headers["x-format"] == "wav" and result.headers["x-sample-rate"] == "16000"
        assert result.headers["x-text-chunked"] == "false"
        assert result.headers["x-chunking-enabled"] == "true"
        assert result.headers["x-sr-applied"] == "false"
        assert result.headers["x-model-version"].startswith("demo")
    assert streamed.headers["x-request-id"] != complete.headers["x-request-id"]


def test_request_id_is_echoed(server: RunningServer) -> None:
    response = httpx.post(
        f"{server.base_url}/v1/tts/generate",
        timeout=60,
        json={"text": "Hi.", "max_tokens": 5},
        headers={"X-Request-ID": "e2e-req-123"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "e2e-req-123"


def test_first_audio_arrives_while_generation_is_still_running(server: RunningServer) -> None:
    body = {"text": LONG_TEXT, "stream": True, "format": "pcm", "max_tokens": 150, "seed": 5}
    arrivals: list[tuple[float, int]] = []
    started = time.perf_counter()
    with httpx.stream("POST", f"{server.base_url}/v1/tts/generate", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["x-text-chunked"] == "true"
        for piece in response.iter_raw():
            if piece:
                arrivals.append((time.perf_counter() - started, len(piece)))
    first, last = arrivals[0][0], arrivals[-1][0]
    total_bytes = sum(n for _, n in arrivals)
    assert total_bytes > 3 * 150 * 320  # several seconds of audio (16-bit samples)
    assert len(arrivals) > 5, "audio should come in many pieces"
    # The first audio is out long before the last: it did not wait for the whole text to be generated.
    assert first < 0.35 * last, f"first bytes at {first:.2f}s, last at {last:.2f}s"
    assert last - first > 1.0
    # And it keeps coming while generating: bytes arrive spread over the request, not in one burst at the end.
    halfway = first + (last - first) / 2
    assert sum(n for t, n in arrivals if t < halfway) > 0.2 * total_bytes


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_streamed_and_complete_decodes_at_its_rate(server: RunningServer, fmt: str) -> None:
    body = {"text": SHORT_TEXT, "format": fmt, "max_tokens": 25, "seed": 9, "latency": "exact"}
    complete = httpx.post(f"{server.base_url}/v1/tts/generate", json=body, timeout=60)
    streamed = httpx.post(f"{server.base_url}/v1/tts/generate", json={**body, "stream": True}, timeout=60)
    assert complete.status_code == streamed.status_code == 200, (complete.text[:300], streamed.text[:300])
    expected_seconds = float(complete.headers["x-audio-seconds"])
    assert expected_seconds == pytest.approx(25 * 320 / 16000, abs=1e-3)
    for response, stream in ((complete, False), (streamed, True)):
        assert_contract_headers(response.headers, stream=stream)
        assert response.headers["x-format"] == fmt
        declared = int(response.headers["x-sample-rate"])
        assert declared == (8000 if fmt == "mulaw" else 16000)
        rate, samples = decode_audio(response.content, fmt, declared)
        if fmt != "opus":
            assert rate == declared
        seconds = samples / rate
        assert expected_seconds - 0.01 <= seconds <= expected_seconds + CODEC_SLACK_S, (fmt, stream, seconds)
    assert int(complete.headers["x-audio-bytes"]) == len(complete.content)
    if fmt in ("pcm", "mulaw"):  # headerless: streamed and complete are the same bytes (same seed)
        assert streamed.content == complete.content


@pytest.mark.parametrize(
    ("extra", "rate", "sr_applied"),
    [
        ({"output": "48khz"}, 48000, "true"),
        ({"sample_rate": 24000}, 24000, "true"),
        ({"sample_rate": 44100}, 44100, "true"),
        ({"sample_rate": 8000}, 8000, "false"),
        ({"output": "48khz", "format": "opus"}, 48000, "true"),
        ({"sample_rate": 24000, "format": "mp3"}, 24000, "true"),
    ],
    ids=["48khz", "24000", "44100", "8000", "opus-48khz", "mp3-24000"],
)
def test_output_rates(server: RunningServer, extra: dict, rate: int, sr_applied: str) -> None:
    fmt = extra.get("format", "wav")
    body = {"text": SHORT_TEXT, "max_tokens": 25, "seed": 4, **extra}
    for stream in (False, True):
        response = httpx.post(
            f"{server.base_url}/v1/tts/generate", json={**body, "stream": stream}, timeout=60
        )
        assert response.status_code == 200, response.text[:300]
        assert_contract_headers(response.headers, stream=stream)
        assert response.headers["x-sample-rate"] == str(rate)
        assert response.headers["x-sr-applied"] == sr_applied
        decoded_rate, samples = decode_audio(response.content, fmt, rate)
        if fmt != "opus":
            assert decoded_rate == rate
        assert 0.5 - 0.01 <= samples / decoded_rate <= 0.5 + CODEC_SLACK_S
        if fmt == "wav" and not stream:
            with wave.open(io.BytesIO(response.content)) as wav:
                assert wav.getframerate() == rate
                assert wav.getnframes() == pytest.approx(0.5 * rate, abs=2)
