"""A request's text read once (processing/speech_document.py): segments, SSML pieces and rate, alias rules."""

from __future__ import annotations

import pytest

from processing.lexicon import AliasRule, Lexicon
from processing.speech_document import DocumentSegment, SsmlProblem, read_document


def test_plain_text_is_one_segment_with_nothing_to_read() -> None:
    document = read_document("Hello there.", Lexicon(()))
    assert document.segments == (DocumentSegment(None, "Hello there."),)
    assert document.plain and not document.marked and document.rate is None
    assert document.written == "Hello there."


def test_voice_markers_split_the_text_and_name_each_voice_once() -> None:
    document = read_document("A. [voice:ana] B. [voice:ben] C. [voice:ana] D.")
    assert document.voice_names == ("ana", "ben")
    assert [s.voice for s in document.segments] == [None, "ana", "ben", "ana"]
    assert "[" not in document.written


def test_ssml_is_read_into_pieces_and_its_rate_once() -> None:
    document = read_document('<speak><prosody rate="150%">Hi.<break time="1s"/>There.</prosody></speak>')
    assert document.ssml and document.rate == pytest.approx(1.5)
    assert document.segments[0].pieces == ("Hi.", 1.0, "There.")


def test_alias_rules_are_carried_and_ssml_problems_refused() -> None:
    rules = Lexicon((AliasRule("nginx", "engine x"),))
    assert read_document("nginx", rules).lexicon is rules
    with pytest.raises(SsmlProblem, match="never closed"):
        read_document('<speak><sub alias="x">y</speak>')
