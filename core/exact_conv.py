"""1-D convolutions whose every output sample is computed the same way whatever the input's length.

PyTorch's convolution backends pick an algorithm by shape: oneDNN on CPU (seen on AVX2 EPYC) and cuDNN on a GPU may
round one output sample differently depending on how long the window around it is. AP-BWE's phase head (an atan2
of near-zero values in empty bins) turns those 1e-7 differences into audible ones, so streamed super-resolution
would stop equalling the offline recipe. The functions here do the same maths with elementwise products summed in
a fixed order (taps) and matrix products over the channel axis only, so no process-wide switch is needed (the
earlier fix turned oneDNN off around each call: a global flag that overlapping requests left off for good).
Written by hand because torch offers no length-independent convolution that does not depend on a global flag.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _taps(x: Tensor, kernel_size: int, stride: int, steps: int) -> list[Tensor]:
    """The `kernel_size` shifted views of `x` (..., L) that each output step reads: view k holds x[k + stride*j]."""
    return [x[..., k : k + stride * (steps - 1) + 1 : stride] for k in range(kernel_size)]


def depthwise_conv1d(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """`nn.Conv1d(C, C, K, padding=K // 2, groups=C)` on x (B, C, T); weight (C, 1, K), K odd."""
    channels, _, size = weight.shape
    if size % 2 == 0 or x.shape[1] != channels:
        raise ValueError(
            f"depthwise_conv1d: weight {tuple(weight.shape)} does not fit input {tuple(x.shape)}"
        )
    steps = x.shape[-1]
    w = weight[:, 0, :].unsqueeze(-1)  # (C, K, 1)
    y: Tensor | None = None
    for k, view in enumerate(_taps(F.pad(x, (size // 2, size // 2)), size, 1, steps)):
        term = (
            view * w[:, k]
        )  # separate multiply and add: no fused op whose rounding differs from its tail loop
        y = term if y is None else y + term
    assert y is not None
    return y if bias is None else y + bias.unsqueeze(-1)


def dense_conv1d(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: int = 1, padding: int | None = None
) -> Tensor:
    """`nn.Conv1d(Cin, Cout, K, stride, padding)` on x (B, Cin, T); weight (Cout, Cin, K); padding None = K // 2.

    One (Cout, Cin) x (Cin, steps) product per tap, summed tap by tap."""
    size = weight.shape[-1]
    pad = size // 2 if padding is None else padding
    padded = F.pad(x, (pad, pad)) if pad else x
    steps = (padded.shape[-1] - size) // stride + 1
    if steps < 1:
        raise ValueError(f"dense_conv1d: input of {x.shape[-1]} samples is shorter than the kernel ({size})")
    per_tap = weight.permute(2, 0, 1)  # (K, Cout, Cin)
    y: Tensor | None = None
    for k, view in enumerate(_taps(padded, size, stride, steps)):
        term = torch.matmul(per_tap[k], view)
        y = term if y is None else y + term
    assert y is not None
    return y if bias is None else y + bias.unsqueeze(-1)
