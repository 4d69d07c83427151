"""AP-BWE at tensor-core precision (core/apbwe_precision), emulated on the CPU as a GPU rounds.

The bar a precision must clear to serve: >= 50 dB SNR against fp32 and every audible STFT bin's phase within pi/2,
on the shared reference fixture (its own weights and input) and on espeak-ng speech, at the fixture's size and at
the released size; and streamed output equals the offline upsample at that precision (1e-4, fp32's rule)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.bench_apbwe_precision import PHASE_LIMIT, SNR_FLOOR_DB, espeak_speech, measure
from core.apbwe import (
    RELEASED_CONFIG,
    SERVED,
    APBWEConfig,
    SuperResolution,
    random_generator,
    write_random_checkpoint,
)
from core.apbwe_precision import round_fp16, round_tf32

TINY = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures" / "apbwe_tiny"
needs_tiny = pytest.mark.skipif(
    not (TINY / "expected.npz").is_file(), reason=f"AP-BWE reference fixtures not found at {TINY}"
)
SERVABLE = ("fp16", "tf32")  # fp16: the default on CUDA; tf32: its graphs-only alternative


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(
        1
    )  # small windows: spinning intra-op threads on a shared runner cost more than they give
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fixture_input() -> np.ndarray:
    with np.load(TINY / "expected.npz") as data:
        return data["wav16"]


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return espeak_speech(1.5)


def _tiny(precision: str) -> SuperResolution:
    return SuperResolution.from_pretrained(TINY, precision=precision)  # type: ignore[arg-type]


def _assert_passes(figures, what: str) -> None:
    assert figures.snr_db >= SNR_FLOOR_DB, f"{what}: {figures.snr_db:.1f} dB from fp32 (bar {SNR_FLOOR_DB:g})"
    assert figures.phase_max <= PHASE_LIMIT, f"{what}: a phase {figures.phase_max:.2f} rad off fp32's"
    assert figures.streamed_max_diff <= 1e-4, f"{what}: streamed {figures.streamed_max_diff:.1e} from offline"


# --- the emulated roundings --------------------------------------------------------------------------------


def test_tf32_rounding_keeps_ten_mantissa_bits_to_nearest_even() -> None:
    ulp = 2.0**-10
    x = torch.tensor(
        [1.0, 1 + ulp, 1 + ulp / 2, 1 + 3 * ulp / 2, 1 + ulp / 2 + 2**-20, -(1 + 3 * ulp / 2), 3e38]
    )
    got = round_tf32(x)
    # exact values stay; a tie goes to the even mantissa (down from 1 + ulp/2, up from 1 + 3ulp/2); past it, up
    want = [
        1.0,
        1 + ulp,
        1.0,
        1 + 2 * ulp,
        1 + ulp,
        -(1 + 2 * ulp),
        float(round_tf32(torch.tensor([3e38]))[0]),
    ]
    assert got.tolist() == want
    values = torch.randn(10_000, generator=torch.Generator().manual_seed(0)) * 1e3
    rounded = round_tf32(values)
    assert torch.equal(round_tf32(rounded), rounded)  # idempotent: 13 low bits zero
    assert torch.all((rounded.view(torch.int32) & 0x1FFF) == 0)
    assert float(((rounded - values).abs() / values.abs()).max()) <= 2.0**-11


def test_fp16_rounding_is_the_cast() -> None:
    x = torch.tensor([1 + 2.0**-11, 70_000.0, 1e-8])
    assert round_fp16(x).tolist() == [1.0, math.inf, 0.0]


# --- what stays fp32 ---------------------------------------------------------------------------------------


@needs_tiny
@pytest.mark.parametrize("precision", SERVABLE)
def test_the_resampler_and_stft_are_the_same_bits_at_every_precision(precision, fixture_input) -> None:
    reference, variant = _tiny("fp32"), _tiny(precision)
    x = torch.from_numpy(fixture_input)[None]
    x48 = variant.resample(x)
    assert torch.equal(x48, reference.resample(x))
    ours, theirs = variant.analyse(x48), reference.analyse(x48)
    assert torch.equal(ours.logamp, theirs.logamp) and torch.equal(ours.pha, theirs.pha)


@needs_tiny
def test_fp32_is_untouched_and_fp16_changes_only_the_trunk(fixture_input) -> None:
    """fp32 runs no rounding at all; fp16 serves the pointwise layers' weights in fp16 and nothing else."""
    fp32, fp16 = _tiny("fp32"), _tiny("fp16")
    blocks = [*fp32.generator.convnext_mag, *fp32.generator.convnext_pha]
    assert all(block.served_w1 is None for block in blocks)
    served = [
        getattr(block, name)
        for block in (*fp16.generator.convnext_mag, *fp16.generator.convnext_pha)
        for name in SERVED
    ]
    assert served and all(torch.equal(t, round_fp16(t)) for t in served)
    assert not np.array_equal(fp16.upsample(fixture_input), fp32.upsample(fixture_input))
    # Idle sleep moves the generator off the device and back: the served weights go with it, outside the state dict.
    assert set(fp16.generator.state_dict()) == set(fp32.generator.state_dict())
    fp16.generator.to("meta")
    assert all(
        getattr(block, name).device.type == "meta" for block in fp16.generator.convnext_mag for name in SERVED
    )


