"""The `estimate` method while the audio is still arriving: words are placed, once and for good, as soon as the audio
decoded so far settles them, so their timing can travel beside the audio instead of after the whole text chunk.

What the offline estimate (`core.align.estimate`) knows that a stream does not is the end: the whole text's speaking
rate and every pause. Here, on each `feed`:

1. Closed pauses (silent runs of at least `MIN_PAUSE_FRAMES` with speech after them) in the unsettled audio: the
   offline method's search over them (`_groups`), with the expected rate in place of the whole text's and the number
   of words free, segments the open words into groups ending at chosen pauses. Its groups are placed on their
   voiced frames as the offline method does, all but the one ending at the last closed pause unless that pause is
   long (>= 150 ms). Without the offline method's "every word is used" to keep the last group's count honest, the
   rate weighs more there and any punctuation counts alike.
2. Past the last group, every word the expected rate begins before the decoded edge is placed at that rate, the one
   straddling the edge up to the edge. Then each word's span is sent with the audio piece in which it
   begins, so it reaches the client before the word has finished playing whenever the stream is ahead of playback
   (a word that begins after the last piece's edge ends after it too, and playback has not passed that edge).
3. `finish` places the words still open on the rest of the audio with the offline method (its full search).

Measured on synthetic speech (bench/bench_timing_latency.py --simulate): mean word-start error 101 ms against the
offline method's 59 ms on 170-character text chunks (a chunk's end re-anchors the next); no word late on a simulated
playback clock with the engine at twice real time.

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
    MAX_SKIPPED,
    MIN_PAUSE_FRAMES,
    PUNCT_BONUS,
    RATE_WEIGHT,
    SAMPLE_RATE,
    SKIP_SCALE_S,
    _place,
    estimate_alignment,
    voiced_levels,
)
from core.align.types import WordSpan, clamped
from core.align.units import expected_units, pause_weight

PRIOR_RATE = 4.5  # expected units (syllables) per voiced second before any group was measured
END_RATE_FACTOR = 4.0  # see `_groups`
LAST_GROUP_SKIP = 1.0  # see `_groups`
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
        self._phrase_word = 0  # the current group's first word (groups end at pauses)
        self._phrase_frame: int | None = None  # the current group's first speech frame
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
        """Settle `count` words: monotonic after the last settled word, inside the audio so far."""
        out = clamped(spans, self._floor, self.duration)
        self.placed += count
        if out:
            self._floor = out[-1].end
        return out

    def _settle(self) -> list[WordSpan]:
        last = len(self.words) - 1  # the last word always waits for the end
        if len(self._db) <= self._from:
            return []
        voiced = voiced_levels(self._db)
        if self._phrase_frame is None:  # the current group's speech has not begun yet
            begun = np.flatnonzero(voiced[self._from:])
            if not len(begun):
                return []
            self._phrase_frame = self._from + int(begun[0])
        start = self._phrase_frame
        speech = np.flatnonzero(voiced[start:]) + start
        pauses = [(int(speech[g]) + 1, int(speech[g + 1])) for g in np.flatnonzero(np.diff(speech) > MIN_PAUSE_FRAMES)]
        in_pause = np.zeros(len(voiced), bool)
        for a, b in pauses:
            in_pause[a:b] = True
        timeline = np.flatnonzero(~in_pause[start:]) + start  # the open group's speech frames, pauses left out
        out: list[WordSpan] = []
        closed = [(a, b) for a, b in pauses if a >= self._from]  # where a group may still end
        if closed and self.placed < last:
            for stop, (p_start, p_end) in self._groups(timeline, closed):
                first = self.placed
                group = timeline[(timeline >= self._phrase_frame) & (timeline < p_start)]
                if stop > first:  # the words not settled by rate yet share the group's frames after the settled ones
                    rest = group[group >= self._from]
                    out += self._commit(_place(self.words[first:stop], self.units[first:stop], rest, at=self._from),
                                        stop - first)
                if first == self._phrase_word:  # a group partly settled by rate would teach the rate back to itself
                    self._learn(float(self.units[first:stop].sum()), len(group) * FRAME_S)
                self._phrase_word, self._phrase_frame, self._from = stop, p_end, p_end
            timeline = timeline[timeline >= self._phrase_frame]
        # Past the last cut: every word the expected rate begins before the decoded edge, the one straddling the edge
        # up to the edge (no span passes the audio). So each word's span is sent with the piece in which it begins.
        if self.placed >= last or not len(timeline):
            return out
        units = self.units[self._phrase_word:last]
        ends = np.cumsum(units) / self.rate
        total = int(np.searchsorted(ends - units / self.rate, len(timeline) * FRAME_S, side="left"))
        first, stop = self.placed, self._phrase_word + total
        if stop > first:
            used = max(1, int(round(ends[total - 1] / FRAME_S)))
            beyond = np.arange(len(self._db), len(self._db) + max(0, used - len(timeline)))
            frames = np.concatenate((timeline, beyond))[:used]
            frames = frames[frames >= self._from]
            out += self._commit(_place(self.words[first:stop], self.units[first:stop], frames, at=self._from),
                                stop - first)
            self._from = max(self._from, int(frames[-1]) + 1 if len(frames) else self._from)
        return out

    def _groups(self, timeline: np.ndarray, closed: list[tuple[int, int]]) -> list[tuple[int, tuple[int, int]]]:
        """The groups the closed pauses settle: (word index the group ends before, its pause), in order.

        The offline method's search (`estimate._assign`) over the open group's start and the closed pauses, with
        the expected rate in place of the whole text's and the number of words free: the best segmentation of some
        prefix of the open words that ends at the last closed pause. Its groups are kept but the last, which is
        kept only when its pause is long enough to end a group whatever follows (skipping it would cost >= 1)."""
        base = self._phrase_word
        n = len(self.words) - 1 - base  # open words a group may take (one is left for the speech after)
        low = max(1, self.placed - base)  # the first group holds at least the words already settled in it
        if n < low:
            return []
        positions = np.concatenate(([0.0], [np.count_nonzero(timeline < a) * FRAME_S for a, _ in closed]))
        skip = np.array([((b - a) * FRAME_S / SKIP_SCALE_S) ** 2 for a, b in closed])
        cumulative = np.concatenate(([0.0], np.cumsum(self.units[base:base + n])))
        bonus = np.array([0.0] + [pause_weight(w) for w in self.words[base:base + n]])
        units = cumulative[None, :] - cumulative[:, None]  # units[j', j]: words j'..j-1
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = np.where(units > 0, np.log(np.maximum(units, 1e-9) / self.rate), np.inf)
        nodes = len(closed) + 1
        cost = np.full((nodes, n + 1), np.inf)
        cost[0, 0] = 0.0
        back = np.zeros((nodes, n + 1, 2), np.int64)
        for b in range(1, nodes):
            for a in range(max(0, b - 1 - MAX_SKIPPED), b):
                duration = positions[b] - positions[a]
                if duration <= 0 or not np.isfinite(cost[a]).any():
                    continue
                inside = skip[a:b - 1].sum()  # the pauses between nodes a and b are inside the group
                # A group ending at the last closed pause has no words after it to keep its count honest (the
                # offline search must use every word): there the rate weighs more against the punctuation bonus.
                weight = RATE_WEIGHT * (END_RATE_FACTOR if b == nodes - 1 else 1.0)
                group = weight * np.square(np.log(duration) - expected)
                if a == 0:
                    group[:, :low] = np.inf
                total = cost[a][:, None] + group
                prev = np.argmin(total, axis=0)
                # At the last pause any punctuation counts alike: a sentence end a few words on must not win over
                # the comma the rate points at (the offline search is kept honest by the words after it).
                ends_here = np.minimum(bonus, 1.0) if b == nodes - 1 else bonus
                best = total[prev, np.arange(n + 1)] + inside - PUNCT_BONUS * ends_here
                better = best < cost[b]
                cost[b] = np.where(better, best, cost[b])
                back[b][better] = np.stack((np.full(better.sum(), a), prev[better]), axis=1)
        if not np.isfinite(cost[-1]).any():
            return []
        chosen: list[tuple[int, tuple[int, int]]] = []
        node, j = nodes - 1, int(np.argmin(cost[-1]))
        while node > 0:
            chosen.append((base + j, closed[node - 1]))
            node, j = (int(x) for x in back[node, j])
        chosen.reverse()
        return chosen if skip[-1] >= LAST_GROUP_SKIP else chosen[:-1]

    def _learn(self, units: float, seconds: float) -> None:
        """Follow the speaker's rate from groups cut at pauses (the prior weighs RATE_MEMORY_S seconds)."""
        if seconds <= 0 or units <= 0:
            return
        self._measured_units += units
        self._measured_s += seconds
        self.rate = (self._prior * RATE_MEMORY_S + self._measured_units) / (RATE_MEMORY_S + self._measured_s)
