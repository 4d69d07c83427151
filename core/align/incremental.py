"""The `estimate` method while the audio is still arriving: words are placed, once and for good, as soon as the audio
decoded so far settles them, so their timing can travel beside the audio instead of after the whole text chunk.

What the offline estimate (`core.align.estimate`) knows that a stream does not is the end: the whole text's speaking
rate and every pause. Here, on each `feed`:

1. Closed pauses (silent runs of at least `MIN_PAUSE_FRAMES` with speech after them) in the unsettled audio: the
   offline method's search over them (`_groups`), with the expected rate in place of the whole text's and the number
   of words free, segments the open words into groups ending at chosen pauses (the segmentation may end at any
   closed pause; as offline, punctuation inside a group costs its bonus and a group ending inside a Chinese word its
   cost, and so does punctuation the rate says was spoken in the speech heard after the last chosen pause). Its groups
   are placed on their voiced frames as the offline method does. A group ending on punctuation is kept; one ending at
   a pause the text does not announce is kept only when its words would have finished playing before the next piece
   is sent (`_deadline`: engine at twice real time), and the last one only when its pause is long (>= 200 ms): which
   words end there is the rate's guess, and phrases' rates differ, so it waits for more speech while playback allows.
   Without the offline method's "every word is used" to keep the last group's count honest, the rate weighs more
   there and any punctuation counts alike. Until 2 s of speech have measured the speaker the rate is searched as
   well, around the current estimate: groups must agree with one another rather than with the prior.
2. Past the last group, every word the expected rate begins before the last speech frame is placed at that rate,
   the one straddling the decoded edge up to the edge, but never a word ending in punctuation nor any after it (a
   rate a little off would carry words across the pause; the search decides those) unless the speech has stopped
   at the edge for a pause's length, when that word ends where the speech stopped (with the rate still searched,
   the first mark a plausible rate reaches; with no mark, the word the rate puts mostly past the stop waits). Before
   a long closed pause the search has not settled, only the words that would have finished playing before the next
   piece is sent are placed. Otherwise each word's span is sent with the audio piece in which it begins or with the
   pause after it, so it reaches the client before the word has finished playing whenever the stream is ahead of
   playback.
3. `finish` places the words still open on the rest of the audio with the offline method (its full search).

Measured on synthetic speech (bench/bench_timing_latency.py --simulate): mean word-start error 105 ms against the
offline method's 61 ms on 170-character text chunks (a chunk's end re-anchors the next); no word late on a simulated
playback clock with the engine at twice real time. On espeak-ng speech (bench/bench_align.py) phrase edges at pauses
after punctuation are within 20 ms (190 ms at 130-300 words a minute); at pauses the text does not announce, a group
settled before the speech after it is heard is the rate's guess: 18 ms in English, 0.76 s in Hindi (a phrase 15 %
faster than the others), seconds in Chinese (espeak's voice at 0.6 times the prior's rate); from the voice's measured
rate 18, 246 and 15 ms, but up to 1.5 s on other Chinese texts and at 130-300 words a minute.

The expected rate (units per voiced second) starts from `rate` (a previous text chunk's, taken as known), else from
`prior` (the voice's as its earlier output measured it, `core.align.rates`: searched, and weighed against this
stream's speech by the seconds it was measured on), else `PRIOR_RATE` (weighed as `PRIOR_RATE_S` of speech), and
follows the groups cut at pauses; `finish` measures the whole piece (all its words over its speech) for the next one.
What is placed is never moved: later words start where it ends. The level threshold (95th percentile of the frames so
far) only decides pauses in audio not yet settled.

Never raises on any audio or words: the offline method's result, or words spread evenly (`spread`), in the worst
case (`core.align.estimate` has the same property, tested with Hypothesis).
"""

from __future__ import annotations

import numpy as np

