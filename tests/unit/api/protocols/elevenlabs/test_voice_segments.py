"""ElevenLabs' `voice_segments` (api/protocols/elevenlabs/voice_segments.py): each dialogue input's characters found
in the alignment however its whitespace was written, read all at once or line by line, and a cut answer."""

from __future__ import annotations

from api.protocols.elevenlabs.voice_segments import VoiceSegments

INPUTS = [("default", "Hi there."), ("narrator", "Hello!"), ("default", "Bye.")]


def spans(text: str, step: float = 0.1) -> list[tuple[str, float, float]]:
    return [(c, round(i * step, 3), round((i + 1) * step, 3)) for i, c in enumerate(text)]


def test_each_input_is_one_segment_with_its_characters_and_times() -> None:
    alignment = spans("Hi there. Hello! Bye.")
    tracker = VoiceSegments(INPUTS)
    segments = tracker.feed(alignment)
    assert tracker.finish() == []
    assert [s["voice_id"] for s in segments] == ["default", "narrator", "default"]
    assert [s["dialogue_input_index"] for s in segments] == [0, 1, 2]
    assert [(s["character_start_index"], s["character_end_index"]) for s in segments] == [
        (0, 9),
        (10, 16),
        (17, 21),
    ]
    assert segments[1]["start_time_seconds"] == 1.0 and segments[1]["end_time_seconds"] == 1.6
    written = "Hi there. Hello! Bye."
    assert [written[s["character_start_index"] : s["character_end_index"]] for s in segments] == [
        "Hi there.",
        "Hello!",
        "Bye.",
    ]


def test_lines_of_a_stream_give_each_segment_once_it_ends() -> None:
    tracker = VoiceSegments(INPUTS)
    alignment = spans(" Hi there.  Hello! Bye.")  # a leading space and two between inputs
    first = tracker.feed(alignment[:13])  # up to "He"
    assert [s["dialogue_input_index"] for s in first] == [0]
    assert (first[0]["character_start_index"], first[0]["character_end_index"]) == (1, 10)
    rest = tracker.feed(alignment[13:])
    assert [(s["character_start_index"], s["character_end_index"]) for s in rest] == [(12, 18), (19, 23)]
    assert not tracker.unfinished and tracker.finish() == []


def test_a_cut_answer_ends_its_segments() -> None:
    tracker = VoiceSegments(INPUTS)
    assert [s["dialogue_input_index"] for s in tracker.feed(spans("Hi there. Hel"))] == [0]
    assert tracker.unfinished
    cut = tracker.finish()
    assert [s["dialogue_input_index"] for s in cut] == [1, 2]
    assert (cut[0]["character_start_index"], cut[0]["character_end_index"]) == (10, 13)
    assert cut[1]["character_start_index"] == cut[1]["character_end_index"] == 13
