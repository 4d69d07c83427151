"""All detectors for one text chunk, one generation attempt: feed tokens and audio as they arrive, then finish.

`ChunkGuards` only observes and reports `Trip`s; what to do about one (retry, cut, count) is the pipeline's
decision. Not thread-safe: one instance per chunk attempt, fed from one task."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.guards.alignment import check_alignment
from core.guards.audio_guards import SilenceDetector
from core.guards.config import GuardConfig
from core.guards.text_budget import SEMANTIC_TOKENS_PER_SECOND, expected_tokens, requested_pause_seconds
from core.guards.token_guards import HeldToken, LengthLimit, LoopDetector

SAMPLES_PER_TOKEN = 320  # 16 kHz audio per semantic token


@dataclass(frozen=True)
class Trip:
    """One detector fired. `token` is the semantic-token index (within the chunk) where it did."""

    guard: str
    token: int
    detail: str
    acts: bool  # False: the guard is in count-only mode


class ChunkGuards:
    def __init__(self, text: str, config: GuardConfig, sample_rate: int = 16_000) -> None:
        self.config = c = config
        self.text = text
        self.expected = expected_tokens(text)
        self.allowed_silence_s = c.silence_max_s + requested_pause_seconds(text)
        self.length = LengthLimit(
            self.expected,
            max_ratio=c.length_max_ratio,
            slack_tokens=round(c.length_slack_s * SEMANTIC_TOKENS_PER_SECOND),
            min_ratio=c.length_min_ratio,
            min_expected_tokens=round(c.length_min_expected_s * SEMANTIC_TOKENS_PER_SECOND),
        )
        self.loop = LoopDetector(
            ngram=c.loop_ngram,
            min_distinct=c.loop_min_distinct,
            window=c.loop_window,
            min_tokens=c.loop_min_tokens,
            max_share=c.loop_max_repeat_share,
        )
        self.held = HeldToken(round(self.allowed_silence_s * SEMANTIC_TOKENS_PER_SECOND))
        self.silence = SilenceDetector(sample_rate, level_db=c.silence_db, max_s=self.allowed_silence_s)
        self._samples_per_token = sample_rate // SEMANTIC_TOKENS_PER_SECOND
        self.trips: list[Trip] = []
        # Looked up once: feed_tokens runs for every engine delta.
        self._on = {g: c.enabled(g) for g in ("length", "loop", "silence")}

    def _trip(self, guard: str, token: int, detail: str) -> Trip | None:
        if any(t.guard == guard for t in self.trips):
            return None  # one report per guard per attempt
        trip = Trip(guard, token, detail, acts=self.config.mode_of(guard) == "act")
        self.trips.append(trip)
        return trip

    def _first(self, found: list[Trip | None]) -> Trip | None:
        hits = [t for t in found if t is not None]
        return min(hits, key=lambda t: (not t.acts, t.token)) if hits else None

    def feed_tokens(self, tokens: Sequence[int]) -> Trip | None:
        """Semantic ids as the engine delivers them; the first trip (acting ones first) or None."""
        c, on = self.config, self._on
        found: list[Trip | None] = []
        if on["length"] and (at := self.length.feed(tokens)) is not None:
            found.append(
                self._trip(
                    "length",
                    at,
                    f"more than {self.length.limit} semantic tokens for text "
                    f"expected to need about {self.expected}",
                )
            )
        if on["loop"] and (at := self.loop.feed(tokens)) is not None:
            found.append(
                self._trip(
                    "loop",
                    at,
                    f"{self.loop.worst_share:.0%} of the last {self.loop.window} "
                    f"tokens' {c.loop_ngram}-grams repeat",
                )
            )
        if on["silence"] and (at := self.held.feed(tokens)) is not None:
            found.append(
                self._trip(
                    "silence", at, f"one semantic id held for more than {self.allowed_silence_s:.1f} s"
                )
            )
        return self._first(found) if found else None

    def feed_audio(self, audio: np.ndarray) -> Trip | None:
        """Decoded 16 kHz audio as the decoder delivers it."""
        if not self.config.enabled("silence"):
            return None
        at = self.silence.feed(audio)
        if at is None:
            return None
        return self._trip(
            "silence",
            at // self._samples_per_token,
            f"audio below {self.config.silence_db:.0f} dBFS for more than {self.allowed_silence_s:.1f} s",
        )

    def finish(self, *, stopped: bool, semantic: int, capped: bool = False) -> Trip | None:
        """The engine's stream ended: `stopped` when it emitted its stop id; `capped` when the request's own
        max_tokens ended it (the caller's choice: neither too long nor too short)."""
        c = self.config
        found: list[Trip | None] = []
        if c.enabled("empty") and semantic == 0:
            found.append(self._trip("empty", 0, "the chunk ended with no speech token"))
        if capped:
            pass
        elif c.enabled("length") and semantic and not stopped:
            found.append(
                self._trip("length", semantic, "the engine reached its token budget without stopping")
            )
        elif c.enabled("length") and stopped and self.length.too_short():
            found.append(
                self._trip(
                    "length",
                    semantic,
                    f"{semantic} semantic tokens for text expected to need about {self.expected}",
                )
            )
        return self._first(found)

    def check_alignment(self, scores: Sequence[float]) -> Trip | None:
        """Per-word scores from an aligner, once the chunk's audio is complete."""
        c = self.config
        if not c.enabled("alignment"):
            return None
        verdict = check_alignment(
            scores,
            min_score=c.align_min_score,
            max_missing=c.align_max_missing,
            max_missing_run=c.align_max_missing_run,
        )
        if not verdict.tripped:
            return None
        return self._trip(
            "alignment",
            self.length.count,
            f"{len(verdict.missing)} of {verdict.words} words not found in the audio",
        )
