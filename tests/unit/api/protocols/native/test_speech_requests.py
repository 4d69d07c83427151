"""Protocol models convert themselves into one `SpeechRequest`; defaults are merged once; one format table."""

from __future__ import annotations

import typing
from dataclasses import replace

import pytest

from api.protocols.native.requests import StartMessage
from api.protocols.native.schemas import TTSGenerateRequest
from api.protocols.openai.requests import OpenAISpeechRequest
from audio.encoders import FORMATS, AudioFormat
from services.pipeline.speech import SpeechService
from services.pipeline.synthesis import SamplingOptions, SynthesisError
from shared.settings import FIELDS, Settings

SETTINGS = Settings(
    default_temperature=0.6,
    default_top_k=40,
    default_top_p=0.9,
    default_max_tokens=900,
    default_repetition_penalty=1.1,
)


def test_every_transport_builds_the_same_request_for_the_same_ask() -> None:
    http = TTSGenerateRequest(text="Hi.", speaker="alloy", stream=True, format="pcm", sample_rate=24000)
    openai = OpenAISpeechRequest(input="Hi.", voice="alloy", response_format="pcm")
    ws = StartMessage(speaker="alloy", format="pcm", sample_rate=24000)
    requests = [m.to_speech_request(SETTINGS) for m in (http, openai, ws)]
    for request in requests:
        assert (request.voice, request.audio_format, request.sample_rate, request.stream) == (
            "alloy",
            "pcm",
            24000,
            True,
        )
        assert request.sampling == SamplingOptions(0.6, 40, 0.9, 900, 1.1)
        assert request.wants_bandwidth_extension  # one output-rate decision: above 16 kHz
    assert requests[1].text_field == "input" and requests[1].voice_field == "voice"


def test_given_sampling_fields_win_over_the_defaults_and_speed_reaches_the_websocket() -> None:
    ws = StartMessage(temperature=0.0, seed=7, speed=1.5)
    request = ws.to_speech_request(SETTINGS)
    assert request.sampling == SamplingOptions(0.0, 40, 0.9, 900, 1.1, seed=7) and request.speed == 1.5
    assert StartMessage(speed=1.0).to_speech_request(SETTINGS).speed is None  # 1.0 means "as the voice is"


def test_format_literals_come_from_the_encoder_table() -> None:
    assert typing.get_args(AudioFormat) == tuple(FORMATS)


@pytest.mark.parametrize("fmt", ["mulaw", "alaw"])
def test_g711_formats_are_8_khz_on_every_native_transport(fmt: str) -> None:
    for message in (TTSGenerateRequest(text="Hi.", format=fmt), StartMessage(format=fmt)):
        request = message.to_speech_request(SETTINGS)
        assert (request.audio_format, request.sample_rate) == (fmt, 8000)
    with pytest.raises(ValueError, match="accepted: 8000"):
        TTSGenerateRequest(text="Hi.", format=fmt, sample_rate=16000)


def test_the_latency_names_are_the_streaming_decoders_everywhere() -> None:
    from api.http.fields import Latency
    from core.streaming import LatencyPreference

    assert Latency is LatencyPreference
    # shared/ sits below core/, so the setting spells the names out; they must stay the same set.
    assert typing.get_args(FIELDS["default_latency"].annotation) == typing.get_args(LatencyPreference)


def test_one_voice_error_for_every_transport() -> None:
    class Voices:
        default_voice_id = "default"

        def resolve(self, name):
            from core.voices import UnknownVoiceError

            raise UnknownVoiceError(name, ["default"])

    class Models:  # a ModelSource whose bundle carries only the voices
        voices = Voices()

        def pipeline_resources(self) -> Models:
            return self

    service = SpeechService(Models(), SETTINGS)  # type: ignore[arg-type]
    with pytest.raises(SynthesisError) as info:
        service.builtin_voice("nobody", field="voice")
    assert info.value.code == "INVALID_SPEAKER" and info.value.param == "voice"
    assert info.value.message.startswith("Invalid 'voice': ")


def test_a_reference_recording_reaches_the_speech_request_as_bytes() -> None:
    import base64

    audio = b"RIFF....WAVEfmt "
    http = TTSGenerateRequest(
        text="Hi.", reference_audio=base64.b64encode(audio).decode(), reference_text="Hello."
    )
    request = http.to_speech_request(SETTINGS)
    assert (request.reference_audio, request.reference_text, request.voice) == (audio, "Hello.", None)
    data_url = TTSGenerateRequest(
        text="Hi.", reference_audio="data:audio/wav;base64," + base64.b64encode(audio).decode()
    )
    assert data_url.to_speech_request(SETTINGS).reference_audio == audio
    for other in (OpenAISpeechRequest(input="Hi."), StartMessage()):
        assert other.to_speech_request(SETTINGS).reference_audio is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"speaker": "default", "reference_audio": "QUJD"}, "not both"),
        ({"reference_text": "Hello."}, "send that too"),
        ({"reference_audio": "%%%"}, "not valid base64"),
        ({"reference_audio": ""}, "is empty"),
    ],
)
def test_reference_fields_are_refused_with_reasons(fields: dict, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        TTSGenerateRequest(text="Hi.", **fields)


async def test_custom_and_reference_voices_need_the_voice_library() -> None:
    from core.voices import VoiceRegistry
    from services.errors import ServiceError
    from services.pipeline.speech import SpeechRequest
    from services.voice_library import new_voice_id

    class Models:  # a ModelSource whose bundle carries only the voices
        voices = VoiceRegistry.builtin()
        openai_custom_voices: dict[str, str] = {}

        def pipeline_resources(self) -> Models:
            return self

    service = SpeechService(Models(), SETTINGS)  # type: ignore[arg-type]
    base = SpeechRequest(
        text="Hi.",
        voice=None,
        audio_format="wav",
        sample_rate=16000,
        sampling=SamplingOptions.with_defaults(SETTINGS),
        voice_field="voice",
    )
    assert (await service.voice(base, "key_a")).id == "default"
    with pytest.raises(ServiceError) as info:
        await service.voice(replace(base, voice=new_voice_id()), "key_a")
    assert (info.value.code, info.value.param) == ("VOICE_NOT_FOUND", "voice")
    with pytest.raises(ServiceError) as refused:
        await service.voice(replace(base, reference_audio=b"RIFF"), "key_a")
    assert refused.value.code == "CLONING_UNAVAILABLE"


async def test_a_background_request_is_never_refused_for_load() -> None:
    """A job's chapter (work_class background) skips admission and the first-audio backlog: it waits for device time
    instead; a live request on the same overloaded server is refused."""
    from services.device.admission import AdmissionDecision
    from services.errors import ServiceError

    class Refusing:
        asked = 0

        async def admit(self, key: str | None = None, *, super_resolved: bool = True) -> AdmissionDecision:
            self.asked += 1
            return AdmissionDecision(False, "overloaded", rule="misses")

    admission = Refusing()

    class Models:
        ready = True
        idle = None  # no idle sleep
        continuations = None

        def pipeline_resources(self) -> Models:
            return self

    Models.admission = admission  # type: ignore[attr-defined]
    service = SpeechService(Models(), SETTINGS)  # type: ignore[arg-type]
    await service.check_available(key_id="k", live=False)
    assert admission.asked == 0
    with pytest.raises(ServiceError) as refused:
        await service.check_available(key_id="k")
    assert refused.value.code == "SERVER_OVERLOADED" and admission.asked == 1
