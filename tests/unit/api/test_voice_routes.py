"""The voice library over HTTP and WebSocket, in-process on the demo checkpoint with a fake encoder (a deterministic
function of the samples; the real one runs in tests/integration/test_voice_library_e2e.py): shapes, ownership,
every bad input with its status and no file left behind, per-request cloning (JSON and multipart) and its cache,
and custom voices on every synthesis route."""

from __future__ import annotations

import base64
import io
import json
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings
from tests.audio_samples import (
    browser_webm_opus,
    phone_8k_wav,
    stereo_44k_wav,
    voiced,
    wav_bytes,
    wav_with_codec_tag,
)
from tests.conftest import wait_in_portal
from tests.unit.services.voice_library.test_voice_library import fake_tokens

KEY_A, KEY_B, ADMIN = "voice-key-a", "voice-key-b", "voice-admin"
A, B = {"Authorization": f"Bearer {KEY_A}"}, {"Authorization": f"Bearer {KEY_B}"}
# The demo model speaks ~3.5 semantic ids per text byte and counts the reference's: a transcript as long as
# 3 s of speech, as a real one would be.
TRANSCRIPT = "Hello there, this is a short test of my voice."


class Encoder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, samples, *, semantic: bool = True, stop=None):
        self.calls += 1
        return fake_tokens(samples, semantic)


@pytest.fixture(scope="module")
def voice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("voices")


@pytest.fixture(scope="module")
def client(demo_model_dir: Path, voice_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=True,
        api_keys=f"{KEY_A},{KEY_B}",
        admin_key=ADMIN,
        warmup=False,
        log_json=False,
        sr_enabled=False,
        voice_dir=voice_dir,
        default_max_tokens=40,
        rate_limit_per_minute=10_000,
    )
    runtime = ModelRuntime(settings)
    runtime.encode_reference = Encoder()  # type: ignore[method-assign]
    with TestClient(create_app(settings, runtime=runtime)) as test_client:
        wait_in_portal(test_client, lambda: runtime.ready)
        yield test_client


def encoder(client: TestClient) -> Encoder:
    return client.app.state.runtime.encode_reference


def upload(client: TestClient, data: bytes, headers: dict = A, filename: str = "me.wav", **fields: str):
    form = {"name": "Mine", **fields}
    return client.post(
        "/v1/audio/voices", files={"audio_sample": (filename, data)}, data=form, headers=headers
    )


def stored(voice_dir: Path) -> set[str]:
    return {p.stem for p in voice_dir.glob("*.json")}


def is_wav_with_audio(data: bytes) -> bool:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() > 0


def test_create_list_get_export_import_delete(client: TestClient, voice_dir: Path) -> None:
    created = upload(
        client, wav_bytes(voiced(3.0)), transcript=TRANSCRIPT, consent="Recorded by the speaker."
    )
    assert created.status_code == 201, created.text
    voice = created.json()
    assert set(voice) >= {"id", "name", "created_at", "reference_seconds", "has_transcript", "global_tokens"}
    assert voice["id"].startswith("voice_") and voice["name"] == "Mine" and voice["type"] == "custom"
    assert voice["reference_seconds"] == 3.0 and voice["has_transcript"] and len(voice["global_tokens"]) == 32
    assert created.headers["Location"] == f"/v1/audio/voices/{voice['id']}" and voice["id"] in stored(
        voice_dir
    )

    listed = client.get("/v1/audio/voices", headers=A).json()
    assert listed["default"] and {"id", "name", "type"} <= set(listed["voices"][0])
    assert listed["voices"][0]["type"] == "builtin"
    assert [v["id"] for v in listed["voices"] if v["type"] == "custom"] == [voice["id"]]
    assert all(v["type"] == "builtin" for v in client.get("/v1/audio/voices", headers=B).json()["voices"])
    assert all(
        v["type"] == "builtin" for v in client.get("/v1/audio/voices").json()["voices"]
    )  # no key: built-ins
    admin = client.get("/v1/audio/voices", headers={"X-Admin-Key": ADMIN}).json()["voices"]
    assert any(v["id"] == voice["id"] and v["owner_key_id"].startswith("key_") for v in admin)

    exported = client.get(f"/v1/audio/voices/{voice['id']}", headers=A).json()
    assert exported["transcript"] == TRANSCRIPT and len(exported["semantic_tokens"]) == 150
    assert exported["consent"] == "Recorded by the speaker." and "owner_key_id" not in exported
    # The export is an import body: another key (or deployment) gets its own copy, no encoder needed.
    calls = encoder(client).calls
    imported = client.post("/v1/audio/voices", json=exported, headers=B)
    assert imported.status_code == 201, imported.text
    copy = imported.json()
    assert (
        copy["id"] != voice["id"]
        and copy["global_tokens"] == voice["global_tokens"]
        and encoder(client).calls == calls
    )
    assert (
        client.get(f"/v1/audio/voices/{copy['id']}", headers=B).json()["semantic_tokens"]
        == exported["semantic_tokens"]
    )

    for method in ("get", "delete"):
        refused = getattr(client, method)(f"/v1/audio/voices/{voice['id']}", headers=B)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "VOICE_NOT_FOUND"
    assert client.delete(f"/v1/audio/voices/{voice['id']}", headers=A).status_code == 204
    assert client.get(f"/v1/audio/voices/{voice['id']}", headers=A).status_code == 404
    assert client.delete(f"/v1/audio/voices/{copy['id']}", headers={"X-Admin-Key": ADMIN}).status_code == 204
    assert voice["id"] not in stored(voice_dir) and copy["id"] not in stored(voice_dir)


