"""ElevenLabs' `output_format` names, read from its SDK's own types: every one its text-to-speech and dialogue calls
offer is served by the HTTP routes (as the format, rate and bit rate its name says), every one its socket client
offers by the sockets; anything else is refused naming what is accepted."""

from __future__ import annotations

import typing

import pytest

from api.errors import ApiError
from api.protocols.elevenlabs.formats import SOCKET_CODECS, parse_output_format

sdk_types = pytest.importorskip("elevenlabs.types")
tts_types = pytest.importorskip("elevenlabs.text_to_speech.types")
dialogue_types = pytest.importorskip("elevenlabs.text_to_dialogue.types")

OURS = {"pcm": "pcm", "wav": "wav", "ulaw": "mulaw", "alaw": "alaw", "mp3": "mp3", "opus": "opus"}


def _names(alias: object) -> list[str]:
    """The literal names of one of the SDK's `Union[Literal[...], Any]` format types."""
    literal = next(arg for arg in typing.get_args(alias) if typing.get_origin(arg) is typing.Literal)
    return list(typing.get_args(literal))


# Each call's own type (the dialogue's streams take the SDK's shared `AllowedOutputFormats`).
HTTP_TYPES = [
    getattr(module, name)
    for module in (tts_types, dialogue_types)
    for name in dir(module)
    if name.endswith("RequestOutputFormat")
] + [sdk_types.AllowedOutputFormats]
HTTP_NAMES = sorted({n for t in HTTP_TYPES for n in _names(t)})


def test_the_sdk_offers_what_the_issue_names() -> None:
    assert len(HTTP_TYPES) >= 7
    assert {"wav_24000", "wav_44100", "opus_48000_64", "alaw_8000", "pcm_32000"} <= set(HTTP_NAMES)


@pytest.mark.parametrize("name", HTTP_NAMES)
def test_every_http_format_the_sdk_offers_is_served(name: str) -> None:
    codec, rate, *kbps = name.split("_")
    output = parse_output_format(name)
    assert (output.audio_format, output.sample_rate) == (OURS[codec], int(rate))
    assert output.bitrate == (int(kbps[0]) * 1000 if kbps else None)


@pytest.mark.parametrize("name", _names(sdk_types.OutputFormat))
def test_every_socket_format_the_sdk_offers_is_served(name: str) -> None:
    assert parse_output_format(name, SOCKET_CODECS).name == name


@pytest.mark.parametrize(
    ("name", "codecs"),
    [
        ("pcm_12345", None),
        ("mp3_44100", None),  # a bit rate is part of the name
        ("mp3_44100_100", None),  # not one of ElevenLabs' steps
        ("opus_44100_64", None),  # Ogg Opus has no 44.1 kHz
        ("wav_8000_64", None),
        ("flac_44100", None),
        ("", None),
        ("opus_48000_64", SOCKET_CODECS),  # the sockets keep the raw and mp3 formats
        ("alaw_8000", SOCKET_CODECS),
    ],
)
def test_others_are_refused_naming_the_accepted(name: str, codecs: tuple[str, ...] | None) -> None:
    with pytest.raises(ApiError) as refused:
        parse_output_format(name) if codecs is None else parse_output_format(name, codecs)
    assert refused.value.param == "output_format" and refused.value.code == "VALIDATION_ERROR"
    message = refused.value.message
    assert repr(name) in message and "pcm_8000|16000" in message and "ulaw_8000" in message
    assert ("; opus_" in message) == ("; wav_" in message) == (codecs is None)
