"""The estimate method on real speech (espeak-ng, English, Hindi and Chinese voices) joined with known pauses: every
phrase's first word starts and last word ends within 60 ms of the phrase's true edges, every word gets a span of
its own, in order."""

from __future__ import annotations

import pytest

from bench.espeak_speech import MORE_PHRASES, PHRASES, make_speech
from core.align import align, split_words

TOLERANCE_S = 0.06


@pytest.mark.parametrize("language", ["en", "hi", "zh"])
@pytest.mark.parametrize("phrases", [PHRASES, MORE_PHRASES], ids=["narrative", "short"])
def test_group_boundaries_sit_at_the_pauses(language: str, phrases: dict[str, list[str]]) -> None:
    speech = make_speech(language, phrases[language])
    words = split_words(speech.text)
    result = align(speech.audio, words)
    assert [w.text for w in result.words] == words
    assert all(w.end > w.start for w in result.words)  # every word spanned
    times = [t for w in result.words for t in (w.start, w.end)]
    assert times == sorted(times) and times[-1] <= len(speech.audio) / 16_000
    at = 0
    for phrase, start, end in speech.phrases:
        count = len(split_words(phrase))
        first, last = result.words[at], result.words[at + count - 1]
        assert abs(first.start - start) <= TOLERANCE_S, (phrase, first, start)
        assert abs(last.end - end) <= TOLERANCE_S, (phrase, last, end)
        at += count
