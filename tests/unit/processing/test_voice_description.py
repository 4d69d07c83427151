"""Describe a voice: the keyword reader, the attribute fields of every HTTP body, the created voice's prompt, the
OpenAI `instructions` headers, and a designed voice kept in the library (its 32 global tokens reused exactly), in
process on the demo checkpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from api.protocols.native.schemas import TTSGenerateRequest
from api.protocols.openai.requests import OpenAISpeechRequest
from core.voices import Voice
from processing.voice_description import VoiceAttributeError, VoiceAttributes, describe_voice
from services.deployment.runtime import ModelRuntime
from services.pipeline.speech import SpeechRequest, described_voice, stretch_for
from services.pipeline.synthesis import SamplingOptions
from shared.settings import Settings
from tests.conftest import wait_in_portal
from tests.unit.services.continuity.test_continuity import RecordingEngine

KEY_A, KEY_B = "describe-key-a", "describe-key-b"
A, B = {"Authorization": f"Bearer {KEY_A}"}, {"Authorization": f"Bearer {KEY_B}"}
SETTINGS = Settings()


@pytest.mark.parametrize(
    ("text", "header", "ignored"),
    [
        ("a low, slow male voice", "gender=male; pitch=low; speed_level=low", ()),
        ("high-pitched woman, fast", "gender=female; pitch=high; speed_level=high", ()),
        ("very deep voice", "pitch=very_low", ()),
        ("a cheerful lady at a very high speed", "gender=female; speed_level=very_high", ("cheerful",)),
        ("whisper, please", "", ("whisper", "please")),
        ("normal pace, really", "speed_level=moderate", ("really",)),
        ("male, no, female", "gender=female", ("no",)),  # the later word wins
    ],
)
def test_the_reader_maps_the_documented_words(text: str, header: str, ignored: tuple[str, ...]) -> None:
    described = describe_voice(text)
    assert described.attributes.header() == header
    assert described.ignored == ignored


def test_ignored_words_travel_percent_encoded_and_bad_labels_are_refused() -> None:
    assert describe_voice("très doux").ignored_header() == "tr%C3%A8s doux"
    with pytest.raises(VoiceAttributeError) as caught:
        VoiceAttributes(pitch="loud")
    assert caught.value.field == "pitch"


def test_every_http_body_carries_the_attributes_and_fields_win_over_instructions() -> None:
    native = TTSGenerateRequest(text="Hi.", gender="male", pitch="low").to_speech_request(SETTINGS)
    assert native.voice_attributes == VoiceAttributes("male", "low", None)
    openai = OpenAISpeechRequest(input="Hi.", voice="alloy", instructions="a fast, deep woman", pitch="high")
    assert openai.to_speech_request(SETTINGS).voice_attributes == VoiceAttributes("female", "high", "high")
    plain = OpenAISpeechRequest(input="Hi.", instructions="Speak warmly.").to_speech_request(SETTINGS)
    assert plain.voice_attributes is None  # nothing named: the voice as asked
    with pytest.raises(ValueError, match="voice attributes"):
        TTSGenerateRequest(text="Hi.", gender="male", reference_audio="AAAA")


def test_a_described_voice_fills_in_from_the_named_voice_and_speed_stays_a_stretch() -> None:
    base = Voice(id="deep", name="Deep", kind="style", gender="male", pitch="very_low", speed="high")
    voice = described_voice(base, VoiceAttributes(pitch="high"))
    assert (voice.kind, voice.gender, voice.pitch, voice.speed) == ("style", "male", "high", "high")
    assert voice.id == "described:male:high:high"
    tokens = Voice(id="t", name="T", kind="global_tokens", global_tokens=tuple(range(32)))
    assert described_voice(tokens, VoiceAttributes(speed_level="low")).gender == "female"
    sampling = SamplingOptions.with_defaults(SETTINGS)
    asked = SpeechRequest("Hi.", None, "wav", 16000, sampling, speed=1.5)
    with_level = SpeechRequest(
        "Hi.", None, "wav", 16000, sampling, speed=1.5, voice_attributes=VoiceAttributes(speed_level="low")
    )
    assert stretch_for(with_level, voice) == 1.5  # the level is the request's; speed is all time-stretch
    assert stretch_for(asked, voice) == pytest.approx(1.5 / 1.35)  # the high label (1.35x), then the rest


@pytest.fixture(scope="module")
def client(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=True,
        api_keys=f"{KEY_A},{KEY_B}",
        warmup=False,
        log_json=False,
        sr_enabled=False,
        voice_dir=tmp_path_factory.mktemp("voices"),
        default_max_tokens=60,
        rate_limit_per_minute=10_000,
    )
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as test_client:
        wait_in_portal(test_client, lambda: runtime.ready)
        runtime.engine = RecordingEngine(runtime.engine)
        yield test_client


def last_prompt(client: TestClient) -> str:
    runtime = client.app.state.runtime
    return runtime.tokenizer.decode(runtime.engine.prompts[-1])


def test_native_fields_make_a_controllable_prompt_with_those_labels(client: TestClient) -> None:
    response = client.post(
        "/v1/tts/generate",
        headers=A,
        json={"text": "Hello.", "gender": "male", "pitch": "very_low", "speed_level": "high"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Voice"] == "described:male:very_low:high"
    prompt = last_prompt(client)
    assert "<|task_controllable_tts|>" in prompt
    assert "<|gender_1|><|pitch_label_0|><|speed_label_3|>" in prompt


def test_openai_instructions_say_what_was_understood_and_what_was_ignored(client: TestClient) -> None:
    response = client.post(
        "/v1/audio/speech",
        headers=A,
        json={"input": "Hello.", "voice": "alloy", "instructions": "A low, slow male voice, cheerful."},
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Voice-Description"] == "gender=male; pitch=low; speed_level=low"
    assert response.headers["X-Voice-Description-Ignored"] == "cheerful"
    assert "<|gender_1|><|pitch_label_1|><|speed_label_1|>" in last_prompt(client)
    nothing = client.post(
        "/v1/audio/speech", headers=A, json={"input": "Hi.", "voice": "alloy", "instructions": "Warmly."}
    )
    assert nothing.headers["X-Voice-Description"] == "none"
    assert "X-Voice" in nothing.headers and not nothing.headers["X-Voice"].startswith("described:")


def test_a_designed_voice_keeps_its_globals_and_reuses_them_exactly(client: TestClient) -> None:
    body = {"name": "Deep narrator", "gender": "male", "pitch": "low", "speed_level": "low", "seed": 7}
    created = client.post("/v1/audio/voices/design", headers=A, json=body)
    assert created.status_code == 201, created.text
    voice = created.json()
    assert len(voice["global_tokens"]) == 32
    design_prompt = client.app.state.runtime.engine.prompts[-1]
    # The same labels and seed invent the same globals (the demo checkpoint is deterministic).
    again = client.post("/v1/audio/voices/design", headers=A, json={**body, "name": "Twin"})
    assert again.json()["global_tokens"] == voice["global_tokens"]
    spoken = client.post("/v1/tts/generate", headers=A, json={"text": "Same voice.", "speaker": voice["id"]})
    assert spoken.status_code == 200, spoken.text
    prompt = last_prompt(client)
    stored = "".join(f"<|bicodec_global_{g}|>" for g in voice["global_tokens"])
    assert "<|task_tts|>" in prompt and stored in prompt  # a clone prompt with exactly the stored tokens
    assert client.app.state.runtime.engine.prompts[-1] != design_prompt
    # Another key does not see it.
    other = client.post("/v1/tts/generate", headers=B, json={"text": "Hi.", "speaker": voice["id"]})
    assert other.status_code == 404
    bad = client.post("/v1/audio/voices/design", headers=A, json={**body, "pitch": "loud"})
    assert bad.status_code == 400


MALE_LOW_FAST = "<|gender_1|><|pitch_label_1|><|speed_label_3|>"


def test_every_dialect_takes_the_attributes_where_it_names_a_voice(client: TestClient) -> None:
    eleven = client.post(
        "/v1/text-to-speech/default?output_format=pcm_16000",
        headers={"xi-api-key": KEY_A},
        json={"text": "Hello.", "voice_settings": {"gender": "male", "pitch": "low", "speed_level": "high"}},
    )
    assert eleven.status_code == 200, eleven.text
    assert MALE_LOW_FAST in last_prompt(client)
    cartesia = client.post(
        "/tts/bytes",
        headers={**A, "Cartesia-Version": "2026-03-01"},
        json={
            "transcript": "Hello.",
            "voice": {"mode": "id", "id": "default", "gender": "male", "pitch": "low", "speed_level": "high"},
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        },
    )
    assert cartesia.status_code == 200, cartesia.text
    assert MALE_LOW_FAST in last_prompt(client)
    with client.websocket_connect("/v1/tts/ws", headers=A) as ws:
        ws.send_json(
            {"text": "Hello.", "format": "pcm", "gender": "male", "pitch": "low", "speed_level": "high"}
        )
        event: dict = {}
        while event.get("type") not in ("done", "error"):
            message = ws.receive()
            if message.get("text"):
                event = json.loads(message["text"])
        assert event["type"] == "done", event
    assert MALE_LOW_FAST in last_prompt(client)


def test_the_dialect_sockets_take_the_attributes_on_a_contexts_first_message(client: TestClient) -> None:
    eleven = f"/v1/text-to-speech/default/stream-input?output_format=pcm_16000&xi_api_key={KEY_A}"
    settings = {"gender": "male", "pitch": "low", "speed_level": "high"}
    with client.websocket_connect(eleven) as ws:
        for message in ({"text": " ", "voice_settings": settings}, {"text": "Hello. "}, {"text": ""}):
            ws.send_text(json.dumps(message))
        while not (reply := json.loads(ws.receive_text())).get("isFinal"):
            assert "error" not in reply, reply
    assert MALE_LOW_FAST in last_prompt(client)
    with client.websocket_connect(f"/tts/websocket?cartesia_version=2026-03-01&api_key={KEY_A}") as ws:
        ws.send_text(
            json.dumps(
                {
                    "context_id": "c1",
                    "transcript": "Good night.",
                    "continue": False,
                    "voice": {"mode": "id", "id": "default", "gender": "female", "pitch": "very_high"},
                    "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
                }
            )
        )
        while (reply := json.loads(ws.receive_text())).get("type") != "done":
            assert reply.get("type") != "error", reply
    assert "<|gender_0|><|pitch_label_4|><|speed_label_2|>" in last_prompt(client)
