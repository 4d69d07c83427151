"""`[voice:NAME]` segments: the parser, the text plan (each chunk with its voice, markers never spoken or charged)
and the speech service's voices for them (an unknown name refused as the request's own voice would be)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.voices import VoiceRegistry
from processing.speech_document import read_document
from processing.voice_segments import (
    VoiceSegment,
    has_voice_markers,
    split_voice_segments,
    strip_voice_markers,
    voice_marker,
    voice_names,
)
from services.pipeline.markup import plan_document
from services.pipeline.speech import SpeechRequest, SpeechService
from services.pipeline.synthesis import SamplingOptions, SynthesisError
from services.pipeline.text_plan import TextPlan
from shared.settings import Settings

SETTINGS = Settings()
DIALOGUE = (
    "Good morning. [voice:male] Hello there, how are you? [voice:default] Fine, thanks. [voice:male] Good."
)


def test_text_before_the_first_marker_is_in_the_requests_voice_and_markers_hold_until_the_next() -> None:
    assert split_voice_segments(DIALOGUE) == [
        VoiceSegment(None, "Good morning. "),
        VoiceSegment("male", " Hello there, how are you? "),
        VoiceSegment("default", " Fine, thanks. "),
        VoiceSegment("male", " Good."),
    ]
    assert voice_names(DIALOGUE) == ["male", "default"]


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("[voice:a]Hi.", [VoiceSegment("a", "Hi.")]),
        ("[ Voice : a ] Hi.", [VoiceSegment("a", " Hi.")]),  # any case, spaces inside the brackets
        ("[voice:a]   [voice:b] Hi.", [VoiceSegment("b", " Hi.")]),  # a blank segment is dropped
        ("Hi [voice: a b] there.", [VoiceSegment(None, "Hi [voice: a b] there.")]),  # no spaces in a name
        ("[voice:] [laughs] [see above]", [VoiceSegment(None, "[voice:] [laughs] [see above]")]),
    ],
)
def test_marker_forms(text: str, segments: list[VoiceSegment]) -> None:
    assert split_voice_segments(text) == segments
    assert has_voice_markers(text) == any(s.voice for s in segments)


def test_text_without_markers_is_one_segment_and_the_markers_are_removed_for_the_word_map() -> None:
    assert not has_voice_markers("Plain text, [laughs] and [1].")
    assert split_voice_segments("Plain text.") == [VoiceSegment(None, "Plain text.")]
    assert strip_voice_markers("A. [voice:b] B.").split() == ["A.", "B."]


def test_a_marker_is_written_only_for_a_name_it_can_hold() -> None:
    assert voice_marker("voice_1a2b") == "[voice:voice_1a2b]"
    for bad in ("two words", "a]b", ""):
        with pytest.raises(ValueError, match="cannot be used"):
            voice_marker(bad)


def test_the_plan_gives_each_chunk_its_segments_voice_and_never_speaks_a_marker() -> None:
    plan = _plan(DIALOGUE)
    assert plan.chunk_voices == (None, "male", "default", "male")
    assert len(plan.chunks) == 4 and plan.chunked
    assert not any("voice" in chunk or "[" in chunk for chunk in plan.chunks)
    # Charged as the same text without markers (credits count plan.text).
    plain = _plan(strip_voice_markers(DIALOGUE))
    assert plan.text == plain.text and plain.chunk_voices == ()


def test_a_long_segment_is_chunked_within_its_voice() -> None:
    long = " ".join(["This sentence is spoken by the second voice of the dialogue."] * 12)
    plan = _plan(f"Short. [voice:male] {long} [voice:default] End.")
    voices = plan.chunk_voices
    assert voices[0] is None and voices[-1] == "default"
    assert voices[1:-1] == ("male",) * (len(voices) - 2) and len(voices) > 3


def test_a_segment_with_nothing_to_speak_is_dropped_and_a_text_of_none_is_refused() -> None:
    plan = _plan("[voice:male] 😀 [voice:default] Hi.")
    assert plan.chunk_voices == ("default",) and plan.chunks == ["Hi."]
    with pytest.raises(SynthesisError, match="nothing left to speak"):
        _plan("[voice:male] 😀 [voice:default]")


def _plan(text: str) -> TextPlan:
    return plan_document(read_document(text), SETTINGS, normalize=True, chunking=True)


class _Models:
    """A ModelSource whose bundle carries only the voices."""

    voices = VoiceRegistry.builtin()
    openai_custom_voices: dict[str, str] = {}

    def pipeline_resources(self) -> _Models:
        return self


def _speech(text: str, voice: str | None = None) -> SpeechRequest:
    return SpeechRequest(
        text=text,
        voice=voice,
        audio_format="wav",
        sample_rate=16000,
        sampling=SamplingOptions.with_defaults(SETTINGS),
        voice_field="voice",
    )


async def test_each_marker_voice_resolves_once_and_names_of_one_voice_share_it() -> None:
    service = SpeechService(_Models(), SETTINGS)  # type: ignore[arg-type]
    speech = _speech("A. [voice:male] B. [voice:echo] C. [voice:default] D.", voice="default")
    own = await service.voice(speech, None)
    voices = await service.segment_voices(speech, read_document(speech.text), own, None)
    assert voices["default"] is own  # the request's own voice: one speaker with the unmarked text
    assert voices["male"] is voices["echo"]  # an alias: the same speaker
    assert voices["male"].id == "male"


async def test_a_marker_naming_an_unknown_voice_is_refused_naming_the_marker_and_its_position() -> None:
    """The client wrote the marker in the text: the refusal names the text field, the marker and where it is, not
    the voice field the client never set."""
    service = SpeechService(_Models(), SETTINGS)  # type: ignore[arg-type]
    speech = _speech("A. [voice:male] B. [voice:nobody] C.")
    with pytest.raises(SynthesisError) as info:
        await service.segment_voices(
            speech, read_document(speech.text), await service.voice(speech, None), None
        )
    assert info.value.code == "INVALID_SPEAKER" and info.value.param == "text"
    message = info.value.message
    assert message.startswith("Invalid 'text': the voice marker '[voice:nobody]' at position 19 "), message
    assert "'nobody'" in message and "Invalid 'voice'" not in message


async def test_a_dialogue_input_naming_an_unknown_voice_is_refused_naming_its_voice_field() -> None:
    """ElevenLabs' dialogue writes the markers itself from each input's voice_id: that is the field to name."""
    service = SpeechService(_Models(), SETTINGS)  # type: ignore[arg-type]
    speech = replace(_speech("[voice:default] A.\n[voice:nobody] B."), text_field="inputs")
    with pytest.raises(SynthesisError) as info:
        await service.segment_voices(
            speech, read_document(speech.text), await service.voice(speech, None), None
        )
    assert info.value.code == "INVALID_SPEAKER" and info.value.param == "voice"
