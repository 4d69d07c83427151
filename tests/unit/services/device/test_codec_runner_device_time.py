"""`ModelRunner.device_time()`: the per-shape count and seconds of its calls that the GPU kit sets beside each
shape's isolated cost. Real demo-size BiCodec and a small AP-BWE on the CPU (no CUDA here: `device_seconds` is
None; the CUDA events are exercised by the GPU kit's `service` step)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from core.apbwe import SuperResolution
from core.bicodec import BiCodecDecoder
from services.device import DecodeWindow, SRWindow
from services.device.calls import Call
from services.device.runner import ModelRunner
from tests.tiny_models import demo_decoder, small_sr


@pytest.fixture(scope="module")
def decoder() -> BiCodecDecoder:
    return demo_decoder(seed=3)


@pytest.fixture(scope="module")
def sr() -> SuperResolution:
    return small_sr(seed=1)


def _window(decoder: BiCodecDecoder, length: int, seed: int) -> DecodeWindow:
    rng = np.random.default_rng(seed)
    d = torch.randn(decoder.d_vector_dim, generator=torch.Generator().manual_seed(seed))
    return DecodeWindow(rng.integers(0, 8192, length).astype(np.int32), d, 0, length)


def test_a_fresh_runner_has_no_rows(decoder) -> None:  # noqa: ANN001
    runner = ModelRunner(decoder)
    try:
        assert runner.device_time() == []
    finally:
        runner.close()


def test_each_call_shape_is_counted_once_per_call_with_its_seconds(decoder, sr) -> None:  # noqa: ANN001
    runner = ModelRunner(decoder, sr)
    a, b = _window(decoder, 14, 1), _window(decoder, 9, 2)
    samples = (0.1 * np.random.default_rng(4).standard_normal(2_000)).astype(np.float32)
    calls = [
        Call("decode", (a, b), 16, 4),
        Call("decode", (a,), 16, 4),
        Call("decode", (b,), None, 1),
        Call("sr", (SRWindow(samples, 0, 3 * 1_000),), 2_400, 1),
        Call("sr", (SRWindow(samples, 300, 3 * samples.size, true_end=True),), None, 1, true_end=True),
    ]
    try:
        for call in calls:
            runner.run_sync(call)
        rows = runner.device_time()
        shapes = {(r["kind"], r["length"], r["rows"], r["graph"]): r for r in rows}
        assert set(shapes) == {
            ("decode", 16, 4, False),
            ("decode", None, 1, False),
            ("sr", 2_400, 1, False),
            ("sr", None, 1, False),
        }
        assert shapes[("decode", 16, 4, False)]["calls"] == 2
        assert sum(r["calls"] for r in rows) == len(calls) == runner.eager_calls
        assert all(r["seconds"] > 0 and r["device_seconds"] is None for r in rows)  # a CPU has no CUDA events
        before = shapes[("decode", 16, 4, False)]["seconds"]
        runner.run_sync(calls[0])
        after = {(r["kind"], r["length"], r["rows"]): r for r in runner.device_time()}[("decode", 16, 4)]
        assert after["calls"] == 3 and after["seconds"] > before  # cumulative: a reader diffs two readings
    finally:
        runner.close()


def test_the_counts_of_several_device_threads_are_merged(decoder) -> None:  # noqa: ANN001
    """A CPU runs several device threads (one table each, no lock): no call is lost in the merged reading."""
    runner = ModelRunner(decoder, threads=3)
    windows = [_window(decoder, 8 + k % 5, k) for k in range(24)]

    async def main() -> list[list[np.ndarray]]:
        return await asyncio.gather(*(runner.run(Call("decode", (w,), 16, 1)) for w in windows))

    try:
        outputs = asyncio.run(main())
        rows = runner.device_time()
        assert rows == [{**rows[0], "calls": 24}] and rows[0]["length"] == 16
        assert 1 <= len(runner._time_tables) <= 3
        alone = ModelRunner(decoder)
        try:  # the timing changes nothing the runner returns
            for w, got in zip(windows, outputs, strict=True):
                np.testing.assert_array_equal(got[0], alone.run_sync(Call("decode", (w,), 16, 1))[0])
        finally:
            alone.close()
    finally:
        runner.close()
