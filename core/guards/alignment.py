"""Words of a chunk that its audio does not contain, from an aligner's per-word scores (0..1, higher = found).

The scores are a plain input so any aligner plugs in (the `ctc` aligner's per-word scores, or an ASR's
confidences); nothing here loads a model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class AlignmentVerdict:
    missing: tuple[int, ...]  # indices of the words scored below the threshold
    words: int
    longest_run: int
    tripped: bool


def check_alignment(
    scores: Sequence[float], *, min_score: float, max_missing: float, max_missing_run: int
) -> AlignmentVerdict:
    """Trip when more than `max_missing` of the words, or `max_missing_run` words in a row, were not found."""
    missing = tuple(i for i, score in enumerate(scores) if not score >= min_score)  # NaN counts as missing
    longest = run = 0
    previous = -2
    for i in missing:
        run = run + 1 if i == previous + 1 else 1
        previous = i
        longest = max(longest, run)
    words = len(scores)
    tripped = bool(words) and (len(missing) / words > max_missing or longest >= max_missing_run)
    return AlignmentVerdict(missing=missing, words=words, longest_run=longest, tripped=tripped)
