"""Detectors over one text chunk's semantic token stream, fed as the engine delivers it (pure, no I/O).

Each `feed` returns the index (0-based, within the chunk's semantic tokens) of the token that tripped it, or None.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence


class LengthLimit:
    """Far more semantic tokens than the text can need (as they arrive), or far fewer when the engine stops."""

    def __init__(
        self,
        expected: int,
        *,
        max_ratio: float,
        slack_tokens: int,
        min_ratio: float,
        min_expected_tokens: int,
    ) -> None:
        self.expected = expected
        self.limit = int(expected * max_ratio) + slack_tokens
        self.floor = int(expected * min_ratio) if expected >= min_expected_tokens else 0
        self.count = 0

    def feed(self, tokens: Sequence[int]) -> int | None:
        before = self.count
        self.count += len(tokens)
        return self.limit if before <= self.limit < self.count else None

    def too_short(self) -> bool:
        """At the engine's stop: fewer tokens than the text can be spoken in (sentences skipped)."""
        return 0 < self.count < self.floor


class LoopDetector:
    """The same n-grams repeating: over the last `window` tokens, the share of n-grams already seen in the window.

    Random speech tokens (8,192 ids) almost never repeat a 4-gram; a looping generation repeats nearly all of them.
    N-grams with fewer than `min_distinct` ids (a held id: silence, a sustained sound) are left to the silence
    detector. Cost: O(1) per token (a rolling window of n-gram keys and their counts)."""

    def __init__(
        self, *, ngram: int, min_distinct: int, window: int, min_tokens: int, max_share: float
    ) -> None:
        self.n, self.min_distinct, self.window = ngram, min_distinct, window
        self.min_tokens, self.max_share = min_tokens, max_share
        self._recent: deque[int] = deque(maxlen=ngram)
        self._keys: deque[tuple[int, ...] | None] = deque()
        self._counts: dict[tuple[int, ...], int] = {}
        self._repeats = 0  # n-grams in the window seen earlier in the window
        self.seen = 0
        self.worst_share = 0.0

    def feed(self, tokens: Sequence[int]) -> int | None:
        # Runs for every engine delta: attributes in locals, written back once at the end. The deques' lengths
        # follow from `seen` (both only grow until full), so no len() per token.
        tripped = None
        recent, keys, counts = self._recent, self._keys, self._counts
        n, min_distinct, window = self.n, self.min_distinct, self.window
        min_tokens, max_share = self.min_tokens, self.max_share
        seen, repeats, worst = self.seen, self._repeats, self.worst_share
        for token in tokens:
            recent.append(int(token))
            seen += 1
            key = None
            if seen >= n:  # `recent` holds a whole n-gram
                key = tuple(recent)
                if len(set(key)) < min_distinct:
                    key = None
                else:
                    count = counts.get(key, 0)
                    if count:
                        repeats += 1
                    counts[key] = count + 1
            keys.append(key)
            if seen > window:  # the oldest n-gram leaves the window
                old = keys.popleft()
                if old is not None:
                    count = counts[old] - 1
                    if count:
                        # One of the later occurrences stops being a repeat of it.
                        repeats -= 1
                        counts[old] = count
                    else:
                        del counts[old]
            if seen >= min_tokens:
                share = repeats / (window if seen > window else seen)
                if share > worst:
                    worst = share
                if tripped is None and share >= max_share:
                    tripped = seen - 1
        self.seen, self._repeats, self.worst_share = seen, repeats, worst
        return tripped


class HeldToken:
    """One semantic id held longer than `max_tokens` (the codec's silence, or a stuck generation)."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._last: int | None = None
        self.run = 0
        self.longest = 0
        self.seen = 0

    def feed(self, tokens: Sequence[int]) -> int | None:
        tripped = None
        run, last, seen, longest, trip_at = self.run, self._last, self.seen, self.longest, self.max_tokens + 1
        for token in tokens:
            token = int(token)
            run = run + 1 if token == last else 1
            last = token
            seen += 1
            if run > longest:
                longest = run
            if tripped is None and run == trip_at:
                tripped = seen - 1
        self.run, self._last, self.seen, self.longest = run, last, seen, longest
        return tripped
