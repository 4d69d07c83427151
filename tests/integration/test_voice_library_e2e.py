"""Voice cloning end to end: a real uvicorn server on the demo checkpoint with its real reference encoder (BiCodec's
encode half and a tiny random wav2vec2), API keys and voices in the real PostgreSQL.

Uploads are what users send (WAV with a transcript, MP3, a browser's WebM/Opus, stereo 44.1 kHz, an 8 kHz phone
recording); the voice then speaks over HTTP (httpx and curl), the OpenAI SDK and the WebSocket; it survives a
restart; another key can neither see nor use it; every bad input answers its 4xx and leaves no row; a delete ends it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import uuid
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from openai import OpenAI

from services.access import PostgresKeyStore
from tests.audio_samples import (
    browser_webm_opus,
    mp3,
    phone_8k_wav,
    stereo_44k_wav,
    voiced,
    wav_bytes,
    wav_with_codec_tag,
)
from tests.e2e.conftest import RunningServer, start_server, stop_server
from tests.ws_client import speak_once

pytestmark = pytest.mark.integration

ADMIN = "e2e-voice-admin"
# As long as 4 s of speech: the demo model speaks ~3.5 semantic ids per text byte, counting the reference's.
TRANSCRIPT = "Hello there, this is my own voice, recorded for a short test."
TEXT = "Good morning to you."


@dataclass
class Deployment:
    server: RunningServer
    dsn: str
    key_a: str
    key_a_id: str
    key_b: str
    restart: object

    @property
    def url(self) -> str:
        return self.server.base_url


@pytest.fixture(scope="module")
def deployment(
    pg_dsn: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    async def keys() -> list[tuple[str, str]]:
        store = PostgresKeyStore(pg_dsn)
        try:
            made = [
                await store.create_key("voice-e2e", key_id=f"voice-{who}-{uuid.uuid4().hex[:10]}")
                for who in "ab"
            ]
        finally:
            await store.close()
        return [(raw, record.key_id) for raw, record in made]

    (key_a, key_a_id), (key_b, _) = asyncio.run(keys())
    env = {
        "TTS_AUTH_ENABLED": "true",
        "TTS_KEY_BACKEND": "postgres",
        "TTS_DATABASE_URL": pg_dsn,
        "TTS_ADMIN_KEY": ADMIN,
        "TTS_SR_ENABLED": "false",
        "TTS_DEFAULT_MAX_TOKENS": "60",
        "TTS_RATE_LIMIT_PER_MINUTE": "1000",
        "TTS_LOG_JSON": "true",
    }  # no TTS_VOICE_STORE: auto picks PostgreSQL
    logs = tmp_path_factory.mktemp("voice-e2e")
    state = Deployment(
        start_server(demo_model_dir, logs / "server-1.log", env), pg_dsn, key_a, key_a_id, key_b, None
    )

    def restart() -> None:
        stop_server(state.server)
        state.server = start_server(demo_model_dir, logs / "server-2.log", env)

    state.restart = restart
    try:
        yield state
    finally:
        stop_server(state.server)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def rows(dsn: str, key_id: str) -> list[str]:
    async def fetch() -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            found = await conn.fetch(
                "SELECT voice_id FROM tts_voices WHERE owner_key_id = $1 ORDER BY created_at", key_id
            )
        finally:
            await conn.close()
        return [r["voice_id"] for r in found]

    return asyncio.run(fetch())


def upload(
    d: Deployment, data: bytes, filename: str, key: str | None = None, **fields: str
) -> httpx.Response:
    return httpx.post(
        f"{d.url}/v1/audio/voices",
        headers=auth(key or d.key_a),
        timeout=120,
        files={"audio_sample": (filename, data)},
        data={"name": "e2e voice", **fields},
    )


def wav_frames(data: bytes) -> int:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes()


def speak_http(d: Deployment, voice_id: str, key: str | None = None) -> httpx.Response:
    with httpx.stream(
        "POST",
        f"{d.url}/v1/tts/generate",
        headers=auth(key or d.key_a),
        timeout=120,
        json={"text": TEXT, "speaker": voice_id, "stream": True, "format": "pcm"},
    ) as response:
        response.read()
        return response


def speak_ws(d: Deployment, voice_id: str, key: str | None = None) -> tuple[dict, bytes]:
    return speak_once(d.url, auth(key or d.key_a), {"text": TEXT, "speaker": voice_id, "format": "pcm"})


@pytest.fixture(scope="module")
def voice(deployment: Deployment) -> dict:
    created = upload(
        deployment,
        wav_bytes(voiced(4.0)),
        "me.wav",
        transcript=TRANSCRIPT,
        consent="The speaker recorded this and agreed to its use.",
    )
    assert created.status_code == 201, created.text
    return created.json()


def test_upload_is_encoded_stored_and_listed(deployment: Deployment, voice: dict) -> None:
    assert voice["reference_seconds"] == 4.0 and voice["has_transcript"] and len(voice["global_tokens"]) == 32
    assert voice["id"] in rows(deployment.dsn, deployment.key_a_id)
    exported = httpx.get(
        f"{deployment.url}/v1/audio/voices/{voice['id']}", headers=auth(deployment.key_a)
    ).json()
    assert 190 <= len(exported["semantic_tokens"]) <= 201 and exported["transcript"] == TRANSCRIPT
    listed = httpx.get(f"{deployment.url}/v1/audio/voices", headers=auth(deployment.key_a)).json()["voices"]
    assert {"id": voice["id"], "name": "e2e voice", "type": "custom"}.items() <= next(
        v for v in listed if v["id"] == voice["id"]
    ).items()


@pytest.mark.parametrize(
    ("make", "filename"),
    [
        (mp3, "memo.mp3"),
        (browser_webm_opus, "blob"),
        (stereo_44k_wav, "studio.wav"),
        (phone_8k_wav, "call.wav"),
    ],
    ids=["mp3", "mediarecorder-webm-opus", "stereo-44k", "phone-8k"],
)
def test_uploads_in_the_shapes_users_send(deployment: Deployment, make, filename: str) -> None:
    created = upload(deployment, make(), filename)
    assert created.status_code == 201, created.text
    body = created.json()
    assert abs(body["reference_seconds"] - 4.0) < 0.05 and not body["has_transcript"]
    response = speak_http(deployment, body["id"])
    assert response.status_code == 200 and len(response.content) > 0
    assert (
        httpx.delete(
            f"{deployment.url}/v1/audio/voices/{body['id']}", headers=auth(deployment.key_a)
        ).status_code
        == 204
    )


def test_the_voice_speaks_on_http_openai_and_websocket(deployment: Deployment, voice: dict) -> None:
    response = speak_http(deployment, voice["id"])
    assert response.status_code == 200 and response.headers["X-Voice"] == voice["id"] and response.content
    sdk = OpenAI(base_url=f"{deployment.url}/v1", api_key=deployment.key_a, max_retries=0, timeout=120)
    try:
        spoken = sdk.audio.speech.create(model="tts-1", voice=voice["id"], input=TEXT, response_format="wav")
        assert wav_frames(spoken.content) > 0
    finally:
        sdk.close()
    event, audio = speak_ws(deployment, voice["id"])
    assert event["type"] == "done" and audio, event


def test_per_request_cloning_with_curl_and_json(deployment: Deployment, tmp_path: Path) -> None:
    reference = tmp_path / "reference.webm"
    reference.write_bytes(browser_webm_opus(4.0))
    out = tmp_path / "cloned.wav"
    status = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            str(out),
            "-w",
            "%{http_code}",
            "-H",
            f"Authorization: Bearer {deployment.key_a}",
            "-F",
            f"text={TEXT}",
            "-F",
            f"reference_audio=@{reference}",
            "-F",
            f"reference_text={TRANSCRIPT}",
            f"{deployment.url}/v1/tts/generate",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert status == "200" and wav_frames(out.read_bytes()) > 0
    body = {"text": TEXT, "reference_audio": base64.b64encode(reference.read_bytes()).decode()}
    response = httpx.post(
        f"{deployment.url}/v1/tts/generate", headers=auth(deployment.key_a), json=body, timeout=120
    )
    assert response.status_code == 200 and response.headers["X-Voice"].startswith("ref_")
    metrics = httpx.get(f"{deployment.url}/metrics").text
    assert "veena3_tts_reference_requests_total" in metrics and "reference_encodes" not in metrics


def test_another_key_can_neither_see_nor_use_it(deployment: Deployment, voice: dict) -> None:
    other = auth(deployment.key_b)
    assert voice["id"] not in json.dumps(httpx.get(f"{deployment.url}/v1/audio/voices", headers=other).json())
    for method in ("GET", "DELETE"):
        refused = httpx.request(method, f"{deployment.url}/v1/audio/voices/{voice['id']}", headers=other)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "VOICE_NOT_FOUND"
    refused = speak_http(deployment, voice["id"], deployment.key_b)
    assert refused.status_code == 404 and json.loads(refused.content)["error"]["code"] == "VOICE_NOT_FOUND"
    event, audio = speak_ws(deployment, voice["id"], deployment.key_b)
    assert event["type"] == "error" and event["error"]["code"] == "VOICE_NOT_FOUND" and not audio
    assert voice["id"] in rows(deployment.dsn, deployment.key_a_id)  # the refused delete deleted nothing


BAD = [
    (
        "not audio",
        {"files": {"audio_sample": ("x.wav", b"just some text\n" * 50)}, "data": {"name": "x"}},
        400,
        "INVALID_AUDIO",
    ),
    (
        "too short",
        {"files": {"audio_sample": ("x.wav", wav_bytes(voiced(0.5)))}, "data": {"name": "x"}},
        400,
        "AUDIO_TOO_SHORT",
    ),
    (
        "too long",
        {"files": {"audio_sample": ("x.wav", wav_bytes(voiced(31.0)))}, "data": {"name": "x"}},
        400,
        "AUDIO_TOO_LONG",
    ),
    (
        "silent",
        {"files": {"audio_sample": ("x.wav", wav_bytes(voiced(3.0) * 0))}, "data": {"name": "x"}},
        400,
        "AUDIO_SILENT",
    ),
    (
        "too large",
        {"files": {"audio_sample": ("x.wav", bytes(21 * 2**20))}, "data": {"name": "x"}},
        413,
        "PAYLOAD_TOO_LARGE",
    ),
    (
        "unsupported codec",
        {"files": {"audio_sample": ("x.wav", wav_with_codec_tag(0xBEEF))}, "data": {"name": "x"}},
        415,
        "UNSUPPORTED_AUDIO_FORMAT",
    ),
    ("missing name", {"files": {"audio_sample": ("x.wav", wav_bytes(voiced(3.0)))}}, 400, "VALIDATION_ERROR"),
    (
        "blank name",
        {"files": {"audio_sample": ("x.wav", wav_bytes(voiced(3.0)))}, "data": {"name": " "}},
        400,
        "VALIDATION_ERROR",
    ),
    (
        "transcript too long",
        {
            "files": {"audio_sample": ("x.wav", wav_bytes(voiced(3.0)))},
            "data": {"name": "x", "transcript": "word " * 300},
        },
        400,
        "VALIDATION_ERROR",
    ),
    (
        "wrong key",
        {
            "files": {"audio_sample": ("x.wav", wav_bytes(voiced(3.0)))},
            "data": {"name": "x"},
            "headers": {"Authorization": "Bearer tts_not-a-key"},
        },
        401,
        "INVALID_API_KEY",
    ),
]


@pytest.mark.parametrize(("case", "args", "status", "code"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_answers_its_4xx_and_leaves_no_row(
    deployment: Deployment, case: str, args: dict, status: int, code: str
) -> None:
    before = rows(deployment.dsn, deployment.key_a_id)
    response = httpx.post(
        f"{deployment.url}/v1/audio/voices", timeout=120, **{"headers": auth(deployment.key_a), **args}
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert rows(deployment.dsn, deployment.key_a_id) == before


def test_a_restart_keeps_the_voice_and_a_delete_ends_it(deployment: Deployment, voice: dict) -> None:
    deployment.restart()
    kept = httpx.get(f"{deployment.url}/v1/audio/voices/{voice['id']}", headers=auth(deployment.key_a))
    assert kept.status_code == 200 and kept.json()["global_tokens"] == voice["global_tokens"]
    assert speak_http(deployment, voice["id"]).status_code == 200
    assert (
        httpx.delete(
            f"{deployment.url}/v1/audio/voices/{voice['id']}", headers=auth(deployment.key_a)
        ).status_code
        == 204
    )
    assert voice["id"] not in rows(deployment.dsn, deployment.key_a_id)
    gone = speak_http(deployment, voice["id"])
    assert gone.status_code == 404 and json.loads(gone.content)["error"]["code"] == "VOICE_NOT_FOUND"
    assert (
        httpx.get(
            f"{deployment.url}/v1/audio/voices/{voice['id']}", headers={"X-Admin-Key": ADMIN}
        ).status_code
        == 404
    )