@pytest.mark.parametrize(
    "make", [browser_webm_opus, stereo_44k_wav, phone_8k_wav], ids=["webm-opus", "stereo-44k", "phone-8k"]
)
def test_uploads_as_users_record_them(client: TestClient, make) -> None:
    created = upload(client, make(), filename="clip")
    assert created.status_code == 201, created.text
    assert created.json()["reference_seconds"] == pytest.approx(4.0, abs=0.05)
    assert client.delete(f"/v1/audio/voices/{created.json()['id']}", headers=A).status_code == 204


BAD_UPLOADS = [
    (
        "not audio",
        lambda: {"files": {"audio_sample": ("a.wav", b"hello, a text file\n" * 40)}, "data": {"name": "x"}},
        400,
        "INVALID_AUDIO",
        "audio_sample",
    ),
    (
        "too short",
        lambda: {"files": {"audio_sample": ("a.wav", wav_bytes(voiced(0.6)))}, "data": {"name": "x"}},
        400,
        "AUDIO_TOO_SHORT",
        "audio_sample",
    ),
    (
        "too long",
        lambda: {"files": {"audio_sample": ("a.wav", wav_bytes(voiced(31.0)))}, "data": {"name": "x"}},
        400,
        "AUDIO_TOO_LONG",
        "audio_sample",
    ),
    (
        "silent",
        lambda: {"files": {"audio_sample": ("a.wav", wav_bytes(voiced(3.0) * 0))}, "data": {"name": "x"}},
        400,
        "AUDIO_SILENT",
        "audio_sample",
    ),
    (
        "unsupported codec",
        lambda: {"files": {"audio_sample": ("a.wav", wav_with_codec_tag(0xBEEF))}, "data": {"name": "x"}},
        415,
        "UNSUPPORTED_AUDIO_FORMAT",
        "audio_sample",
    ),
    (
        "too large",
        lambda: {"files": {"audio_sample": ("a.wav", bytes(21 * 2**20))}, "data": {"name": "x"}},
        413,
        "PAYLOAD_TOO_LARGE",
        None,
    ),
    (
        "just over the file limit",
        lambda: {"files": {"audio_sample": ("a.wav", bytes(20 * 2**20 + 10))}, "data": {"name": "x"}},
        413,
        "PAYLOAD_TOO_LARGE",
        "audio_sample",
    ),
    (
        "no name",
        lambda: {"files": {"audio_sample": ("a.wav", wav_bytes(voiced(3.0)))}},
        400,
        "VALIDATION_ERROR",
        "name",
    ),
    (
        "blank name",
        lambda: {"files": {"audio_sample": ("a.wav", wav_bytes(voiced(3.0)))}, "data": {"name": "  "}},
        400,
        "VALIDATION_ERROR",
        "name",
    ),
    (
        "long name",
        lambda: {"files": {"audio_sample": ("a.wav", wav_bytes(voiced(3.0)))}, "data": {"name": "n" * 65}},
        400,
        "VALIDATION_ERROR",
        "name",
    ),
    (
        "long transcript",
        lambda: {
            "files": {"audio_sample": ("a.wav", wav_bytes(voiced(3.0)))},
            "data": {"name": "x", "transcript": "t" * 1001},
        },
        400,
        "VALIDATION_ERROR",
        "transcript",
    ),
    ("no file", lambda: {"data": {"name": "x", "transcript": "hi"}}, 400, "VALIDATION_ERROR", "audio_sample"),
    (
        "unknown field",
        lambda: {
            "files": {"audio_sample": ("a.wav", wav_bytes(voiced(3.0)))},
            "data": {"name": "x", "gender": "f"},
        },
        400,
        "VALIDATION_ERROR",
        "gender",
    ),
    (
        "plain text body",
        lambda: {"content": b"name=x", "headers": {**A, "Content-Type": "text/plain"}},
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        "Content-Type",
    ),
    (
        "bad import",
        lambda: {"json": {"name": "x", "global_tokens": [1, 2]}},
        400,
        "VALIDATION_ERROR",
        "global_tokens",
    ),
    (
        "booleans as tokens",
        lambda: {"json": {"name": "x", "global_tokens": [True] * 32}},
        400,
        "VALIDATION_ERROR",
        "global_tokens.0",
    ),
    (
        "wrong key",
        lambda: {
            "files": {"audio_sample": ("a.wav", wav_bytes(voiced(3.0)))},
            "data": {"name": "x"},
            "headers": {"Authorization": "Bearer nope"},
        },
        401,
        "INVALID_API_KEY",
        None,
    ),
    (
        "admin key only",
        lambda: {
            "files": {"audio_sample": ("a.wav", wav_bytes(voiced(3.0)))},
            "data": {"name": "x"},
            "headers": {"X-Admin-Key": ADMIN},
        },
        403,
        "FORBIDDEN",
        None,
    ),
    (
        "wrong admin key",
        lambda: {
            "files": {"audio_sample": ("a.wav", wav_bytes(voiced(3.0)))},
            "data": {"name": "x"},
            "headers": {"X-Admin-Key": "guess"},
        },
        403,
        "FORBIDDEN",
        None,
    ),
]


