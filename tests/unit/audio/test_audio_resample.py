"""Output resampling: pushes of any size give the one-shot result with the right length, little is held back, the
passband is kept and what lies past the lower Nyquist frequency does not alias."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from audio.polyphase import PolyphaseResampler, block_plan, design_lowpass
from audio.resample import OUTPUT_RATES, StreamingResampler, prepare_output_filters, resample

SOURCE_RATES = (16000, 48000)  # BiCodec's rate, and AP-BWE's


def _chirp(rate: int, seconds: float = 1.3) -> np.ndarray:
    t = np.arange(int(rate * seconds) + 3) / rate
    return (0.5 * np.sin(2 * np.pi * (100 + 1500 * t) * t)).astype(np.float32)


def _stream(rs: StreamingResampler, x: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(x):
        k = int(rng.integers(1, 2000))
        out.append(rs.push(x[i : i + k]))
        i += k
    out.append(rs.finish())
    return np.concatenate(out)


def _tone(rate: int, freq: float, seconds: float = 0.5, phase: float = 0.3) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate + phase)).astype(np.float32)


@pytest.mark.parametrize("in_rate", SOURCE_RATES)
@pytest.mark.parametrize("out_rate", OUTPUT_RATES)
def test_streamed_equals_one_shot(in_rate: int, out_rate: int) -> None:
    x = _chirp(in_rate)
    y = _stream(StreamingResampler(in_rate, out_rate), x, seed=in_rate + out_rate)
    assert y.dtype == np.float32
    assert len(y) == math.ceil(len(x) * out_rate / in_rate)
    one_shot = resample(x, in_rate, out_rate)
    assert len(one_shot) == len(y)
    assert np.max(np.abs(y - one_shot)) < 1e-6


@pytest.mark.parametrize("in_rate", SOURCE_RATES)
@pytest.mark.parametrize("out_rate", [r for r in OUTPUT_RATES if r not in SOURCE_RATES])
def test_agrees_with_soxr_within_the_passband(in_rate: int, out_rate: int) -> None:
    # An independent implementation (soxr's HQ one-shot) on a chirp within both filters' passbands: the two agree
    # to ~-60 dB, away from the edges (soxr pads differently at the ends).
    x = _chirp(in_rate)  # 100 Hz .. ~4 kHz: inside every output rate's band but 8 kHz's top tenth
    if out_rate == 8000:
        t = np.arange(len(x)) / in_rate
        x = (0.5 * np.sin(2 * np.pi * (100 + 1200 * t) * t)).astype(np.float32)  # up to 3.2 kHz
    ours = resample(x, in_rate, out_rate)
    theirs = soxr.resample(x, in_rate, out_rate, quality="HQ")
    n = min(len(ours), len(theirs))
    middle = slice(out_rate // 20, n - out_rate // 20)
    assert np.max(np.abs(ours[middle] - theirs[middle])) < 1e-3


@pytest.mark.parametrize(
    "in_rate,out_rate",
    [
        (16000, 8000),
        (48000, 24000),
        (48000, 22050),
        (48000, 44100),
        (48000, 16000),
        (48000, 8000),
        (16000, 24000),
        (16000, 48000),
    ],
)
def test_passband_kept_in_time_and_stopband_rejected(in_rate: int, out_rate: int) -> None:
    lower_nyquist = min(in_rate, out_rate) / 2
    # a tone at 85% of the lower Nyquist frequency comes out at its amplitude and its time (no delay)
    freq = 0.85 * lower_nyquist
    y = resample(_tone(in_rate, freq), in_rate, out_rate)
    ideal = 0.5 * np.sin(2 * np.pi * freq * np.arange(len(y)) / out_rate + 0.3)
    middle = slice(out_rate // 20, len(y) - out_rate // 20)
    assert np.max(np.abs(y[middle] - ideal[middle])) < 5e-4
    if in_rate > out_rate:
        # a tone just past the output's Nyquist frequency would alias into the band: 80 dB down, less rounding
        alias = resample(_tone(in_rate, 1.04 * lower_nyquist), in_rate, out_rate)
        rms = float(np.sqrt(np.mean(alias[middle].astype(np.float64) ** 2)))
        assert 20 * math.log10(rms / (0.5 / math.sqrt(2))) < -75


def test_first_chunk_leaves_at_once() -> None:
    # The 80 ms first chunk of a 16 kHz stream asked at 8 kHz: all but the filter's reach leaves with it (soxr's
    # streaming mode returned nothing for the first 120 ms, so telephony's first audio waited for a second chunk).
    rs = StreamingResampler(16000, 8000)
    out = rs.push(_chirp(16000, 0.08))
    assert rs.delay_samples <= 110  # 6.9 ms at 16 kHz
    assert len(out) >= (1280 - rs.delay_samples) // 2 - 1
    rs48 = StreamingResampler(48000, 24000)
    assert len(rs48.push(_chirp(48000, 0.08))) >= (3840 - rs48.delay_samples) // 2 - 1
    assert rs48.delay_samples <= 110  # 2.3 ms at 48 kHz


@settings(max_examples=150, deadline=None)
@given(
    rates=st.sampled_from(
        [
            (16000, 8000),
            (48000, 24000),
            (48000, 22050),
            (16000, 24000),
            (48000, 16000),
            (22050, 16000),
            (44100, 16000),
            (8000, 16000),
            (16000, 44100),
        ]
    ),
    pieces=st.lists(st.integers(0, 2500), min_size=1, max_size=12),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([0.0, 1e-6, 0.5, 1.0, 40.0]),
)
def test_any_pieces_give_the_one_shot_result_and_hold_back_little(
    rates: tuple[int, int], pieces: list[int], seed: int, scale: float
) -> None:
    in_rate, out_rate = rates
    x = (np.random.default_rng(seed).standard_normal(sum(pieces)) * scale).astype(np.float32)
    rs = StreamingResampler(in_rate, out_rate)
    out, i, got = [], 0, 0
    for k in pieces:
        y = rs.push(x[i : i + k])
        i += k
        got += len(y)
        out.append(y)
        # everything whose filter inputs have arrived is out: at most the filter's reach is held back
        assert got >= math.floor((i - rs.delay_samples) * out_rate / in_rate) - 1
        assert got <= math.ceil(i * out_rate / in_rate)
    out.append(rs.finish())
    y = np.concatenate(out)
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    assert len(y) == math.ceil(len(x) * out_rate / in_rate)
    one_shot = resample(x, in_rate, out_rate)
    # float32 sums over ~200 taps, in another order where a block was cut short: a few ulps of the signal's peak
    assert np.max(np.abs(y - one_shot), initial=0.0) <= 5e-6 * float(np.max(np.abs(x), initial=0.0))


def test_no_seams_between_pushes() -> None:
    # A pure tone resampled in tiny pushes: every sample matches the ideal tone (no clicks at boundaries).
    rate_in, rate_out = 16000, 48000
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(rate_in) / rate_in)).astype(np.float32)
    y = _stream(StreamingResampler(rate_in, rate_out), x, seed=1)
    ideal = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(y)) / rate_out)
    middle = slice(2000, len(y) - 2000)  # away from the filter's start/end transients
    assert np.max(np.abs(y[middle] - ideal[middle])) < 1e-3


def test_filter_design() -> None:
    taps, half = design_lowpass(1, 2)
    assert len(taps) == 2 * half + 1 and np.allclose(taps, taps[::-1])  # linear phase
    assert abs(taps.sum() - 1.0) < 1e-3  # unit gain at DC (gain `up` = 1)
    up, _ = design_lowpass(3, 2)
    assert abs(up.sum() - 3.0) < 3e-3  # an upsampler's filter carries the gain its zeros take away
    with pytest.raises(ValueError):
        design_lowpass(0, 2)
    assert PolyphaseResampler(48000, 24000).output_length(3) == 2


def test_a_ratio_too_fine_for_a_streaming_filter_is_refused() -> None:
    with pytest.raises(ValueError, match="lowest terms"):
        StreamingResampler(48000, 44099)  # 44099/48000: its filter would hold millions of taps
    with pytest.raises(ValueError, match="lowest terms"):
        resample(np.zeros(10, np.float32), 1, 48000)
    assert all(
        max(block_plan(a, b).up, block_plan(a, b).down) <= 441
        for a in (16000, 48000)
        for b in OUTPUT_RATES
        if a != b
    )


def test_start_up_designs_every_output_conversion() -> None:
    assert prepare_output_filters() == 2 * (len(OUTPUT_RATES) - 1)
    hits = block_plan.cache_info().hits
    for source in (16000, 48000):
        for rate in OUTPUT_RATES:
            if rate != source:
                StreamingResampler(source, rate)
    assert block_plan.cache_info().hits - hits == 2 * (
        len(OUTPUT_RATES) - 1
    )  # each stream's filter was ready


def test_streams_share_one_read_only_filter() -> None:
    # designed once per conversion (5-7 ms at 22.05 / 44.1 kHz, on the event loop at each stream's start otherwise)
    a, b = PolyphaseResampler(48000, 22050), PolyphaseResampler(48000, 22050)
    assert a._groups is b._groups is block_plan(48000, 22050).groups
    assert all(not group.matrix.flags.writeable for group in a._groups)


@pytest.mark.parametrize("in_rate,out_rate", [(48000, 22050), (48000, 44100), (16000, 22050), (16000, 8000)])
def test_output_groups_cover_the_block_and_every_tap(in_rate: int, out_rate: int) -> None:
    # Each output's taps lie in its group's band of inputs: the groups tile the block's outputs once and hold every
    # nonzero weight of the block's full matrix (rebuilt here from the prototype filter).
    plan = block_plan(in_rate, out_rate)
    taps, half = design_lowpass(plan.up, plan.down)
    weight_sum = sum(float(np.abs(g.matrix).sum()) for g in plan.groups)
    full = np.zeros((plan.width, plan.rows))
    for b in range(plan.rows):
        for j in range(plan.width):
            k = b * plan.down - (j - plan.reach) * plan.up + half
            if 0 <= k <= 2 * half:
                full[j, b] = taps[k]
    assert plan.groups[0].first == 0 and plan.groups[-1].end == plan.rows
    assert [g.first for g in plan.groups[1:]] == [g.end for g in plan.groups[:-1]]
    for g in plan.groups:
        np.testing.assert_allclose(g.matrix, full[g.offset : g.offset + g.width, g.first : g.end], rtol=1e-6)
    assert weight_sum == pytest.approx(float(np.abs(full).sum()), rel=1e-5)  # nothing outside the bands


def test_equal_rates_pass_through() -> None:
    rs = StreamingResampler(16000, 16000)
    x = _chirp(16000, 0.1)
    assert rs.passthrough and rs.delay_samples == 0
    assert np.array_equal(rs.push(x), x)
    assert len(rs.finish()) == 0
    assert np.array_equal(resample(x, 16000, 16000), x)


def test_output_arrives_while_streaming() -> None:
    rs = StreamingResampler(48000, 16000)
    got = sum(len(rs.push(_chirp(48000, 0.04))) for _ in range(10))
    assert got > 0.39 * 16000  # all but ~3 ms of 0.4 s already out before finish()


def test_bad_rates_and_reuse_are_refused() -> None:
    with pytest.raises(ValueError):
        StreamingResampler(0, 16000)
    with pytest.raises(ValueError):
        StreamingResampler(16000, 22050.5)  # type: ignore[arg-type]
    rs = StreamingResampler(16000, 8000)
    rs.finish()
    with pytest.raises(RuntimeError):
        rs.push(np.zeros(10, np.float32))
