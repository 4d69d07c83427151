"""The lead window (core.sr_planner): a stream's first AP-BWE window may take its right context from a guess of what
follows (the decode schedule's held overlap), so 48 kHz audio leaves with the first decoded chunk. With the right
guess it equals the offline upsample; with a wrong one only its own kept audio differs; and for any arrival pattern
and any guess the windows still tile the signal exactly once, the lead first and at most once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.apbwe import SuperResolution
from core.sr_planner import RATIO, SRPlanner, SRWindow
from services.pipeline.audio_output import SR_MAX_BLOCK, SR_MIN_BLOCK
from tests.tiny_models import small_sr

GRID, CONTEXT = 80, 880  # the released AP-BWE's STFT grid and context
FIRST = 4 * 320  # balanced's first chunk keeps 4 tokens


@pytest.fixture(scope="module")
def sr() -> SuperResolution:
    return small_sr(seed=5)


def _planner(sr: SuperResolution | None = None) -> SRPlanner:
    grid, context = (sr.grid, sr.context) if sr is not None else (GRID, CONTEXT)
    return SRPlanner(grid=grid, context=context, min_block=SR_MIN_BLOCK, max_block=SR_MAX_BLOCK)


def _kept(sr: SuperResolution, windows: list[SRWindow]) -> list[np.ndarray]:
    return [sr.enhance_window(w.samples)[w.keep_start : w.keep_end] for w in windows]


def _stream(sr: SuperResolution, signal: np.ndarray, guess: np.ndarray) -> tuple[np.ndarray, SRWindow]:
    planner = _planner(sr)
    first = planner.push(signal[:FIRST], guess)
    assert (
        len(first) == 1 and planner.lead_windows == 1
    )  # 1,280 samples: short of min_block + context on their own
    parts = _kept(sr, first)
    rng, i = np.random.default_rng(3), FIRST
    while i < signal.size:
        n = int(rng.integers(300, 6_000))
        parts += _kept(
            sr, planner.push(signal[i : i + n], signal[i + n : i + n + 2_000])
        )  # later guesses: ignored
        i += n
    parts += _kept(sr, planner.finish())
    assert planner.lead_windows == 1
    return np.concatenate(parts), first[0]


def test_a_lead_window_with_the_right_guess_equals_the_offline_upsample(sr: SuperResolution) -> None:
    signal = np.random.default_rng(1).standard_normal(20_000).astype(np.float32) * 0.1
    out, lead = _stream(sr, signal, signal[FIRST : 2 * FIRST])
    assert (lead.keep_start, lead.keep_end, lead.length) == (0, RATIO * FIRST, FIRST + sr.context)
    np.testing.assert_allclose(out, sr.upsample(signal), atol=1e-5)


def test_a_wrong_guess_changes_only_the_lead_windows_kept_audio(sr: SuperResolution) -> None:
    signal = np.random.default_rng(2).standard_normal(20_000).astype(np.float32) * 0.1
    out, lead = _stream(sr, signal, np.zeros(FIRST, np.float32))
    offline = sr.upsample(signal)
    np.testing.assert_allclose(out[lead.keep_end :], offline[lead.keep_end :], atol=1e-5)
    assert np.abs(out[: lead.keep_end] - offline[: lead.keep_end]).max() > 1e-3  # the guess was heard


def test_no_lead_without_a_long_enough_guess_or_after_the_first_window() -> None:
    planner = _planner()
    assert (
        planner.push(np.zeros(FIRST, np.float32), np.zeros(CONTEXT - 1, np.float32)) == []
    )  # one sample short
    assert planner.push(np.zeros(40, np.float32)) == [] and planner.lead_windows == 0  # no guess: no lead
    late = _planner()
    assert len(late.push(np.zeros(4_000, np.float32))) == 1  # a window from received context alone
    assert (
        late.push(np.zeros(FIRST, np.float32), np.zeros(4_000, np.float32)) == [] and late.lead_windows == 0
    )


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 7_000), min_size=1, max_size=12),
    guesses=st.lists(st.one_of(st.none(), st.integers(0, 3_000)), min_size=12, max_size=12),
)
def test_windows_tile_the_signal_once_with_the_lead_first_for_any_arrivals_and_guesses(
    sizes: list[int], guesses: list
) -> None:
    """Samples are their own index (exact in float32), guesses are negative. Every window but the lead is a slice of
    the signal; the lead is the first window, the signal received so far followed by a prefix of its guess; the kept
    parts follow each other with no gap or overlap and end at the signal's end."""
    signal = np.arange(sum(sizes), dtype=np.float32)
    planner, windows, i = _planner(), [], 0
    lead_of: dict[
        int, tuple[np.ndarray, int]
    ] = {}  # the lead window -> (its guess, samples received before it)
    for size, guess_len in zip(sizes, guesses, strict=False):
        guess = None if guess_len is None else -1.0 - np.arange(guess_len, dtype=np.float32)
        leads = planner.lead_windows
        got = planner.push(signal[i : i + size], guess)
        i += size
        if planner.lead_windows > leads:
            assert len(got) == 1 and not windows  # the lead comes alone, first
            lead_of[id(got[0])] = (guess, i)
        windows += got
    windows += planner.finish()
    assert planner.lead_windows == len(lead_of) <= 1
    kept_to = 0  # 16 kHz samples whose output has been kept, in order
    for w in windows:
        start = int(w.samples[0]) if w.samples.size else 0
        if id(w) in lead_of:
            guess, received = lead_of[id(w)]
            assert start == 0 and not w.true_end and w.length == w.keep_end // RATIO + CONTEXT
            assert np.array_equal(w.samples[:received], signal[:received])
            assert np.array_equal(w.samples[received:], guess[: w.length - received])
        else:
            assert np.array_equal(
                w.samples, signal[start : start + w.length]
            )  # a contiguous slice of the signal
        assert w.keep_start % RATIO == 0 and w.keep_end % RATIO == 0
        assert start + w.keep_start // RATIO == kept_to  # follows the last kept sample
        kept_to = start + w.keep_end // RATIO
    assert kept_to == signal.size