from core.align.estimate import (
    FRAME,
    FRAME_S,
    INSIDE_WORD_COST,
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
from core.align.rates import MeasuredRate
from core.align.types import WordSpan, clamped
from core.align.units import expected_units, inside_words, pause_weight

PRIOR_RATE = 4.5  # expected units (syllables) per voiced second before any group was measured
END_RATE_FACTOR = 3.0  # see `_groups`: a mark at the pause outweighs a phrase 30 % off the rate
LAST_GROUP_SKIP = 1.0  # see `_groups`
UNMEASURED_RATES = 15  # see `_groups`
UNMEASURED_RATE_SPAN = 0.8  # the rates searched span the prior times e^-0.8..e^0.8 (2.0-10 units/s)
RATE_PRIOR_WEIGHT = 1.0
# When the rate is updated, the language-blind prior (or a previous text chunk's rate) counts as this many seconds of
# measured speech; a voice's measured rate counts as the speech it was measured on. One phrase's rate is 12-24 % off
# the voice's (espeak-ng): a voice's rate measured on many phrases guesses the next better than a stream's first does.
PRIOR_RATE_S = 0.5
MEASURED_S = 2.0  # speech measured before the search takes the rate as known (`_rate_known`)
# Playback is assumed to start when the stream's first piece (FIRST_PIECE_S) is sent, and the engine to make audio at
# SPEEDUP times real time in pieces of at most MAX_PIECE_S (core.streaming's schedule: 25 tokens first, 200 at most):
# a word may wait for the next piece when it ends after where playback can be when that piece is sent (`_deadline`).
SPEEDUP = 2.0
FIRST_PIECE_S = 0.5
MAX_PIECE_S = 4.0


def _usable(rate: float | None) -> bool:
    return bool(rate and np.isfinite(rate) and rate > 0)


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

    def __init__(
        self,
        words: list[str],
        *,
        rate: float | None = None,
        prior: MeasuredRate | None = None,
        offset: float = 0.0,
    ) -> None:
        """`rate`: a previous text chunk's measured rate (this stream's speaker: taken as known); `prior`: the voice's
        rate as its earlier output measured it, in place of `PRIOR_RATE` (only a prior: a text may be spoken faster
        or slower than the voice's others, so the rate is still searched, and this stream's speech outweighs it once
        it is longer than the speech the prior was measured on); `offset`: where this piece of speech starts in the
        stream (seconds), for the playback deadline."""
        self.offset = offset
        self.words = [w for w in words if w.strip()]
        self.units = np.array([expected_units(w) for w in self.words], np.float64)
        self._in_word = np.array(inside_words(self.words), np.float64)  # [j]: the boundary before word j
        self._given = _usable(rate)  # a previous text chunk measured the speaker
        known = prior is not None and _usable(prior.rate) and prior.seconds > 0 and not self._given
        self.rate = float(rate) if rate and self._given else prior.rate if prior and known else PRIOR_RATE
        self._prior = self.rate
        self._prior_s = max(PRIOR_RATE_S, prior.seconds) if prior and known else PRIOR_RATE_S
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
        self.voiced_s = 0.0  # speech the finished piece measured `rate` on (0: too little to measure)

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
        self._tail = data[whole * FRAME :]
        if not settle or self.placed >= len(self.words) - 1:
            return []  # the last word waits for the end
        return self._settle()

    def finish(self) -> list[WordSpan]:
        """The words not settled yet, on the rest of the audio (offline search there)."""
        rest = self.words[self.placed :]
        if not rest:
            return []
        end = self.duration
        start = min(self._from * FRAME_S, end)
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        try:
            spans = list(estimate_alignment(audio[int(round(start * SAMPLE_RATE)) :], rest).words)
            spans = [s.shifted(start) for s in spans]
        except Exception:  # noqa: BLE001 - timing must never fail the request; the even spread cannot fail
            spans = spread(rest, start, end)
        self._measure_whole()
        return self._commit(spans, len(rest))

    def _measure_whole(self) -> None:
        """The piece's rate over all its words and speech (pauses left out), as the offline method takes it: the
        speaker's rate for the next piece whatever the segmentation was (`voiced_s` weighs it)."""
        if not len(self._db):
            return
        voiced = voiced_levels(self._db)
        speech = np.flatnonzero(voiced)
        if len(speech) < 2:
            return
        silent = np.diff(speech) - 1
        seconds = (
            int(speech[-1]) + 1 - int(speech[0]) - int(silent[silent >= MIN_PAUSE_FRAMES].sum())
        ) * FRAME_S
        if seconds >= MEASURED_S:
            self.rate = float(self.units.sum()) / seconds
            self.voiced_s = seconds

    # ------------------------------------------------------------------ internals
    def _deadline(self) -> float:
        """Where playback can be (seconds from this piece's start) when the next audio piece is sent: a word ending
        later may wait for it."""
        return (self.offset + self.duration + MAX_PIECE_S - FIRST_PIECE_S) / SPEEDUP - self.offset

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
            begun = np.flatnonzero(voiced[self._from :])
            if not len(begun):
                return []
            self._phrase_frame = self._from + int(begun[0])
        start = self._phrase_frame
        speech = np.flatnonzero(voiced[start:]) + start
        if not len(
            speech
        ):  # the level threshold follows the audio: the group's start may no longer count as speech
            return []
        pauses = [
            (int(speech[g]) + 1, int(speech[g + 1]))
            for g in np.flatnonzero(np.diff(speech) > MIN_PAUSE_FRAMES)
        ]
        in_pause = np.zeros(len(voiced), bool)
        for a, b in pauses:
            in_pause[a:b] = True
        # The open group's speech frames, pauses left out; silence at the decoded edge is left out too, being a
        # pause that has not closed yet (placing words by rate there would put the next phrase's words before it).
        timeline = np.flatnonzero(~in_pause[start : int(speech[-1]) + 1]) + start
        out: list[WordSpan] = []
        before_pause = False  # the speech placed by rate stops at a closed pause the search did not settle
        closed = [(a, b) for a, b in pauses if a >= self._from]  # where a group may still end
        if closed and self.placed < last:
            rate_known = self._rate_known
            for stop, (p_start, p_end) in self._groups(timeline, closed):
                first = self.placed
                group = timeline[(timeline >= self._phrase_frame) & (timeline < p_start)]
                if (
                    stop > first
                ):  # the words not settled by rate yet share the group's frames after the settled ones
                    rest = group[group >= self._from]
                    out += self._commit(
                        _place(self.words[first:stop], self.units[first:stop], rest, at=self._from),
                        stop - first,
                    )
                # A group settled by rate up to its end would teach the rate back to itself; one the search gave
                # more words than the rate had settled, or found with the rate free, measures the speaker.
                if first == self._phrase_word or stop > first or not rate_known:
                    self._learn(float(self.units[self._phrase_word : stop].sum()), len(group) * FRAME_S)
                self._phrase_word, self._phrase_frame, self._from = stop, p_end, p_end
            timeline = timeline[timeline >= self._phrase_frame]
            # A long pause the search left open (the speaker not measured yet) may still end a group: words are
            # placed by rate only up to it, not across it.
            uncut = [a for a, b in closed if a >= self._phrase_frame and (b - a) * FRAME_S >= SKIP_SCALE_S]
            if uncut:
                timeline = timeline[timeline < uncut[0]]
                before_pause = True
        # Past the last cut: every word the expected rate begins before the decoded edge, the one straddling the edge
        # up to the edge (no span passes the audio). So each word's span is sent with the piece in which it begins.
        # Never a word ending in punctuation, nor any after it: a pause is likeliest there, and only the search over
        # closed pauses may say whether the speaker paused there (a rate slightly off would otherwise carry words
        # across the pause). Except when the speech has stopped at the edge for a pause's length: then the first
        # such word ends where the speech stopped, and waits no longer for the speech after the pause.
        if self.placed >= last or not len(timeline):
            return out
        units = self.units[self._phrase_word : last]
        ends = np.cumsum(units) / self.rate
        # A word beginning within half a frame of the edge would get no frame before it: it waits for the next piece.
        edge_s = (len(timeline) - 0.5) * FRAME_S
        total = int(np.searchsorted(ends - units / self.rate, edge_s, side="left"))
        first, stop = self.placed, self._phrase_word + total
        used = max(1, int(round(ends[total - 1] / FRAME_S))) if total else 0
        stopped = timeline[-1] == speech[-1] and len(voiced) - 1 - speech[-1] >= MIN_PAUSE_FRAMES
        reach = stop
        if stopped and not self._rate_known:
            # The rate unknown and the speech stopped at the edge: a mark the rate could still reach (as the search
            # over closed pauses would, with the rate free) is where the speaker paused.
            fastest = self.rate * np.exp(UNMEASURED_RATE_SPAN) * len(timeline) * FRAME_S
            reach = max(
                stop, self._phrase_word + int(np.searchsorted(np.cumsum(units), fastest, side="right"))
            )
        marks = [k for k in range(first, min(reach, last)) if pause_weight(self.words[k])]
        if marks:
            stop = marks[0] + 1 if stopped else marks[0]
            used = (
                len(timeline) if stopped else max(1, int(round(ends[stop - self._phrase_word - 1] / FRAME_S)))
            )
        elif stopped:
            # The speech stopped at the edge, maybe at a pause the text does not announce: the word straddling the
            # stop is more likely after the pause when the rate puts most of it past the stop.
            halves = int(
                np.searchsorted(ends - units / (2 * self.rate), len(timeline) * FRAME_S, side="left")
            )
            if self._phrase_word + halves < stop:
                stop = self._phrase_word + halves
                used = len(timeline)
        if before_pause:
            # Which words end at that pause is the search's to say once more speech has come: by rate, only the
            # words that would have finished playing before the next piece is sent are settled now.
            due_s = np.count_nonzero((timeline + 1) * FRAME_S <= self._deadline()) * FRAME_S
            due = int(np.searchsorted(ends, due_s + 1e-9, side="right"))
            if self._phrase_word + due < stop:
                stop = self._phrase_word + due
                used = max(1, int(round(ends[due - 1] / FRAME_S))) if due else 0
        if stop > first:
            if timeline[-1] + 1 == len(
                self._db
            ):  # speech reaches the decoded edge: the straddler runs past it
                beyond = np.arange(len(self._db), len(self._db) + max(0, used - len(timeline)))
            else:  # silence at the edge may be the pause that ends the group: no word is placed in it
                beyond = np.zeros(0, np.int64)
            frames = np.concatenate((timeline, beyond))[:used]
            frames = frames[frames >= self._from]
            out += self._commit(
                _place(self.words[first:stop], self.units[first:stop], frames, at=self._from), stop - first
            )
            # The straddler's span ends at the decoded edge (clamped), so the audio past it is not yet owned.
            self._from = max(
                self._from, min(int(frames[-1]) + 1, len(self._db)) if len(frames) else self._from
            )
        return out

    def _groups(
        self, timeline: np.ndarray, closed: list[tuple[int, int]]
    ) -> list[tuple[int, tuple[int, int]]]:
        """The groups the closed pauses settle: (word index the group ends before, its pause), in order.

        The offline method's search (`estimate._assign`) over the open group's start and the closed pauses, with
        the expected rate in place of the whole text's and the number of words free: the best segmentation of some
        prefix of the open words that ends at a closed pause (those after it are then inside the open group). Its
        groups are kept up to the first that ends at a pause the text does not announce after the playback deadline
        (`_deadline`), or, for the last, at one too short to end a group whatever follows (skipping it would cost
        < 1); a group ending on punctuation is kept.

        Until the rate is known (`_rate_known`) it is searched too (`UNMEASURED_RATES` around the current estimate,
        the distance costing `RATE_PRIOR_WEIGHT` per squared log ratio), so the groups agree with one another on a rate
        rather than with the prior (a voice may speak at half the prior's rate), and a sentence end counts no more
        than a comma."""
        base = self._phrase_word
        n = len(self.words) - 1 - base  # open words a group may take (one is left for the speech after)
        low = max(1, self.placed - base)  # the first group holds at least the words already settled in it
        if n < low:
            return []
        before = np.searchsorted(
            timeline, [a for a, _ in closed]
        )  # the open group's frames before each pause
        positions = np.concatenate(([0.0], before * FRAME_S))
        # Frames left to words not settled yet in a first group ending at each node: a word needs one at least.
        room = np.concatenate(([0], np.maximum(before - np.searchsorted(timeline, self._from), 0)))
        skip = np.array([((b - a) * FRAME_S / SKIP_SCALE_S) ** 2 for a, b in closed])
        cumulative = np.concatenate(([0.0], np.cumsum(self.units[base : base + n])))
        bonus = np.array([0.0] + [pause_weight(w) for w in self.words[base : base + n]])
        units = cumulative[None, :] - cumulative[:, None]  # units[j', j]: words j'..j-1
        rate_known = self._rate_known
        if not rate_known:  # with the rate free, a sentence end counting double would pull groups past commas
            bonus = np.minimum(bonus, 1.0)
        if rate_known:
            rates = np.array([self.rate])
        else:
            rates = self.rate * np.exp(
                np.linspace(-UNMEASURED_RATE_SPAN, UNMEASURED_RATE_SPAN, UNMEASURED_RATES)
            )
        # The segmentation may end at any closed pause: the later ones are then inside the open group (a short
        # gap inside a word is no group's end), costing what skipping them costs.
        after = np.concatenate(
            (np.cumsum(skip[::-1])[::-1], [0.0])
        )  # after[b]: skipping the pauses past node b
        best: tuple[float, int, np.ndarray, np.ndarray] | None = None
        heard_s = len(timeline) * FRAME_S - positions  # the open group's speech after each node
        for rate in rates:
            cost, back = self._search(
                positions, skip, units, bonus, self._in_word[base : base + n + 1], low, room, n, float(rate)
            )
            cost = cost + self._heard_marks(heard_s, float(rate), n)
            ends = cost.min(axis=1) + after
            ends[0] = np.inf  # no group at all: nothing to cut
            node = int(np.argmin(ends))
            total = float(ends[node]) + RATE_PRIOR_WEIGHT * float(np.log(rate / self.rate)) ** 2
            if np.isfinite(total) and (best is None or total < best[0]):
                best = (total, node, cost, back)
        if best is None:
            return []
        _, node, cost, back = best
        last_skip = skip[node - 1]
        chosen: list[tuple[int, tuple[int, int]]] = []
        j = int(np.argmin(cost[node]))
        while node > 0:
            chosen.append((base + j, closed[node - 1]))
            node, j = (int(x) for x in back[node, j])
        chosen.reverse()
        # A group ending on punctuation is kept (a pause is expected there). One ending at a pause the text does not
        # announce is kept only when its words would have finished playing before the next piece is sent: which
        # words end there is only the rate's guess until more of the text has been heard (phrases' rates differ),
        # and the last group also needs its pause long enough to end a group whatever follows.
        deadline = self._deadline()
        for index, (stop, (pause_start, _)) in enumerate(chosen):
            last_group = index == len(chosen) - 1
            if pause_weight(self.words[stop - 1]):
                continue
            if pause_start * FRAME_S > deadline or (last_group and last_skip < LAST_GROUP_SKIP):
                return chosen[:index]
        return chosen

    def _heard_marks(self, heard_s: np.ndarray, rate: float, n: int) -> np.ndarray:
        """[node, j]: what the words after a segmentation ending at the node before open word j cost, as the offline
        search's next group would: each punctuation mark the rate says was already spoken in the speech heard after
        the node costs its bonus, as inside a group. Without it the search is free to end short of a comma at the pause
        and leave the comma inside speech that has no pause."""
        base = self._phrase_word
        cumulative = np.concatenate(([0.0], np.cumsum(self.units[base:])))
        marks = np.concatenate(([0.0], np.cumsum([min(pause_weight(w), 1.0) for w in self.words[base:-1]])))
        j = np.arange(n + 1)
        spoken = (
            np.searchsorted(cumulative, cumulative[j][None, :] + heard_s[:, None] * rate, side="right") - 1
        )
        spoken = np.minimum(spoken, len(marks) - 1)  # the last word's mark is the text's end: never a cost
        cost: np.ndarray = PUNCT_BONUS * np.maximum(marks[spoken] - marks[j][None, :], 0.0)
        return cost

    @staticmethod
    def _search(
        positions: np.ndarray,
        skip: np.ndarray,
        units: np.ndarray,
        bonus: np.ndarray,
        in_word: np.ndarray,
        low: int,
        room: np.ndarray,
        n: int,
        rate: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`_groups`' dynamic programme at one rate: cost[node, j] of the best segmentation of words[:j] ending at
        the node, and its back pointers (previous node, previous boundary). `in_word[j]`: the boundary before open word
        j is inside a Chinese word (`units.inside_words`); the first group holds the `low` words settled in it and at
        most `room[node]` more (its frames not owned by them)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = np.where(units > 0, np.log(np.maximum(units, 1e-9) / rate), np.inf)
        # Punctuation inside a group (spoken without a pause) costs its bonus: the offline search, which uses every
        # word, gets this from the bonus alone; with the number of words free, skipping marks would be free.
        marks = np.concatenate(([0.0], np.cumsum(bonus)))  # marks[m]: the bonus of boundaries 0..m-1
        inside = PUNCT_BONUS * np.maximum(
            marks[None, :-1] - marks[1:, None], 0.0
        )  # [j', j]: boundaries j'+1..j-1
        nodes = len(positions)
        cost = np.full((nodes, n + 1), np.inf)
        cost[0, 0] = 0.0
        back = np.zeros((nodes, n + 1, 2), np.int64)
        for b in range(1, nodes):
            # A group ending at the last closed pause has no words after it to keep its count honest (the offline
            # search must use every word): there the rate weighs more against the punctuation bonus, and any
            # punctuation counts alike (a sentence end a few words on must not win over the comma the rate points at).
            last = b == nodes - 1
            weight = RATE_WEIGHT * (END_RATE_FACTOR if last else 1.0)
            mark_bonus = PUNCT_BONUS * (np.minimum(bonus, 1.0) if last else bonus)
            # Ending inside a Chinese word costs as it does offline (`estimate._assign`).
            in_word_cost = INSIDE_WORD_COST * min(1.0, skip[b - 1]) * in_word
            for a in range(max(0, b - 1 - MAX_SKIPPED), b):
                duration = positions[b] - positions[a]
                if duration <= 0 or not np.isfinite(cost[a]).any():
                    continue
                skipped = skip[a : b - 1].sum()  # the pauses between nodes a and b are inside the group
                group = weight * np.square(np.log(duration) - expected) + inside
                if a == 0:
                    group[:, :low] = np.inf
                    group[:, low + int(room[b]) + 1 :] = np.inf
                total = cost[a][:, None] + group
                prev = np.argmin(total, axis=0)
                best = total[prev, np.arange(n + 1)] + skipped - mark_bonus + in_word_cost
                better = best < cost[b]
                cost[b] = np.where(better, best, cost[b])
                back[b][better] = np.stack((np.full(better.sum(), a), prev[better]), axis=1)
        return cost, back

    @property
    def measured(self) -> bool:
        """Whether the rate is the speaker's: measured on a group or the finished piece here, or given by a previous
        text chunk."""
        return self._given or self._measured_s > 0 or self.voiced_s > 0

    @property
    def _rate_known(self) -> bool:
        """Whether the search may take the rate as known: given by a previous text chunk, or measured on at least
        MEASURED_S of speech here (the first group alone, drawn to the prior, lags a speaker far from it)."""
        return self._given or self._measured_s >= MEASURED_S

    def _learn(self, units: float, seconds: float) -> None:
        """Follow the speaker's rate from groups cut at pauses (the prior weighs `_prior_s` seconds)."""
        if seconds <= 0 or units <= 0:
            return
        self._measured_units += units
        self._measured_s += seconds
        self.rate = (self._prior * self._prior_s + self._measured_units) / (self._prior_s + self._measured_s)
