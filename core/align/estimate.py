"""The `estimate` method: words placed between the pauses of the audio by their expected duration. No model.

1. Energy on a 20 ms grid (one BiCodec semantic token is 20 ms): a frame is voiced when it is within
   `RELATIVE_DB` of the loud frames (95th percentile); one-frame blips in silence are ignored. Silent runs of at
   least `MIN_PAUSE_FRAMES` strictly inside the speech are pauses.
2. Each pause is either a boundary between two words or inside a group (skipped). A dynamic programme over
   groups picks the assignment: a group (the speech between two chosen pauses) costs how far its speaking rate,
   by its words' expected durations, is from the whole text's, minus a bonus where the text has punctuation (in
   full at a pause of at least `SKIP_SCALE_S`, less at a shorter one: a sentence end is where the speaker pauses
   longest, not a stop's closure a word later), plus a cost where the boundary falls inside a Chinese word (written
   without spaces, its characters are the timed words); skipping a pause costs more the longer it is (speech rarely
   stops for long inside a phrase).
   O(pauses x MAX_SKIPPED x words^2), vectorised over the words.
3. Within each group between chosen pauses, the group's voiced frames are shared by expected duration, so a group's
   first word starts where its speech starts and its last word ends where its speech stops (snapped to the pause).
"""

from __future__ import annotations

import numpy as np

from core.align.types import Alignment, WordSpan, clamped
from core.align.units import expected_units, inside_words, pause_weight

SAMPLE_RATE = 16_000
FRAME = 320  # 20 ms
FRAME_S = FRAME / SAMPLE_RATE
RELATIVE_DB = 35.0
MIN_PAUSE_FRAMES = 3  # 60 ms
PUNCT_BONUS = 1.0  # per unit of pause_weight
SKIP_SCALE_S = 0.2  # skipping a pause of this length costs 1 (quadratic in the length); slow speech has closures of 150 ms
RATE_WEIGHT = 4.0  # a group spoken twice as fast as the text's average costs 4 * ln(2)^2 = 1.9
MAX_SKIPPED = 6  # pauses one group may contain
INSIDE_WORD_COST = 1.0  # ending a group inside a Chinese word (`inside_words`): as much as a comma's bonus


