"""The generation guards' detectors (core/guards) on their own: each fires on what it is for, at the documented
point, whatever the delta or piece sizes, and not on real speech (espeak-ng) or random speech tokens."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.bench_guards import calibrate_speech, espeak_speech
from core.guards import (
    ChunkGuards,
    GuardConfig,
    HeldToken,
    LengthLimit,
    LoopDetector,
    SilenceDetector,
    check_alignment,
    expected_tokens,
    speech_seconds,
)
from core.guards.config import GUARD_NAMES


def loop_detector(config: GuardConfig = GuardConfig()) -> LoopDetector:
    return LoopDetector(
        ngram=config.loop_ngram,
        min_distinct=config.loop_min_distinct,
        window=config.loop_window,
        min_tokens=config.loop_min_tokens,
        max_share=config.loop_max_repeat_share,
    )


def feed_in(detector, items, size: int):
    """Feed in pieces of `size`; the first trip index reported."""
    for start in range(0, len(items), size):
        at = detector.feed(items[start : start + size])
        if at is not None:
            return at
    return None


def test_speech_estimate_per_script() -> None:
    # ~5 syllables/s of English, one syllable per Han character at 4.5/s, Devanagari conjuncts count once.
    assert speech_seconds("Hello world.") == pytest.approx(3 / 5 + 0.4)
    assert speech_seconds("你好世界") == pytest.approx(4 / 4.5)
    assert speech_seconds("नमस्ते") == pytest.approx(3 / 6)  # न म स्ते: the virama joins स and त
    assert speech_seconds("Wait... what?") > speech_seconds("Wait what?")  # an ellipsis asks for a pause
    assert expected_tokens("") == 1


def test_random_speech_tokens_never_look_like_a_loop() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        detector = loop_detector()
        assert feed_in(detector, rng.integers(0, 8192, 3000).tolist(), 7) is None
        assert detector.worst_share < 0.02


@pytest.mark.parametrize("period", [3, 25, 100])
def test_a_loop_trips_within_a_window_whatever_the_delta_size(period: int) -> None:
    rng = np.random.default_rng(period)
    speech = rng.integers(0, 8192, 150).tolist()
    looped = speech + [speech[-period:][i % period] for i in range(600)]
    found = {feed_in(loop_detector(), looped, size) for size in (1, 4, 37)}
    assert len(found) == 1  # the same token trips it, however the deltas are cut
    at = found.pop()
    assert at is not None and 150 < at <= 150 + period + GuardConfig().loop_window


def test_a_held_id_is_not_a_loop_but_is_held_too_long() -> None:
    held = [5] * 400
    assert feed_in(loop_detector(), held, 8) is None  # n-grams of one id: the silence detector's business
    detector = HeldToken(100)
    assert feed_in(detector, [1, 2, 3] + held, 9) == 3 + 100


def test_length_limit_and_floor() -> None:
    limit = LengthLimit(100, max_ratio=3.0, slack_tokens=75, min_ratio=0.25, min_expected_tokens=100)
    assert limit.limit == 375 and limit.floor == 25
    assert feed_in(limit, list(range(1000)), 16) == 375
    short = LengthLimit(100, max_ratio=3.0, slack_tokens=75, min_ratio=0.25, min_expected_tokens=100)
    short.feed([1] * 10)
    assert short.too_short()
    tiny_text = LengthLimit(20, max_ratio=3.0, slack_tokens=75, min_ratio=0.25, min_expected_tokens=100)
    tiny_text.feed([1])
    assert not tiny_text.too_short()  # too little text to judge


def test_silence_detector_trips_at_the_same_sample_whatever_the_piece_size() -> None:
    speech = espeak_speech("Good morning, how are you today?", "en")
    gap = np.zeros(16_000 * 3, np.float32)
    audio = np.concatenate([speech, gap, speech])
    found = set()
    for size in (320, 1000, 16_000, audio.size):
        detector = SilenceDetector(16_000, level_db=-50, max_s=2.0)
        found.add(feed_in(detector, audio, size))
    assert len(found) == 1
    at = found.pop()
    # The trip is 2 s into the gap (the speech's own trailing silence counts too, so up to 0.6 s earlier).
    assert speech.size + 16_000 * 1.4 <= at <= speech.size + 16_000 * 2.0 + 320


def test_espeak_speech_in_three_languages_trips_nothing() -> None:
    """The audio and length guards against real speech at slow, normal and fast rates (bench_guards' table)."""
    rows = calibrate_speech(GuardConfig())
    assert {r["language"] for r in rows} == {"en", "hi", "zh"}
    assert [r for r in rows if r["tripped"]] == []
    assert max(r["longest_silence_s"] for r in rows) < 1.0


def test_alignment_from_plain_per_word_scores() -> None:
    config = GuardConfig()
    found = check_alignment(
        [0.9, 0.8, 0.1, 0.9, 0.95, 0.7, 0.9, 0.9],
        min_score=config.align_min_score,
        max_missing=config.align_max_missing,
        max_missing_run=config.align_max_missing_run,
    )
    assert found.missing == (2,) and not found.tripped
    skipped = check_alignment(
        [0.9, 0.0, 0.05, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9],
        min_score=0.3,
        max_missing=0.25,
        max_missing_run=3,
    )
    assert (
        skipped.tripped and skipped.longest_run == 3
    )  # a skipped phrase, though only a quarter of the words
    assert check_alignment([float("nan"), 0.1], min_score=0.3, max_missing=0.25, max_missing_run=3).tripped
    guards = ChunkGuards("one two three four", config)
    trip = guards.check_alignment([0.9, 0.1, 0.2, 0.9])
    assert trip is not None and trip.guard == "alignment" and trip.acts


def test_chunk_guards_modes_and_one_report_per_guard() -> None:
    text = "A short sentence to speak."
    counted = ChunkGuards(text, GuardConfig(modes={"silence": "count"}))
    trip = counted.feed_tokens([7] * 200)
    assert trip is not None and trip.guard == "silence" and not trip.acts
    assert counted.feed_tokens([7] * 100) is None  # reported once per try
    off = ChunkGuards(text, GuardConfig(mode="off"))
    assert off.feed_tokens([7] * 4000) is None and off.finish(stopped=True, semantic=0) is None
    empty = ChunkGuards(text, GuardConfig()).finish(stopped=True, semantic=0)
    assert empty is not None and empty.guard == "empty"
    runaway = ChunkGuards(text, GuardConfig()).finish(stopped=False, semantic=50)
    assert runaway is not None and runaway.guard == "length"
    with pytest.raises(ValueError, match="unknown guard"):
        GuardConfig(modes={"volume": "act"})
    assert set(GUARD_NAMES) == {"length", "loop", "silence", "empty", "alignment"}


def test_the_requests_own_max_tokens_is_neither_too_long_nor_too_short() -> None:
    guards = ChunkGuards("A sentence long enough to need a few seconds of speech, surely.", GuardConfig())
    assert guards.finish(stopped=False, semantic=40, capped=True) is None
    assert guards.finish(stopped=True, semantic=0, capped=True).guard == "empty"


def naive_loop_shares(ids: list[int], *, ngram: int, min_distinct: int, window: int) -> list[float]:
    """The loop detector's share after each id, recomputed from scratch: of the n-grams ending at the last `window`
    positions (None where there is no whole n-gram or it has too few distinct ids), those seen earlier in the
    window, over the window's length."""
    keys = [tuple(ids[i - ngram + 1 : i + 1]) if i >= ngram - 1 else None for i in range(len(ids))]
    keys = [k if k is not None and len(set(k)) >= min_distinct else None for k in keys]
    shares = []
    for end in range(1, len(ids) + 1):
        span = keys[max(0, end - window) : end]
        shares.append(sum(1 for j, k in enumerate(span) if k is not None and k in span[:j]) / len(span))
    return shares


@given(
    ids=st.lists(st.integers(0, 4), max_size=80),
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=5),
    ngram=st.integers(2, 4),
    min_distinct=st.integers(1, 3),
    window=st.integers(3, 30),
    min_tokens=st.integers(1, 40),
    max_share=st.sampled_from([0.2, 0.5, 0.9]),
)
@settings(max_examples=200, deadline=None)
def test_the_loop_detector_matches_a_from_scratch_count_whatever_the_deltas(
    ids: list[int],
    sizes: list[int],
    ngram: int,
    min_distinct: int,
    window: int,
    min_tokens: int,
    max_share: float,
) -> None:
    detector = LoopDetector(
        ngram=ngram, min_distinct=min_distinct, window=window, min_tokens=min_tokens, max_share=max_share
    )
    tripped, start, turn = None, 0, 0
    while start < len(ids):  # deltas of varying sizes, as the engine hands them out
        delta = ids[start : start + sizes[turn % len(sizes)]]
        at = detector.feed(delta)
        tripped = at if tripped is None else tripped
        start, turn = start + len(delta), turn + 1
    shares = naive_loop_shares(ids, ngram=ngram, min_distinct=min_distinct, window=window)
    counted = shares[min_tokens - 1 :]
    assert detector.worst_share == pytest.approx(max(counted, default=0.0))
    first = next((i for i, share in enumerate(shares) if i + 1 >= min_tokens and share >= max_share), None)
    assert tripped == first
