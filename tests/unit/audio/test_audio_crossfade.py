"""Crossfades between text chunks: lengths add up, loudness holds, streaming equals one-shot."""

from __future__ import annotations

import numpy as np
import pytest

from audio.crossfade import (
    ChunkJoiner,
    crossfade_concat,
    crossfade_join,
    crossfade_samples,
    equal_power_ramps,
)

RATE = 16000
OVERLAP = crossfade_samples(RATE)  # 50 ms default


def _noise(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.2, n).astype(np.float32)


def _stream(joiner: ChunkJoiner, segments: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Feed segments in random pieces; returns every output piece (finish last)."""
    out = []
    for seg in segments:
        joiner.start_segment()
        i = 0
        while i < len(seg):
            k = int(rng.integers(1, 700))
            out.append(joiner.push(seg[i : i + k]))
            i += k
    out.append(joiner.finish())
    return out


def test_default_is_50_ms() -> None:
    assert OVERLAP == 800
    assert crossfade_samples(48000) == 2400


def test_ramps_are_equal_power() -> None:
    fade_out, fade_in = equal_power_ramps(OVERLAP)
    assert np.allclose(fade_out**2 + fade_in**2, 1.0, atol=1e-6)
    assert np.all(np.diff(fade_in) > 0) and np.all(np.diff(fade_out) < 0)
    assert fade_in[0] < 0.01 and fade_in[-1] > 0.99


def test_join_length_and_untouched_ends() -> None:
    a, b = _noise(5000, 1), _noise(3000, 2)
    y = crossfade_join(a, b, OVERLAP)
    assert len(y) == len(a) + len(b) - OVERLAP
    assert np.array_equal(y[: len(a) - OVERLAP], a[:-OVERLAP])
    assert np.array_equal(y[len(a) :], b[OVERLAP:])


def test_join_keeps_loudness_of_uncorrelated_audio() -> None:
    # Two different noise segments at equal level: the joined region is as loud as either side (no dip).
    a, b = _noise(40000, 3), _noise(40000, 4)
    n = 8000
    y = crossfade_join(a, b, n)
    region = y[len(a) - n : len(a)]
    assert np.sqrt(np.mean(region**2)) == pytest.approx(0.2, rel=0.05)


def test_join_of_identical_signal_has_no_step() -> None:
    # Joining a constant to itself: equal-power gain cos+sin stays within [1, sqrt(2)], never dips.
    a = np.full(4000, 0.5, dtype=np.float32)
    y = crossfade_join(a, a, OVERLAP)
    assert y.min() >= 0.5 - 1e-6 and y.max() <= 0.5 * np.sqrt(2) + 1e-6


def test_short_segments_shrink_the_overlap() -> None:
    a, b = _noise(1000, 5), _noise(300, 6)
    assert len(crossfade_join(a, b, OVERLAP)) == 1000  # b (300) is faded in entirely
    assert len(crossfade_join(b, a, OVERLAP)) == 1000
    assert len(crossfade_join(a, np.zeros(0, np.float32), OVERLAP)) == 1000
    assert np.array_equal(crossfade_join(a, b, 0), np.concatenate((a, b)))


@pytest.mark.parametrize("seed", range(20))
def test_streaming_joiner_equals_one_shot(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = [
        int(rng.choice([0, 1, 50, 799, 800, 801, 2000, 12000])) for _ in range(int(rng.integers(1, 7)))
    ]
    segments = [_noise(n, seed * 10 + i) for i, n in enumerate(lengths)]
    out = np.concatenate(_stream(ChunkJoiner(OVERLAP), segments, rng))
    expected = crossfade_concat(segments, OVERLAP)
    assert len(out) == len(expected)
    assert np.allclose(out, expected, atol=1e-6)


def test_length_formula_for_long_segments() -> None:
    segments = [_noise(n, i) for i, n in enumerate([16000, 9000, 24000, 5000])]
    out = np.concatenate(_stream(ChunkJoiner(OVERLAP), segments, np.random.default_rng(0)))
    assert len(out) == sum(map(len, segments)) - OVERLAP * (len(segments) - 1)


def test_joiner_holds_back_only_the_overlap() -> None:
    joiner = ChunkJoiner(OVERLAP)
    rng = np.random.default_rng(7)
    emitted = pushed = 0
    for seg_i in range(3):
        joiner.start_segment()
        for _ in range(40):
            piece = _noise(int(rng.integers(100, 600)), seg_i)
            pushed += len(piece)
            emitted += len(joiner.push(piece))
            # produced-so-far minus emitted: never more than the tail plus a pending crossfade head
            produced = pushed - OVERLAP * seg_i
            assert produced - emitted <= 2 * OVERLAP
        assert produced - emitted == OVERLAP  # once the head is mixed, only the tail waits
    emitted += len(joiner.finish())
    assert emitted == pushed - 2 * OVERLAP


def test_first_segment_streams_immediately_and_zero_overlap_passes_through() -> None:
    joiner = ChunkJoiner(OVERLAP)
    assert len(joiner.push(_noise(5000, 0))) == 5000 - OVERLAP
    passthrough = ChunkJoiner(0)
    x = _noise(123, 1)
    assert np.array_equal(passthrough.push(x), x)
    passthrough.start_segment()
    assert np.array_equal(passthrough.push(x), x)
    assert len(passthrough.finish()) == 0


def test_last_segment_holds_nothing_back_and_still_crossfades() -> None:
    single = ChunkJoiner(OVERLAP)
    single.last_segment()
    assert len(single.push(_noise(1280, 0))) == 1280 and len(single.finish()) == 0
    a, b = _noise(5000, 1), _noise(3000, 2)
    joiner = ChunkJoiner(OVERLAP)
    out = [joiner.push(a)]
    joiner.start_segment()
    joiner.last_segment()
    out += [joiner.push(b[:500]), joiner.push(b[500:])]
    assert (
        len(out[1]) == 0 and len(out[2]) == 3000
    )  # once the head is mixed, all of it leaves: fade + the rest
    out.append(joiner.finish())
    assert np.allclose(np.concatenate(out), crossfade_concat([a, b], OVERLAP), atol=1e-6)


def test_finished_joiner_refuses_more_audio() -> None:
    joiner = ChunkJoiner(10)
    joiner.finish()
    with pytest.raises(RuntimeError):
        joiner.push(_noise(5, 0))


def test_holds_output_says_whether_anything_is_held_back() -> None:
    """What the 48 kHz lead window asks (services/pipeline/audio_output.py): it is taken only where nothing is."""
    joiner = ChunkJoiner(OVERLAP)
    assert not joiner.holds_output
    joiner.push(_noise(1_280, 1))
    assert joiner.holds_output  # a tail for a next segment
    joiner.last_segment()
    joiner.push(_noise(100, 2))
    assert not joiner.holds_output  # no segment follows: everything left