@pytest.mark.parametrize(
    ("case", "request_args", "status", "code", "param"), BAD_UPLOADS, ids=[c[0] for c in BAD_UPLOADS]
)
def test_bad_uploads_answer_their_4xx_and_store_nothing(
    client: TestClient, voice_dir: Path, case: str, request_args, status: int, code: str, param: str | None
) -> None:
    before = stored(voice_dir)
    args = request_args()
    args.setdefault("headers", A)
    response = client.post("/v1/audio/voices", **args)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["param"] == param and error["message"]
    assert stored(voice_dir) == before and not list(voice_dir.glob(".tmp-*"))


def test_501_when_the_checkpoint_cannot_encode_and_import_still_works(
    client: TestClient, monkeypatch
) -> None:
    runtime = client.app.state.runtime
    monkeypatch.setattr(type(runtime), "cloning_unavailable_reason", property(lambda _: "wav2vec2: missing"))
    refused = upload(client, wav_bytes(voiced(3.2, seed=9)))
    assert refused.status_code == 501 and refused.json()["error"]["code"] == "CLONING_UNAVAILABLE"
    per_request = client.post(
        "/v1/tts/generate",
        headers=A,
        json={"text": "Hi.", "reference_audio": base64.b64encode(wav_bytes(voiced(2.5, seed=9))).decode()},
    )
    assert per_request.status_code == 501
    imported = client.post(
        "/v1/audio/voices", headers=A, json={"name": "moved", "global_tokens": list(range(32))}
    )
    assert imported.status_code == 201
    assert client.delete(f"/v1/audio/voices/{imported.json()['id']}", headers=A).status_code == 204
    assert (
        "501].includes(response.status)"
        in (Path(__file__).parents[3] / "api/static/playground/voices.js").read_text()
    )