def frame_db(audio: np.ndarray) -> np.ndarray:
    """Level of each 20 ms frame in dB (full scale 0 dB); a last partial frame is padded with zeros."""
    n = -(-len(audio) // FRAME)
    padded = np.zeros(n * FRAME, np.float32)
    padded[: len(audio)] = audio
    power: np.ndarray = np.mean(np.square(padded.reshape(n, FRAME), dtype=np.float64), axis=1)
    return 10.0 * np.log10(power + 1e-12)


def voiced_frames(audio: np.ndarray) -> np.ndarray:
    """Boolean per frame: speech (loud enough), with isolated one-frame blips removed."""
    if len(audio) == 0:
        return np.zeros(0, bool)
    return voiced_levels(frame_db(audio))


def voiced_levels(db: np.ndarray) -> np.ndarray:
    """`voiced_frames` from the frames' levels in dB (at least one frame): the incremental aligner keeps levels."""
    loud = np.percentile(db, 95)
    voiced: np.ndarray = db > max(loud - RELATIVE_DB, -90.0)
    if len(voiced) >= 3:
        blip = voiced[1:-1] & ~voiced[:-2] & ~voiced[2:]
        voiced[1:-1] &= ~blip
    return voiced


def find_pauses(voiced: np.ndarray) -> list[tuple[int, int]]:
    """Silent runs [start, end) in frames of at least MIN_PAUSE_FRAMES, strictly between voiced frames."""
    idx = np.flatnonzero(voiced)
    if len(idx) < 2:
        return []
    gaps = np.flatnonzero(np.diff(idx) > MIN_PAUSE_FRAMES)
    return [(int(idx[g]) + 1, int(idx[g + 1])) for g in gaps]


def _assign(
    pauses: list[tuple[int, int]],
    voiced_before: np.ndarray,
    total_voiced: float,
    cumulative: np.ndarray,
    bonus: np.ndarray,
    in_word: np.ndarray,
) -> dict[int, int]:
    """pause index -> word boundary j (between word j-1 and j, 1 <= j <= n-1), strictly increasing.

    A dynamic programme over groups: nodes are the speech start, the pauses and the speech end; a group runs from
    one node to a later one (at most MAX_SKIPPED pauses inside it) and holds words j'..j-1. Its cost is how far its
    speaking rate is from the whole text's (squared log ratio), plus the skipped pauses' costs, minus the
    punctuation bonus of the boundary it ends on, plus `INSIDE_WORD_COST` where that boundary is inside a word
    (`in_word`, per boundary like `bonus`); both scale with the pause's length up to `SKIP_SCALE_S`."""
    n = len(cumulative) - 1
    if n < 2 or not pauses:
        return {}
    k_count = len(pauses)
    rate = total_voiced / cumulative[-1]  # voiced seconds per unit
    positions = np.concatenate(
        ([0.0], voiced_before, [total_voiced])
    )  # node i: 0 start, 1..K pauses, K+1 end
    skip = np.concatenate(([0.0], [((b - a) * FRAME_S / SKIP_SCALE_S) ** 2 for a, b in pauses], [0.0]))
    units = cumulative[None, :] - cumulative[:, None]  # units[j', j]: words j'..j-1
    with np.errstate(divide="ignore", invalid="ignore"):
        log_units = np.where(units > 0, np.log(np.maximum(units, 1e-9) * rate), np.inf)
    inf = np.inf
    nodes = k_count + 2
    cost = np.full((nodes, n + 1), inf)
    cost[0, 0] = 0.0
    back = np.zeros((nodes, n + 1, 2), np.int64)  # (previous node, previous boundary)
    for b in range(1, nodes):
        allowed = np.full(n + 1, inf)
        if b == nodes - 1:
            allowed[n] = 0.0
        else:
            allowed[1:n] = min(1.0, skip[b]) * (INSIDE_WORD_COST * in_word[1:n] - PUNCT_BONUS * bonus[1:n])
        for a in range(max(0, b - 1 - MAX_SKIPPED), b):
            if not np.isfinite(cost[a]).any():
                continue
            duration = positions[b] - positions[a]
            if duration <= 0:
                continue
            inside = skip[a + 1 : b].sum()
            group = RATE_WEIGHT * np.square(np.log(duration) - log_units)  # [j', j]; inf where j <= j'
            total = cost[a][:, None] + group
            best_prev = np.argmin(total, axis=0)
            best = total[best_prev, np.arange(n + 1)] + inside + allowed
            better = best < cost[b]
            cost[b] = np.where(better, best, cost[b])
            back[b][better] = np.stack((np.full(better.sum(), a), best_prev[better]), axis=1)
    chosen: dict[int, int] = {}
    node, j = nodes - 1, n
    while node > 0:
        prev_node, prev_j = (int(x) for x in back[node, j])
        if 0 < prev_node:
            chosen[prev_node - 1] = prev_j
        node, j = prev_node, prev_j
    return chosen


def _place(words: list[str], units: np.ndarray, frames: np.ndarray, at: float = 0.0) -> list[WordSpan]:
    """Share the group's voiced frames (real frame indices, sorted) among its words by expected units. No frames:
    zero-length spans at frame `at`."""
    if not words:
        return []
    if len(frames) == 0:
        return [
            WordSpan(word, round(float(at) * FRAME_S, 3), round(float(at) * FRAME_S, 3)) for word in words
        ]
    total = float(units.sum()) or 1.0
    # Clipped: the cumulative sum times len/total may overshoot len(frames) by a rounding error (an IndexError once).
    edges = np.clip(
        np.concatenate(([0.0], np.cumsum(units))) * (len(frames) / total), 0.0, float(len(frames))
    )
    spans = []
    for i, word in enumerate(words):
        a, b = edges[i], edges[i + 1]
        fa = min(int(np.floor(a)), len(frames) - 1)
        start = frames[fa] + (a - fa)
        fb = min(max(int(np.ceil(b)), 1), len(frames))
        end = frames[fb - 1] + 1 - (fb - b)
        spans.append(
            WordSpan(word, round(float(start) * FRAME_S, 3), round(float(max(start, end)) * FRAME_S, 3))
        )
    return spans


def estimate_alignment(audio: np.ndarray, words: list[str]) -> Alignment:
    """Spans for `words` (non-empty) in 16 kHz mono float audio."""
    duration = len(audio) / SAMPLE_RATE
    voiced = voiced_frames(audio)
    speech = np.flatnonzero(voiced)
    units = np.array([expected_units(w) for w in words], np.float64)
    if len(speech) == 0:  # nothing audible: spread the words over the whole audio
        n_frames = max(1, len(voiced))
        spans = _place(words, units, np.arange(n_frames))
        return Alignment(tuple(clamped(spans, 0.0, duration)), "estimate", duration)
    first, last = int(speech[0]), int(speech[-1]) + 1
    pauses = find_pauses(voiced)
    in_pause = np.zeros(len(voiced), bool)
    for start, end in pauses:
        in_pause[start:end] = True
    timeline = np.flatnonzero(~in_pause[first:last]) + first  # frames that count as speech
    voiced_before = (
        np.array([np.count_nonzero(timeline < start) for start, _ in pauses], np.float64) * FRAME_S
    )
    cumulative = np.concatenate(([0.0], np.cumsum(units)))
    bonus = np.array([0.0] + [pause_weight(w) for w in words])  # bonus[j]: boundary before word j
    in_word = np.array(inside_words(words), np.float64)
    chosen = _assign(pauses, voiced_before, len(timeline) * FRAME_S, cumulative, bonus, in_word)
    # Groups: words between chosen pauses, each with the speech frames between those pauses.
    spans = []
    word_start, frame_start = 0, first
    for k in sorted(chosen):
        j = chosen[k]
        pause_start, pause_end = pauses[k]
        group = timeline[(timeline >= frame_start) & (timeline < pause_start)]
        spans += _place(words[word_start:j], units[word_start:j], group)
        word_start, frame_start = j, pause_end
    spans += _place(words[word_start:], units[word_start:], timeline[timeline >= frame_start])
    return Alignment(tuple(clamped(spans, 0.0, duration)), "estimate", duration)
