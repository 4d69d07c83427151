"""ElevenLabs' voice search matches where a word starts: "male" is not found inside "female"."""

from __future__ import annotations

from api.protocols.elevenlabs.voices import _matches


def _voice(name: str, gender: str) -> dict[str, object]:
    return {"name": name, "description": None, "category": "premade", "labels": {"gender": gender}}


def test_a_search_term_matches_at_the_start_of_a_word() -> None:
    female, male = _voice("Female, high pitch", "female"), _voice("Male, low pitch", "male")
    assert [_matches(v, "male") for v in (female, male)] == [False, True]
    assert [_matches(v, "FEM") for v in (female, male)] == [True, False]
    assert _matches(male, "low  pitch") and not _matches(male, "ow pitch")
    assert _matches(male, "") and _matches(male, None) and _matches(male, "  ")
    assert _matches(_voice("Deep_voice", "male"), "voice")  # an underscore separates words
