"""The `estimate` method while the audio is still arriving: words are placed, once and for good, as soon as the audio
decoded so far settles them, so their timing can travel beside the audio instead of after the whole text chunk.

What the offline estimate (`core.align.estimate`) knows that a stream does not is the end: the whole text's speaking
rate and every pause. Here, on each `feed`:

1. Closed pauses (silent runs of at least `MIN_PAUSE_FRAMES` with speech after them) in the unsettled audio are taken
   in order. At each, the speech since the last settled point either ends a group of words or does not, by the
   offline method's costs applied greedily: the best number of words k (at least one left for the speech after
   the pause) costs how far the group's rate is from the expected rate, minus the punctuation bonus of its last
   word; the group is cut when that beats the cost of skipping the pause (longer pauses cost more to skip). A cut
   places the group's words on its voiced frames, as the offline method does inside a group.
2. Past the last cut, words whose end at the expected rate lies at least `KEEP_S` before the decoded edge are
   placed at that rate (all but the last word or two of what has been decoded).
3. `finish` places the words still open on the rest of the audio with the offline method (its full search).

The expected rate (units per voiced second) starts from `rate` (a previous text chunk's, or `PRIOR_RATE`) and
follows the groups cut at pauses. What is placed is never moved: later words start where it ends. The level
threshold (95th percentile of the frames so far) only decides pauses in audio not yet settled.

Never raises on any audio or words: the offline method's result, or words spread evenly (`spread`), in the worst
case (`core.align.estimate` has the same property, tested with Hypothesis).
"""

from __future__ import annotations

import numpy as np

from core.align.estimate import (
    FRAME,
    FRAME_S,
    MIN_PAUSE_FRAMES,
    PUNCT_BONUS,
    RATE_WEIGHT,
    RELATIVE_DB,
    SAMPLE_RATE,
    SKIP_SCALE_S,
    _place,
    estimate_alignment,
)
from core.align.types import WordSpan, clamped
from core.align.units import expected_units, pause_weight

PRIOR_RATE = 4.5  # expected units (syllables) per voiced second before any group was measured
KEEP_S = 0.05  # words the expected rate ends this close to the decoded edge (the one straddling it) wait
RATE_MEMORY_S = 2.0  # the prior counts as this many seconds of measured speech when the rate is updated


def spread(words: list[str], start: float, end: float) -> list[WordSpan]:
    """Words shared evenly (by expected units) over [start, end]: the fallback that cannot fail."""
    if not words:
        return []
    units = np.array([expected_units(w) for w in words], np.float64)
    edges = start + (max(end, start) - start) * np.concatenate(([0.0], np.cumsum(units))) / units.sum()
    spans = [WordSpan(w, float(a), float(b)) for w, a, b in zip(words, edges, edges[1:], strict=False)]
    return clamped(spans, start, max(end, start))