def test_a_custom_voice_speaks_on_every_route_for_its_key_only(client: TestClient) -> None:
    voice_id = upload(client, wav_bytes(voiced(3.0, seed=4)), transcript=TRANSCRIPT).json()["id"]
    try:
        spoken = client.post(
            "/v1/tts/generate", headers=A, json={"text": "Good morning.", "speaker": voice_id}
        )
        assert (
            spoken.status_code == 200
            and spoken.headers["X-Voice"] == voice_id
            and is_wav_with_audio(spoken.content)
        )
        for voice in (voice_id, {"id": voice_id}):
            openai = client.post(
                "/v1/audio/speech",
                headers=A,
                json={"input": "Good morning.", "voice": voice, "response_format": "wav"},
            )
            assert openai.status_code == 200 and openai.headers["X-Voice"] == voice_id
        with client.websocket_connect("/v1/tts/ws", headers=A) as ws:
            ws.send_json({"text": "Good morning.", "speaker": voice_id, "format": "pcm"})
            audio, event = b"", {}
            while event.get("type") not in ("done", "error"):
                message = ws.receive()
                if message.get("bytes"):
                    audio += message["bytes"]
                elif message.get("text"):
                    event = json.loads(message["text"])
            assert event["type"] == "done" and audio
        other = client.post("/v1/tts/generate", headers=B, json={"text": "Hi.", "speaker": voice_id})
        assert other.status_code == 404 and other.json()["error"] == {
            "message": other.json()["error"]["message"],
            "type": "invalid_request_error",
            "param": "speaker",
            "code": "VOICE_NOT_FOUND",
        }
        openai = client.post("/v1/audio/speech", headers=B, json={"input": "Hi.", "voice": voice_id})
        assert openai.status_code == 404 and openai.json()["error"]["param"] == "voice"
        with client.websocket_connect("/v1/tts/ws", headers=B) as ws:
            ws.send_json({"type": "start", "voice": voice_id})
            assert ws.receive_json()["error"]["code"] == "VOICE_NOT_FOUND"
        unknown = client.post("/v1/tts/generate", headers=A, json={"text": "Hi.", "speaker": "no-such-voice"})
        assert (
            unknown.status_code == 400 and unknown.json()["error"]["code"] == "INVALID_SPEAKER"
        )  # as before
        # Metrics count custom voices under one label: library ids never become label values.
        exposition = client.get("/metrics").text
        assert 'speaker="custom"' in exposition and voice_id not in exposition
    finally:
        client.delete(f"/v1/audio/voices/{voice_id}", headers=A)


def test_per_request_cloning_json_and_multipart_encode_a_reference_once(client: TestClient) -> None:
    reference = wav_bytes(voiced(2.0, seed=11))
    ask = {
        "text": "Good morning.",
        "reference_audio": base64.b64encode(reference).decode(),
        "reference_text": "Hello there, a reference.",
    }
    first = client.post("/v1/tts/generate", headers=A, json=ask)
    assert first.status_code == 200, first.text
    assert first.headers["X-Voice"].startswith("ref_") and is_wav_with_audio(first.content)
    calls = encoder(client).calls
    again = client.post(
        "/v1/tts/generate",
        headers=A,
        json={**ask, "reference_audio": "data:audio/wav;base64," + ask["reference_audio"]},
    )
    form = client.post(
        "/v1/tts/generate",
        headers=A,
        files={"reference_audio": ("r.wav", reference)},
        data={
            "text": "Good morning.",
            "reference_text": ask["reference_text"],
            "stream": "true",
            "format": "pcm",
            "sample_rate": "",
            "seed": "3",
        },
    )
    assert again.status_code == form.status_code == 200, form.text
    assert form.headers["X-Stream"] == "true" and form.headers["X-Format"] == "pcm" and form.content
    assert encoder(client).calls == calls  # the same bytes: served from the cache
    exposition = client.get("/metrics").text
    assert 'speaker="reference"' in exposition and "ref_" not in exposition
    assert "veena3_tts_reference_requests_total" in exposition
    assert not list(client.app.state.services.settings.voices.voice_dir.glob("ref_*"))  # nothing saved


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"speaker": "default", "reference_audio": "AAAA"}, 400, "VALIDATION_ERROR", "reference_audio"),
        ({"reference_text": "Hi there."}, 400, "VALIDATION_ERROR", "reference_text"),
        ({"reference_audio": "not base64!"}, 400, "VALIDATION_ERROR", "reference_audio"),
        (
            {"reference_audio": base64.b64encode(b"text, not audio" * 20).decode()},
            400,
            "INVALID_AUDIO",
            "reference_audio",
        ),
        (
            {"reference_audio": base64.b64encode(wav_bytes(voiced(0.5))).decode()},
            400,
            "AUDIO_TOO_SHORT",
            "reference_audio",
        ),
        (
            {"reference_audio": "QUFB", "reference_text": "t" * 1001},
            400,
            "VALIDATION_ERROR",
            "reference_text",
        ),
        ({"reference_audio": "A" * 1_100_000}, 413, "PAYLOAD_TOO_LARGE", None),
    ],
)
def test_per_request_refusals(
    client: TestClient, body: dict, status: int, code: str, param: str | None
) -> None:
    response = client.post("/v1/tts/generate", headers=A, json={"text": "Hi.", **body})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
    if status == 413:
        assert "POST /v1/audio/voices" in error["message"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"text": "Hi.", "format": "ogg"}, "format"),
        ({"text": "Hi.", "stream": "maybe"}, "stream"),
        ({"text": "Hi.", "sample_rate": "12345"}, "sample_rate"),
        ({"text": "Hi.", "temperature": "hot"}, "temperature"),
        (
            {"text": "Hi.", "sped": "1.1"},
            "sped",
        ),  # a near miss of `speed`: an unrelated unknown field is ignored
        ({"format": "wav"}, "text"),
    ],
)
def test_a_multipart_body_with_a_bad_field_answers_400_naming_it(
    client: TestClient, fields: dict, param: str
) -> None:
    reference = wav_bytes(voiced(2.0, seed=11))
    response = client.post(
        "/v1/tts/generate", headers=A, files={"reference_audio": ("r.wav", reference)}, data=fields
    )
    json_response = client.post(
        "/v1/tts/generate",
        headers=A,
        json={**fields, "reference_audio": base64.b64encode(reference).decode()},
    )
    assert response.status_code == json_response.status_code == 400, response.text
    assert response.json()["error"]["code"] == json_response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert response.json()["error"]["param"] == json_response.json()["error"]["param"] == param
    assert f"'{param}'" in response.json()["error"]["message"]


