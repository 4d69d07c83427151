"""The timing guarantee on a simulated clock: every word's span is sent before the word has finished
playing, counting real-time playback from the first audio byte.

Synthetic speech goes through a `TimestampTrack` the way the pipeline feeds it, text chunks as the planner cuts them,
with the engine at twice real time (bench/sim/timestamps.py, shared with bench_timing_latency.py --simulate); the
aligner's own time counts as nothing here (bench/bench_timing_latency.py measures it on the real server).
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.sim.timestamps import RATE, PlaybackFeed, speech
from processing.chunking import split_text
from services.pipeline.timestamps import TimestampTrack
from tests.texts import LONG_ENGLISH


@pytest.mark.parametrize("seed", range(6))
def test_every_span_is_sent_before_its_word_has_finished_playing(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rate = rng.uniform(3.7, 5.5)  # units (syllables) per voiced second: +-20 % around the aligner's prior
    chunks = split_text(LONG_ENGLISH, 170)
    track = TimestampTrack()
    track.add_text(LONG_ENGLISH, " ".join(chunks))
    feed = PlaybackFeed(track)
    received = []  # (playback clock when sent, WordSpan)
    for index, chunk in enumerate(chunks):
        received += feed.chunk(chunk, speech(chunk.split(), rate, rng)[0], last=index == len(chunks) - 1)
    assert [w.text for _, w in received] == LONG_ENGLISH.split()
    late = [(w.text, w.end, round(when, 3)) for when, w in received if when > w.end]
    assert not late, late
    ends = [w.end for _, w in received]
    assert ends == sorted(ends) and ends[-1] <= feed.sent / RATE