# --- the bar ------------------------------------------------------------------------------------------------


@needs_tiny
@pytest.mark.parametrize("precision", SERVABLE)
def test_the_fixture_clears_the_bar(precision, fixture_input, speech) -> None:
    reference, variant = _tiny("fp32"), _tiny(precision)
    _assert_passes(measure(reference, variant, fixture_input), f"{precision}, the fixture's input")
    _assert_passes(measure(reference, variant, speech), f"{precision}, espeak speech")


def test_the_released_size_clears_the_bar_on_speech(speech) -> None:
    """29.8 M parameters at the default precision (random weights: the same roundings as the released ones, not the
    same function; `python -m bench.bench_apbwe_precision --weights DIR` reads the released ones, tf32 too)."""
    precision = "fp16"
    config = APBWEConfig.from_dict(RELEASED_CONFIG)
    generator = random_generator(config, seed=0)
    reference = SuperResolution(copy.deepcopy(generator), config)
    variant = SuperResolution(generator, config, precision=precision)  # type: ignore[arg-type]
    _assert_passes(measure(reference, variant, speech[:8000]), f"{precision}, released size")


# --- streamed == offline at the served precision ------------------------------------------------------------


@needs_tiny
@pytest.mark.parametrize("precision", SERVABLE)
def test_concurrent_callers_get_their_solo_results(precision, fixture_input) -> None:
    """The service calls one SuperResolution from several threads: its precision lives in its `Products`, set once,
    with nothing per call on the shared object, so each caller's output is the bits it gets alone."""
    from concurrent.futures import ThreadPoolExecutor

    sr = _tiny(precision)
    inputs = [
        np.roll(fixture_input, shift) * scale
        for shift, scale in ((0, 1.0), (800, 0.5), (1600, 0.8), (2400, 0.3))
    ]
    solo = [sr.upsample(x) for x in inputs]
    with ThreadPoolExecutor(len(inputs)) as pool:
        for _ in range(3):
            together = list(pool.map(sr.upsample, inputs))
            for alone, beside in zip(solo, together, strict=True):
                np.testing.assert_array_equal(beside, alone)


@needs_tiny
@pytest.mark.parametrize("precision", SERVABLE)
def test_streaming_equals_offline_at_the_served_precision(precision, fixture_input) -> None:
    sr = _tiny(precision)
    offline = sr.upsample(fixture_input)
    rng = np.random.default_rng(7)
    for sizes in ([4000] * 5, [int(s) for s in rng.integers(1, 4000, 40)]):
        stream, parts, i = sr.stream(), [], 0
        for size in sizes:
            parts.append(stream.push(fixture_input[i : i + size]))
            i += size
        parts.append(stream.push(fixture_input[i:]))
        got = np.concatenate([*parts, stream.finish()])
        np.testing.assert_allclose(got, offline, atol=1e-4, rtol=0)


def test_streaming_equals_offline_at_fp16_and_released_depth(tmp_path) -> None:
    write_random_checkpoint(tmp_path, channels=16, layers=8, seed=3)
    sr = SuperResolution.from_pretrained(tmp_path, precision="fp16")
    t = np.arange(24_000) / 16000
    wav = (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 1.3 * t)).astype(np.float32)
    stream = sr.stream()
    got = np.concatenate([stream.push(wav[:8000]), stream.push(wav[8000:]), stream.finish()])
    np.testing.assert_allclose(got, sr.upsample(wav), atol=1e-4, rtol=0)


# --- the fused path -----------------------------------------------------------------------------------------


def test_a_layer_compiles_as_one_graph_for_every_layer_and_shape(tmp_path) -> None:
    """`fused=True` compiles the layer pair with `fullgraph=True` (a graph break raises): traced here with the eager
    backend (what TorchInductor is handed), its output equal to the uncompiled generator's, and one trace serving
    both layers and the window lengths a stream's calls take (rows of one, as `upsample` runs)."""
    from torch._dynamo.utils import counters

    from core.apbwe import _layer

    write_random_checkpoint(tmp_path, channels=8, layers=2, seed=2)
    eager = SuperResolution.from_pretrained(tmp_path, precision="fp16")
    fused = SuperResolution.from_pretrained(tmp_path, precision="fp16", fused=True)
    assert fused.fused and fused.generator._layer is not _layer and eager.generator._layer is _layer
    torch._dynamo.reset()
    counters.clear()
    fused.generator._layer = torch.compile(_layer, dynamic=True, fullgraph=True, backend="eager")
    wav = np.random.default_rng(3).uniform(-0.3, 0.3, 6000).astype(np.float32)
    np.testing.assert_array_equal(fused.upsample(wav), eager.upsample(wav))
    stream = fused.stream(min_block=1600)
    got = np.concatenate([stream.push(wav[:2500]), stream.push(wav[2500:]), stream.finish()])
    np.testing.assert_allclose(got, eager.upsample(wav), atol=1e-4, rtol=0)
    assert counters["stats"]["unique_graphs"] <= 2