def test_a_multipart_body_on_a_json_only_route_still_answers_415(client: TestClient) -> None:
    response = client.post("/v1/audio/speech", headers=A, data={"input": "Hi."}, files={"x": ("x", b"1")})
    assert response.status_code == 415 and response.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_the_openai_voice_map_points_an_openai_name_at_a_custom_voice_per_key(
    client: TestClient, demo_model_dir: Path, voice_dir: Path
) -> None:
    voice_id = upload(client, wav_bytes(voiced(3.0, seed=21))).json()["id"]
    try:
        settings = Settings(
            model_dir=demo_model_dir,
            auth_enabled=True,
            api_keys=f"{KEY_A},{KEY_B}",
            warmup=False,
            log_json=False,
            sr_enabled=False,
            voice_dir=voice_dir,
            default_max_tokens=40,
            openai_voice_map={"Coral": voice_id, "sage": "fixed"},
        )
        runtime = ModelRuntime(settings)
        with TestClient(create_app(settings, runtime=runtime)) as mapped:
            wait_in_portal(mapped, lambda: runtime.ready)
            # What Pipecat's OpenAI service sends: one of the 13 names.
            mine = mapped.post(
                "/v1/audio/speech",
                headers=A,
                json={"input": "Hi.", "voice": "coral", "response_format": "pcm"},
            )
            assert mine.status_code == 200 and mine.headers["X-Voice"] == voice_id
            generate = mapped.post("/v1/tts/generate", headers=A, json={"text": "Hi.", "voice": "CORAL"})
            assert generate.headers["X-Voice"] == voice_id
            # Another key does not own the voice: the same name is not found for it, as the id itself would be.
            theirs = mapped.post("/v1/audio/speech", headers=B, json={"input": "Hi.", "voice": "coral"})
            assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "VOICE_NOT_FOUND"
            assert theirs.json()["error"]["param"] == "voice"
            builtin = mapped.post(
                "/v1/audio/speech",
                headers=B,
                json={"input": "Hi.", "voice": "sage", "response_format": "pcm"},
            )
            assert builtin.status_code == 200 and builtin.headers["X-Voice"] == "fixed"
    finally:
        client.delete(f"/v1/audio/voices/{voice_id}", headers=A)


