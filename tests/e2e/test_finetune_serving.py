"""A fine-tune laid out as the recipe saves it (HF LLM files at the root, BiCodec/ beside them, no voices.json)
is served by a real uvicorn server: ready, its speakers listed, audio streamed with curl, OpenAI voice names
answered. Built from the demo checkpoint (docs/reference/spark-tts.md#the-fine-tune-layout)."""

from __future__ import annotations

import io
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningServer, start_server, stop_server
from tests.finetune import finetune_layout

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def finetune_server(
    demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    root = finetune_layout(
        demo_model_dir,
        tmp_path_factory.mktemp("ft") / "spark_tts_4speaker",
        root_config=False,
        bicodec_config=True,
    )
    log = tmp_path_factory.mktemp("ft-log") / "server.log"
    # Its own voice directory: custom voices other tests leave in the shared default (var/voices) are not its voices.
    voices = tmp_path_factory.mktemp("ft-voices")
    running = start_server(
        root,
        log,
        {"TTS_FINETUNE_SPEAKERS": "Asha,Bittu", "TTS_SR_ENABLED": "false", "TTS_VOICE_DIR": str(voices)},
    )
    yield running
    stop_server(running)


def test_ready_and_the_speakers_are_the_voices(finetune_server: RunningServer) -> None:
    base = finetune_server.base_url
    assert httpx.get(f"{base}/v1/tts/ready", timeout=10).status_code == 200
    health = httpx.get(f"{base}/v1/tts/health", timeout=10).json()
    assert health["model_loaded"] and health["demo_model"] is False
    voices = httpx.get(f"{base}/v1/audio/voices", timeout=10).json()
    assert [v["id"] for v in voices["voices"]] == ["Asha", "Bittu"] and voices["default"] == "Asha"
    assert '"layout": "finetune"' in finetune_server.log_text()


def test_streams_audio_with_curl(finetune_server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "asha.wav"
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "-N",
            "-o",
            str(out),
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            f"{finetune_server.base_url}/v1/tts/generate",
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"text": "Namaste, this is Asha.", "speaker": "Bittu", "stream": true, "max_tokens": 60, "seed": 3}',
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout == "200", done.stderr
    data = out.read_bytes()
    assert data[:4] == b"RIFF" and len(data) > 44 + 320 * 2


@pytest.mark.parametrize("voice", ["alloy", "nova", "ash", {"id": "alloy"}])
def test_openai_voice_names_work_on_a_checkpoint_that_never_lists_them(finetune_server, voice) -> None:
    response = httpx.post(
        f"{finetune_server.base_url}/v1/audio/speech",
        json={"model": "tts-1", "input": "Hello!", "voice": voice, "response_format": "wav"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    with wave.open(io.BytesIO(response.content)) as wav:
        assert wav.getframerate() == 24_000 and wav.getnframes() > 0


def test_no_root_config_and_no_bicodec_config_still_serves_when_shapes_say_so(
    demo_model_dir: Path, tmp_path: Path
) -> None:
    # The demo codec is smaller than the released one, so without BiCodec/config.yaml the loader must refuse
    # with the fix in the message (and the server stays up, not ready, saying why).
    root = finetune_layout(demo_model_dir, tmp_path / "ft2", root_config=False, bicodec_config=False)
    running = start_server(root, tmp_path / "log", {"TTS_SR_ENABLED": "false"}, wait_ready=False)
    try:
        health = running.wait_health(lambda h: h.get("error"))
        assert health["status"] == "unhealthy" and "BiCodec/config.yaml" in health["error"]
        assert httpx.get(f"{running.base_url}/v1/tts/ready", timeout=10).status_code == 503
    finally:
        stop_server(running)
