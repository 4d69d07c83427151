"""core/exact_conv: the same maths as torch's convolutions, and every output sample independent of the input length."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.exact_conv import dense_conv1d, depthwise_conv1d


@pytest.fixture(scope="module")
def signal() -> torch.Tensor:
    return torch.randn(1, 24, 1500, generator=torch.Generator().manual_seed(0))


def test_depthwise_matches_torch(signal: torch.Tensor) -> None:
    conv = torch.nn.Conv1d(24, 24, 7, padding=3, groups=24)
    with torch.no_grad():
        torch.testing.assert_close(
            depthwise_conv1d(signal, conv.weight, conv.bias), conv(signal), atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("stride", [1, 3])
def test_dense_matches_torch(signal: torch.Tensor, stride: int) -> None:
    conv = torch.nn.Conv1d(24, 40, 7, stride=stride, padding=3)
    with torch.no_grad():
        torch.testing.assert_close(
            dense_conv1d(signal, conv.weight, conv.bias, stride=stride), conv(signal), atol=1e-5, rtol=0
        )
    kernel = torch.randn(3, 1, 15)
    mono = signal[:, :1]
    torch.testing.assert_close(
        dense_conv1d(mono, kernel, None, stride=stride, padding=0),
        F.conv1d(mono, kernel, stride=stride),
        atol=1e-5,
        rtol=0,
    )


@pytest.mark.parametrize("kind", ["depthwise", "dense"])
def test_a_sample_is_bit_identical_whatever_the_window_around_it(signal: torch.Tensor, kind: str) -> None:
    """What streaming relies on: a window of any length gives exactly the samples the whole signal gives."""
    gen = torch.Generator().manual_seed(1)
    if kind == "depthwise":
        weight, bias = torch.randn(24, 1, 7, generator=gen), torch.randn(24, generator=gen)
        conv = lambda x: depthwise_conv1d(x, weight, bias)  # noqa: E731
    else:
        weight, bias = torch.randn(32, 24, 7, generator=gen), torch.randn(32, generator=gen)
        conv = lambda x: dense_conv1d(x, weight, bias)  # noqa: E731
    whole = conv(signal)
    for start, stop in [(0, 40), (100, 117), (3, 1500), (640, 1280), (200, 1001), (0, 1500)]:
        part = conv(signal[..., start:stop])
        inner = slice(3, stop - start - 3)  # away from the zero-padded edges
        assert torch.equal(part[..., inner], whole[..., start + 3 : stop - 3]), (start, stop)


def test_bad_shapes_are_refused(signal: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        depthwise_conv1d(signal, torch.zeros(24, 1, 6), None)
    with pytest.raises(ValueError, match="shorter than the kernel"):
        dense_conv1d(signal[..., :3], torch.zeros(8, 24, 7), None, padding=0)
