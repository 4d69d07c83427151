"""The estimate method on real speech (espeak-ng, English, Hindi and Chinese voices) joined with known pauses, aligned
whole and streamed (the incremental aligner fed the decoder's pieces): every phrase's first word starts and last
word ends within 60 ms of the phrase's true edges, every word gets a span of its own, in order.

Pauses the text does not announce (no punctuation) are not held to this: bench/bench_align.py reports them."""

from __future__ import annotations

import pytest

from bench.espeak_speech import MORE_PHRASES, PHRASES, edge_errors, make_speech, streamed
from core.align import align, split_words

TOLERANCE_S = 0.06


@pytest.mark.parametrize("method", ["whole", "streamed"])
@pytest.mark.parametrize("language", ["en", "hi", "zh"])
@pytest.mark.parametrize("phrases", [PHRASES, MORE_PHRASES], ids=["narrative", "short"])
def test_group_boundaries_sit_at_the_pauses(
    method: str, language: str, phrases: dict[str, list[str]]
) -> None:
    speech = make_speech(language, phrases[language])
    words = split_words(speech.text)
    spans = list(align(speech.audio, words).words) if method == "whole" else streamed(speech.audio, words)
    assert [w.text for w in spans] == words
    assert all(w.end > w.start for w in spans)  # every word spanned
    times = [t for w in spans for t in (w.start, w.end)]
    assert times == sorted(times) and times[-1] <= len(speech.audio) / 16_000
    errors = edge_errors(speech, spans)
    assert max(errors) <= TOLERANCE_S, [round(e, 3) for e in errors]
