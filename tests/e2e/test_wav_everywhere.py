"""A WAV answered as one file carries exact RIFF and data sizes on every route, so Python's `wave` reads its true
length; a streamed WAV says "unknown" (0xFFFFFFFF) as documented. Real server, curl, the standard library's reader.
Also the OpenAI route's extensions: sampling fields honoured (seed), `stream`, and `GET /v1/audio/models`."""

from __future__ import annotations

import struct
import subprocess
import wave
from pathlib import Path

import httpx
import pytest

from tests.audio_samples import assert_same_pcm
from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

TEXT = "Hello there, this is a complete file."


def _curl(server: RunningServer, route: str, body: str, out: Path) -> dict[str, str]:
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-D",
            "-",
            "-X",
            "POST",
            f"{server.base_url}{route}",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    lines = result.stdout.splitlines()
    assert lines[0].split()[1] == "200", result.stdout
    return {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if ":" in line)
    }


@pytest.mark.parametrize(
    ("route", "body", "rate"),
    [
        ("/v1/tts/generate", '{"text": "%s"}', 16000),
        ("/v1/tts/generate", '{"text": "%s", "stream": false, "sample_rate": 24000}', 24000),
        ("/v1/audio/speech", '{"input": "%s", "voice": "alloy", "response_format": "wav"}', 24000),
        ("/v1/audio/speech", '{"input": "%s", "response_format": "wav", "stream": false, "seed": 3}', 24000),
    ],
)
def test_a_complete_wav_reads_at_its_true_length_in_python_wave(
    server: RunningServer, tmp_path: Path, route: str, body: str, rate: int
) -> None:
    out = tmp_path / "a.wav"
    headers = _curl(server, route, body % TEXT, out)
    data = out.read_bytes()
    riff, data_size = struct.unpack("<I", data[4:8])[0], struct.unpack("<I", data[40:44])[0]
    assert riff == len(data) - 8 and data_size == len(data) - 44
    with wave.open(str(out)) as reader:
        assert reader.getframerate() == rate and reader.getnchannels() == 1 and reader.getsampwidth() == 2
        assert reader.getnframes() == (len(data) - 44) // 2
        seconds = reader.getnframes() / rate
    assert 0.5 < seconds < 30 and headers["x-stream"] == "false"
    assert float(headers["x-audio-seconds"]) == pytest.approx(seconds, abs=0.01)


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/tts/generate", '{"text": "%s", "stream": true}'),
        ("/v1/audio/speech", '{"input": "%s", "response_format": "wav", "stream": true}'),
    ],
)
def test_a_streamed_wav_says_its_sizes_are_unknown(
    server: RunningServer, tmp_path: Path, route: str, body: str
) -> None:
    out = tmp_path / "s.wav"
    headers = _curl(server, route, body % TEXT, out)
    data = out.read_bytes()
    assert headers["x-stream"] == "true"
    assert struct.unpack("<I", data[4:8])[0] == struct.unpack("<I", data[40:44])[0] == 0xFFFFFFFF
    with wave.open(str(out)) as reader:  # what Python's wave makes of it: the length is a placeholder
        assert reader.getnframes() == 0xFFFFFFFF // 2


def test_the_openai_route_streams_other_formats_and_honours_sampling_fields(server: RunningServer) -> None:
    url = f"{server.base_url}/v1/audio/speech"
    mp3 = httpx.post(url, json={"input": TEXT}, timeout=120)
    assert mp3.status_code == 200 and mp3.headers["x-stream"] == "true"
    seeded = [
        httpx.post(
            url,
            json={"input": TEXT, "response_format": "pcm", "seed": 5, "temperature": 1.2, "top_k": 20},
            timeout=120,
        ).content
        for _ in range(2)
    ]
    other = httpx.post(
        url,
        json={"input": TEXT, "response_format": "pcm", "seed": 6, "temperature": 1.2, "top_k": 20},
        timeout=120,
    ).content
    assert_same_pcm(seeded[0], seeded[1])  # the same seed: the same speech (see assert_same_pcm)
    assert seeded[0] != other
    bad = httpx.post(url, json={"input": TEXT, "temperature": 7}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "temperature"
    ignored = httpx.post(
        url,
        json={
            "input": TEXT,
            "response_format": "pcm",
            "instructions": "Speak softly.",
            "some_future_field": 1,
            "seed": 5,
            "temperature": 1.2,
            "top_k": 20,
        },
        timeout=120,
    )
    assert ignored.status_code == 200
    assert_same_pcm(ignored.content, seeded[0])  # instructions change nothing


def test_audio_models_lists_the_models_in_both_shapes(server: RunningServer) -> None:
    body = httpx.get(f"{server.base_url}/v1/audio/models", timeout=10).json()
    ids = [m["id"] for m in body["data"]]
    assert body["object"] == "list" and "tts-1" in ids and "spark-tts" in ids
    assert [m["id"] for m in body["models"]] == ids  # Open WebUI reads `models`