def test_a_reference_longer_than_its_transcript_still_speaks(client: TestClient, caplog) -> None:
    # 8 s of reference against a 24-character transcript: the demo model takes the reference as the whole
    # utterance and stops at once; the chunk is generated again with the plain clone prompt (same voice).
    reference = wav_bytes(voiced(8.0, seed=31))
    for stream in ("false", "true"):
        response = client.post(
            "/v1/tts/generate",
            headers=A,
            files={"reference_audio": ("r.wav", reference)},
            data={"text": "Good morning.", "reference_text": "Hello there, this is me.", "stream": stream},
        )
        assert response.status_code == 200, response.text
        assert is_wav_with_audio(response.content) or len(response.content) > 44 + 3200
    assert "continuation_without_speech" in caplog.text


def test_public_metrics_do_not_tell_whether_a_recording_was_sent_before(client: TestClient) -> None:
    """A per-outcome reference counter let any key learn whether another had sent a recording. A first
    encode and a cache hit must move the reference-related samples identically."""
    from prometheus_client.parser import text_string_to_metric_families

    def reference_samples() -> dict[tuple, float]:
        text = client.get("/metrics").text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name.endswith(("_total", "_count"))  # counts, not timings
            and ("reference" in s.name or "reference" in str(s.labels))
        }

    def moved(before: dict, after: dict) -> dict:
        return {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}

    ask = {
        "text": "Good morning.",
        "reference_text": "Hello there, a reference.",
        "reference_audio": base64.b64encode(wav_bytes(voiced(2.0, seed=23))).decode(),
    }
    before = reference_samples()
    assert client.post("/v1/tts/generate", headers=A, json=ask).status_code == 200
    first = moved(before, middle := reference_samples())
    assert (
        client.post("/v1/tts/generate", headers=B, json=ask).status_code == 200
    )  # another key, same recording
    second = moved(middle, reference_samples())
    assert first and first == second


def test_a_key_keeps_at_most_its_cap_of_voices_and_lists_them_a_page_at_a_time(
    client: TestClient, monkeypatch
) -> None:
    """A per-key cap on library voices (refused before any encode) and a paged voice list."""
    created = upload(client, wav_bytes(voiced(3.0, seed=31)), transcript=TRANSCRIPT)
    assert created.status_code == 201, created.text
    exported = client.get(f"/v1/audio/voices/{created.json()['id']}", headers=A).json()
    client.delete(f"/v1/audio/voices/{created.json()['id']}", headers=A)
    library = client.app.state.services.library
    existing = [
        v["id"] for v in client.get("/v1/audio/voices", headers=B).json()["voices"] if v["type"] == "custom"
    ]
    monkeypatch.setattr(library, "max_per_key", len(existing) + 5)
    made: list[tuple[dict, str]] = []
    try:
        for _ in range(5):
            answer = client.post("/v1/audio/voices", json=exported, headers=B)
            assert answer.status_code == 201, answer.text
            made.append((B, answer.json()["id"]))
        calls = encoder(client).calls
        for refused in (
            client.post("/v1/audio/voices", json=exported, headers=B),
            upload(client, wav_bytes(voiced(3.0, seed=32)), headers=B),
        ):
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "VOICE_LIMIT_REACHED"
        assert encoder(client).calls == calls  # refused before any decode or encode
        other = client.post("/v1/audio/voices", json=exported, headers=A)  # another key still has room
        assert other.status_code == 201, other.text
        made.append((A, other.json()["id"]))

        every = existing + [voice_id for key, voice_id in made if key is B]
        pages, after = [], None
        while True:
            query = {"limit": 2, **({"after": after} if after else {})}
            page = client.get("/v1/audio/voices", headers=B, params=query).json()
            assert any(v["type"] == "builtin" for v in page["voices"]) == (
                after is None
            )  # built-ins: first page
            custom = [v["id"] for v in page["voices"] if v["type"] == "custom"]
            assert len(custom) <= 2
            pages.append(custom)
            after = page["next_after"]
            if after is None:
                break
        assert [v for p in pages for v in p] == every and len(pages) == -(-len(every) // 2)
        for bad in (
            {"limit": 0},
            {"limit": 101},
            {"after": "voice_" + "0" * 32},
            {"after": other.json()["id"]},
        ):
            answer = client.get("/v1/audio/voices", headers=B, params=bad)
            assert answer.status_code == 400 and answer.json()["error"]["code"] == "VALIDATION_ERROR", (
                bad,
                answer.text,
            )
    finally:
        for key, voice_id in made:
            client.delete(f"/v1/audio/voices/{voice_id}", headers=key)
