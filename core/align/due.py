"""Words whose playback is due, placed now by the estimate as it stands.

The incremental estimate (`core.align.incremental`) holds a word ending in punctuation, and every word after it, until
a pause closes where the search can cut: right when the speaker paused there, but on a reply running seconds ahead of
its client, words held that way reached the client after they had played (LiveKit's transcript then lost them). A
stream's playback clock knows where its client can be before the next piece goes out (`due_s`): each word the rate
begins before then is settled at once, after the last settled word (from its group's first speech frame when it opens
one), at the expected rate. Settled words are never moved: later words start where these end, and the search goes on
from there. The chunk's last word still waits for the end (its audio ends the chunk's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.align.estimate import FRAME_S
from core.align.types import WordSpan

if TYPE_CHECKING:
    from core.align.incremental import IncrementalEstimate


def place_due(inc: IncrementalEstimate, due_s: float) -> list[WordSpan]:
    """Settle the open words the rate begins before `due_s` (seconds from the piece's start, within the audio decoded
    so far); the spans settled, in order."""
    first, last = inc.placed, len(inc.words) - 1
    horizon = min(due_s, inc.duration)
    if first >= last or horizon <= inc._floor:
        return []
    start = inc._floor
    if inc._phrase_word == first and inc._phrase_frame is not None:  # the word opens a group: from its speech
        start = max(start, inc._phrase_frame * FRAME_S)
    units = inc.units[first:last]
    ends = start + np.cumsum(units) / inc.rate
    starts = np.concatenate(([start], ends[:-1]))
    count = int(np.searchsorted(starts, horizon, side="left"))
    if not count:
        return []
    spans = [
        WordSpan(word, round(float(a), 3), round(float(b), 3))
        for word, a, b in zip(inc.words[first : first + count], starts, ends, strict=False)
    ]
    out = inc._commit(spans, count)
    inc._from = max(inc._from, min(int(np.ceil(inc._floor / FRAME_S)), len(inc._db)))
    return out
