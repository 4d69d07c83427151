"""The requests the guides' front ends send (docs/guides/), replayed against a real uvicorn server.

None of these clients runs here whole (Open WebUI and SillyTavern are web apps, openai_tts a Home Assistant custom
component that imports Home Assistant), so each test sends exactly what the client's code builds, read from its
source (cited per test): path, headers, JSON fields and values, and whether it streams; then checks the answer is
what the client does with it (the content type it assumes, audio that decodes).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest

from tests.e2e.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e

KEY = "guides-client-key"
TEXT = "Good evening. The kitchen lights are off, and the front door is locked."


@pytest.fixture(scope="module")
def keyed(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Auth on with one key, as the guides set the server up."""
    env = {"TTS_AUTH_ENABLED": "true", "TTS_API_KEYS": KEY, "TTS_SR_ENABLED": "false"}
    running = start_server(demo_model_dir, tmp_path_factory.mktemp("guides") / "server.log", env)
    try:
        yield running
    finally:
        stop_server(running)


def _decoded_seconds(data: bytes, fmt: str) -> float:
    samples = 0
    rate = 0
    with av.open(io.BytesIO(data), format=fmt) as container:
        for frame in container.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
    assert rate > 0
    return samples / rate


def _assert_mp3(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/mpeg"
    assert _decoded_seconds(response.content, "mp3") > 1.0


# --------------------------------------------------------------------------------------------- Open WebUI
# open-webui/open-webui backend/open_webui/routers/audio.py (`speech`, TTS_ENGINE "openai"): the browser's body
# (src/lib/apis/audio/index.ts, synthesizeOpenAISpeech: `input` and `voice`) gets `model` set to the admin's TTS
# model and the admin's "additional parameters" (TTS_OPENAI_PARAMS) merged in, and is posted with aiohttp's json=
# to `{API Base URL}/audio/speech` with `Authorization: Bearer {API Key}`; the answer is saved as a .mp3 file and
# served from it, whole (no response_format: OpenAI's default, mp3).


def test_open_webui_speech(keyed: RunningServer) -> None:
    body = {"input": TEXT, "voice": "alloy", "model": "tts-1"}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    response = httpx.post(f"{keyed.base_url}/v1/audio/speech", json=body, headers=headers, timeout=120)
    _assert_mp3(response)
    assert "x-ignored-fields" not in response.headers


def test_open_webui_lists_voices_and_models_without_a_key(keyed: RunningServer) -> None:
    # get_available_voices / get_available_models: for a base URL that is not api.openai.com, a plain
    # requests.get of `{base}/audio/voices` (reads `voices`: `id` and `name` of each) and `{base}/audio/models`
    # (reads `models`), no Authorization header.
    voices = httpx.get(f"{keyed.base_url}/v1/audio/voices", timeout=30)
    assert voices.status_code == 200
    listed = {v["id"]: v["name"] for v in voices.json()["voices"]}
    assert "default" in listed and all(isinstance(n, str) for n in listed.values())
    models = httpx.get(f"{keyed.base_url}/v1/audio/models", timeout=30)
    assert models.status_code == 200
    assert all("id" in m for m in models.json()["models"])


def test_open_webui_additional_parameters(keyed: RunningServer) -> None:
    # TTS_OPENAI_PARAMS merged into the body: this server's own fields pass through that way.
    body = {"input": TEXT, "voice": "alloy", "model": "tts-1", "instructions": "a low, slow male voice"}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    response = httpx.post(f"{keyed.base_url}/v1/audio/speech", json=body, headers=headers, timeout=120)
    _assert_mp3(response)
    assert response.headers["x-voice-description"] == "gender=male; pitch=low; speed_level=low"


# --------------------------------------------------------------------------------------------- SillyTavern
# SillyTavern/SillyTavern public/scripts/extensions/tts/openai-compatible.js (fetchTtsGeneration) posts to its own
# server, which (src/endpoints/openai.js, the `custom` router's /generate-voice) forwards to the Provider Endpoint
# as given (the whole URL, .../v1/audio/speech) with `Content-Type: application/json` and `Authorization: Bearer
# {key}` (an empty key when none is saved), body {input, response_format: "mp3", voice, speed, model}, and relays
# the bytes as audio/mpeg.


def test_sillytavern_speech(keyed: RunningServer) -> None:
    body = {"input": TEXT, "response_format": "mp3", "voice": "nova", "speed": 1, "model": "tts-1"}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    response = httpx.post(f"{keyed.base_url}/v1/audio/speech", json=body, headers=headers, timeout=120)
    _assert_mp3(response)


def test_sillytavern_without_a_key_on_an_open_server(server: RunningServer) -> None:
    # No key saved: SillyTavern still sends `Bearer ${''}`; Node's fetch strips the trailing space (the Fetch
    # standard normalises header values), so "Bearer" arrives alone. With auth off that is served.
    body = {"input": TEXT, "response_format": "mp3", "voice": "male", "speed": 1.2, "model": "tts-1"}
    headers = {"Content-Type": "application/json", "Authorization": "Bearer"}
    response = httpx.post(f"{server.base_url}/v1/audio/speech", json=body, headers=headers, timeout=120)
    _assert_mp3(response)


# ----------------------------------------------------------------------------- Home Assistant openai_tts (HACS)
# sfortis/openai_tts custom_components/openai_tts/openaitts_engine.py: get_tts (urllib) and async_get_tts_stream
# (aiohttp json=) post to the configured URL with `Content-Type: application/json`, `User-Agent:
# HomeAssistant-OpenAI-TTS` and `Authorization: Bearer {key}` only when a key is set; body {model, input, voice,
# response_format: "mp3" (tts.py picks mp3 for both paths), speed}, plus `instructions` when configured and the
# "extra payload" JSON merged in. config_flow.py (async_validate_api_key, on reauthentication) checks a key with
# input ".".


def _openai_tts_headers(key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "HomeAssistant-OpenAI-TTS"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def test_openai_tts_speech_with_instructions_and_extra_payload(keyed: RunningServer) -> None:
    body = {
        "model": "tts-1",
        "input": TEXT,
        "voice": "onyx",
        "response_format": "mp3",
        "speed": 1.0,
        "instructions": "Speak in a calm, deep voice.",
        "seed": 7,  # from "extra payload": this server's own fields
    }
    response = httpx.post(
        f"{keyed.base_url}/v1/audio/speech", json=body, headers=_openai_tts_headers(KEY), timeout=120
    )
    _assert_mp3(response)
    assert response.headers["x-voice-description"] == "pitch=low"
    assert "calm" in response.headers["x-voice-description-ignored"]


def test_openai_tts_key_check(keyed: RunningServer) -> None:
    # The key check: 401/403 means a wrong key, any other status from 400 up "cannot connect".
    body = {"model": "tts-1", "input": ".", "voice": "alloy", "response_format": "mp3"}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    response = httpx.post(f"{keyed.base_url}/v1/audio/speech", json=body, headers=headers, timeout=120)
    assert response.status_code < 400, response.text
    wrong = httpx.post(
        f"{keyed.base_url}/v1/audio/speech",
        json=body,
        headers={**headers, "Authorization": "Bearer not-a-key"},
        timeout=30,
    )
    assert wrong.status_code == 401


def test_openai_tts_without_a_key_on_an_open_server(server: RunningServer) -> None:
    body = {"model": "tts-1", "input": TEXT, "voice": "alloy", "response_format": "mp3", "speed": 1.0}
    response = httpx.post(
        f"{server.base_url}/v1/audio/speech", json=body, headers=_openai_tts_headers(None), timeout=120
    )
    _assert_mp3(response)