class IncrementalEstimate:
    """One piece of speech (a text chunk): `feed` its 16 kHz audio as it is decoded and get the words it settles;
    `finish` once the audio is complete for the others. Times are seconds from the piece's first sample."""

    def __init__(self, words: list[str], *, rate: float | None = None) -> None:
        self.words = [w for w in words if w.strip()]
        self.units = np.array([expected_units(w) for w in self.words], np.float64)
        self.rate = rate if rate and np.isfinite(rate) and rate > 0 else PRIOR_RATE
        self._prior = self.rate
        self._measured_units = 0.0
        self._measured_s = 0.0
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._db = np.zeros(0)  # level of each complete frame so far
        self._tail = np.zeros(0, np.float32)  # samples of the frame not yet complete
        self.placed = 0  # words[:placed] have been settled
        self._from = 0  # first frame not owned by a settled word
        self._floor = 0.0  # end of the last settled word (seconds)

    @property
    def duration(self) -> float:
        return self._samples / SAMPLE_RATE

    def feed(self, audio: np.ndarray, *, settle: bool = True) -> list[WordSpan]:
        """Add audio; the words it settles (none with `settle=False`: kept for `finish`)."""
        samples = np.nan_to_num(np.asarray(audio, np.float32).reshape(-1), nan=0.0, posinf=1.0, neginf=-1.0)
        if not samples.size:
            return []
        self._chunks.append(samples)
        self._samples += samples.size
        data = np.concatenate((self._tail, samples))
        whole = data.size // FRAME
        if whole:
            frames = data[: whole * FRAME].reshape(whole, FRAME).astype(np.float64)
            self._db = np.concatenate((self._db, 10.0 * np.log10(np.mean(np.square(frames), axis=1) + 1e-12)))
        self._tail = data[whole * FRAME:]
        if not settle or self.placed >= len(self.words) - 1:
            return []  # the last word waits for the end
        return self._settle()

    def finish(self) -> list[WordSpan]:
        """The words not settled yet, on the rest of the audio (offline search there)."""
        rest = self.words[self.placed:]
        if not rest:
            return []
        end = self.duration
        start = min(self._from * FRAME_S, end)
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        try:
            spans = list(estimate_alignment(audio[int(round(start * SAMPLE_RATE)):], rest).words)
            spans = [s.shifted(start) for s in spans]
        except Exception:  # noqa: BLE001 - timing must never fail the request; the even spread cannot fail
            spans = spread(rest, start, end)
        return self._commit(spans, len(rest))

    # ------------------------------------------------------------------ internals
    def _commit(self, spans: list[WordSpan], count: int) -> list[WordSpan]:
        out = clamped(spans, self._floor, self.duration)
        self.placed += count
        if out:
            self._floor = out[-1].end
        return out

    def _voiced(self) -> np.ndarray:
        db = self._db
        loud = np.percentile(db, 95)
        voiced = db > max(loud - RELATIVE_DB, -90.0)
        if len(voiced) >= 3:
            blip = voiced[1:-1] & ~voiced[:-2] & ~voiced[2:]
            voiced[1:-1] &= ~blip
        return voiced

    def _settle(self) -> list[WordSpan]:
        if len(self._db) <= self._from:
            return []
        voiced = self._voiced()
        out: list[WordSpan] = []
        speech = np.flatnonzero(voiced[self._from:]) + self._from
        if not len(speech):
            return []
        start = int(speech[0])  # the open group's first speech frame
        in_pause = np.zeros(len(voiced), bool)
        gaps = np.flatnonzero(np.diff(speech) > MIN_PAUSE_FRAMES)
        for g in gaps:  # closed pauses, in order
            p_start, p_end = int(speech[g]) + 1, int(speech[g + 1])
            if self.placed >= len(self.words) - 1:
                break
            timeline = np.flatnonzero(~in_pause[start:p_start]) + start
            k = self._cut(len(timeline) * FRAME_S, (p_end - p_start) * FRAME_S)
            in_pause[p_start:p_end] = True
            if k is None:
                continue  # the pause is inside a group
            group = self.words[self.placed:self.placed + k]
            spans = _place(group, self.units[self.placed:self.placed + k], timeline, at=start)
            self._learn(float(self.units[self.placed:self.placed + k].sum()), len(timeline) * FRAME_S)
            out += self._commit(spans, k)
            self._from = start = p_end
        # Past the last cut: the words the expected rate ends KEEP_S before the decoded edge.
        timeline = np.flatnonzero(~in_pause[start:]) + start
        left = len(self.words) - 1 - self.placed
        if left <= 0 or not len(timeline):
            return out
        ends = np.cumsum(self.units[self.placed:self.placed + left]) / self.rate
        count = int(np.searchsorted(ends, len(timeline) * FRAME_S - KEEP_S, side="right"))
        if count:
            used = min(len(timeline), max(1, int(round(ends[count - 1] / FRAME_S))))
            spans = _place(self.words[self.placed:self.placed + count], self.units[self.placed:self.placed + count],
                           timeline[:used], at=start)
            out += self._commit(spans, count)
            self._from = int(timeline[used - 1]) + 1
        return out

    def _cut(self, voiced_s: float, pause_s: float) -> int | None:
        """How many open words the speech before a pause holds, or None when the pause is inside a group."""
        if voiced_s <= 0:
            return None
        open_units = self.units[self.placed:len(self.words) - 1]  # at least one word for the speech after
        if not len(open_units):
            return None
        cumulative = np.cumsum(open_units)
        bonus = np.array([pause_weight(w) for w in self.words[self.placed:self.placed + len(open_units)]])
        cost = RATE_WEIGHT * np.square(np.log(voiced_s) - np.log(cumulative / self.rate)) - PUNCT_BONUS * bonus
        best = int(np.argmin(cost))
        skip = (pause_s / SKIP_SCALE_S) ** 2
        return best + 1 if cost[best] < skip else None

    def _learn(self, units: float, seconds: float) -> None:
        """Follow the speaker's rate from groups cut at pauses (the prior weighs RATE_MEMORY_S seconds)."""
        if seconds <= 0 or units <= 0:
            return
        self._measured_units += units
        self._measured_s += seconds
        self.rate = (self._prior * RATE_MEMORY_S + self._measured_units) / (RATE_MEMORY_S + self._measured_s)
