"""core/exact_stft: torch.stft/istft's maths, every frame transformed by FFT calls of one shape.

The GPU acceptance run found that cuFFT's plan follows the number of frames, so a streamed window's spectrum differed
from the whole signal's (AP-BWE streamed vs offline: 14 dB on an H100); with fixed-shape FFT calls it measured 119 dB.
Here: the same numbers as torch on the CPU, and the FFT calls' shapes never depend on the signal's length."""

from __future__ import annotations

import pytest
import torch

from core import exact_stft

WINDOW = torch.hann_window(320, periodic=True)


@pytest.mark.parametrize("length", [517, 2000, 48_000])
def test_stft_and_istft_match_torch(length: int) -> None:
    x = torch.randn(length, generator=torch.Generator().manual_seed(length))
    ours = exact_stft.stft(x, 1024, 80, WINDOW)
    theirs = torch.stft(
        x, 1024, 80, 320, WINDOW, center=True, pad_mode="reflect", onesided=True, return_complex=True
    )
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-5)
    back = exact_stft.istft(theirs, 1024, 80, WINDOW, length)
    assert torch.allclose(
        back, torch.istft(theirs, 1024, 80, 320, WINDOW, center=True, length=length), atol=1e-5
    )
    assert torch.allclose(back, x, atol=1e-5)


def test_batched_input_keeps_its_leading_axes() -> None:
    x = torch.randn(3, 4000, generator=torch.Generator().manual_seed(0))
    spec = exact_stft.stft(x, 1024, 80, WINDOW)
    assert spec.shape == (3, 513, 51)
    assert torch.allclose(exact_stft.istft(spec, 1024, 80, WINDOW, 4000), x, atol=1e-5)


def test_every_fft_call_has_one_shape_whatever_the_length(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes: set[tuple[int, ...]] = set()
    rfft, irfft = torch.fft.rfft, torch.fft.irfft

    def spy_rfft(t: torch.Tensor, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        shapes.add(tuple(t.shape))
        return rfft(t, *args, **kwargs)

    def spy_irfft(t: torch.Tensor, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        shapes.add(tuple(t.shape))
        return irfft(t, *args, **kwargs)

    monkeypatch.setattr(torch.fft, "rfft", spy_rfft)
    monkeypatch.setattr(torch.fft, "irfft", spy_irfft)
    for length in (700, 9_000, 40_000):
        spec = exact_stft.stft(torch.randn(length), 1024, 80, WINDOW)
        exact_stft.istft(spec, 1024, 80, WINDOW, length)
    assert shapes == {(exact_stft.FRAME_TILE, 1024), (exact_stft.FRAME_TILE, 513)}


def test_a_window_on_the_frame_grid_has_the_whole_signals_frames() -> None:
    x = torch.randn(48_000, generator=torch.Generator().manual_seed(1))
    whole = exact_stft.stft(x, 1024, 80, WINDOW)
    start, stop = 80 * 200, 80 * 420
    window = exact_stft.stft(x[start:stop], 1024, 80, WINDOW)
    edge = 8  # frames whose reflect padding differs at the window's ends
    assert torch.equal(window[:, edge:-edge], whole[:, 200 + edge : 200 + window.shape[1] - edge])
