"""Words due at playback (core.align.due): the incremental estimate holds a word ending in punctuation, and all after
it, until it hears a pause; once playback is near, the estimate as it stands goes at once, in order, after what was
settled, and never a word beginning past the due time or the audio heard, nor the chunk's last word."""

from __future__ import annotations

import numpy as np

from core.align import SAMPLE_RATE
from core.align.due import place_due
from core.align.incremental import IncrementalEstimate

WORDS = "we left early, before the sun was up, and then drove north along the coast all day".split()


def _speech(seconds: float) -> np.ndarray:
    """Steady noise: speech with no pause, so nothing after a comma is settled by the search."""
    return np.random.default_rng(0).normal(0, 0.3, int(seconds * SAMPLE_RATE)).astype(np.float32)


def test_words_held_after_a_comma_go_once_playback_is_near() -> None:
    inc = IncrementalEstimate(WORDS)
    settled = inc.feed(_speech(3.0))
    assert inc.placed < WORDS.index("sun")  # held at "early," (no pause heard)
    due = place_due(inc, 2.0)
    assert due and [s.text for s in settled + due] == WORDS[: len(settled) + len(due)]
    assert all(s.start < 2.0 for s in due)
    starts = [s.start for s in settled + due]
    assert starts == sorted(starts) and all(s.start <= s.end for s in due)
    assert place_due(inc, 2.0) == []  # placed once: nothing twice
    # Later audio goes on from there; never the last word before the end, never past the audio heard.
    inc.feed(_speech(1.0))
    more = place_due(inc, 60.0)
    assert inc.placed <= len(WORDS) - 1 and all(s.start <= inc.duration for s in more)
    rest = inc.finish()
    assert [s.text for s in rest][-1] == WORDS[-1]
