"""Reusable neural-network blocks of the codecs (the `dac/nn` of this project): weight-normed convolutions, Snake,
adaptive layer norm, ConvNeXt / Vocos backbone, DAC residual units.

Padded batches: the blocks that hold a temporal convolution take an optional `mask` ([B, 1, T], 1 inside a row's
valid length, 0 beyond it) and zero that convolution's input with it. Every other op here is pointwise in time, so a
row right-padded into a longer batch then computes, over its valid length, what it computes alone (a convolution
reads zeros beyond the valid end either way); the padded tail is garbage and is cut by the caller.

Parameters are created empty: weights always come from a checkpoint (or a random-weight builder), so no init is
spent here and a tree can be built on the meta device. Parameter names are the released checkpoints' own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def empty_parameter(*shape: int) -> nn.Parameter:
    # Weights always come from a checkpoint or the random builder, so no init is spent here; this also
    # lets the tree be built on the meta device.
    return nn.Parameter(torch.empty(*shape), requires_grad=False)


def fold_weight_norm_tensor(weight_g: Tensor, weight_v: Tensor) -> Tensor:
    """W = g * v / ||v||, the norm over every axis but 0 (old `weight_norm(dim=0)`).

    Axis 0 is the output channel of a Conv1d and the *input* channel of a ConvTranspose1d.
    """
    norm = weight_v.norm(p=2, dim=tuple(range(1, weight_v.dim())), keepdim=True)
    weight: Tensor = weight_v * (weight_g / norm)
    return weight


class WNConv1d(nn.Module):
    """Weight-normed Conv1d / ConvTranspose1d stored as `weight_g`, `weight_v`, `bias`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        transposed: bool = False,
    ) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation, self.transposed = stride, padding, dilation, transposed
        first, second = (in_channels, out_channels) if transposed else (out_channels, in_channels)
        self.weight_g = empty_parameter(first, 1, 1)
        self.weight_v = empty_parameter(first, second, kernel_size)
        self.bias = empty_parameter(out_channels)
        self.folded = False

    def fold(self) -> None:
        weight = fold_weight_norm_tensor(self.weight_g, self.weight_v)
        del self.weight_g, self.weight_v
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.folded = True

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight if self.folded else fold_weight_norm_tensor(self.weight_g, self.weight_v)
        if self.transposed:
            return F.conv_transpose1d(x, w, self.bias, stride=self.stride, padding=self.padding)
        return F.conv1d(x, w, self.bias, stride=self.stride, padding=self.padding, dilation=self.dilation)


def masked(x: Tensor, mask: Tensor | None) -> Tensor:
    """x with every time step beyond its row's valid length zeroed (x itself when there is no mask)."""
    return x if mask is None else x * mask


def length_mask(lengths: Tensor, steps: int, rate: int = 1) -> Tensor:
    """[B, 1, steps] float mask of `lengths * rate` valid steps per row, built on the lengths' device (no sync)."""
    t = torch.arange(steps, device=lengths.device)
    return (t < (lengths * rate).unsqueeze(-1)).unsqueeze(1).to(torch.float32)


def fold_weight_norms(module: nn.Module) -> None:
    """Fold every weight-normed conv under `module` into one plain weight (after loading `weight_g`/`weight_v`)."""
    for sub in module.modules():
        if isinstance(sub, WNConv1d) and not sub.folded:
            sub.fold()


class Snake1d(nn.Module):
    """y = x + sin^2(alpha x) / alpha, alpha learned per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = empty_parameter(1, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        # In-place on a fresh buffer: the wave generator is memory-bound at high sample rates.
        y = torch.mul(x, self.alpha).sin_().square_()
        return torch.addcmul(x, y, (self.alpha + 1e-9).reciprocal())


class AdaLayerNorm(nn.Module):
    """LayerNorm without affine parameters, then scale/shift predicted from the d-vector."""

    def __init__(self, condition_dim: int, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.scale = nn.Linear(condition_dim, dim)
        self.shift = nn.Linear(condition_dim, dim)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:  # x [B, T, C], cond [B, D]
        x = F.layer_norm(x, (self.dim,), eps=self.eps)
        y: Tensor = x * self.scale(cond).unsqueeze(1) + self.shift(cond).unsqueeze(1)
        return y


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, intermediate_dim: int, condition_dim: int | None) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm: nn.Module = (
            AdaLayerNorm(condition_dim, dim) if condition_dim is not None else nn.LayerNorm(dim, eps=1e-6)
        )
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = empty_parameter(dim)

    def forward(self, x: Tensor, cond: Tensor | None, mask: Tensor | None = None) -> Tensor:  # x [B, C, T]
        y = self.dwconv(masked(x, mask)).transpose(1, 2)
        y = self.norm(y, cond) if isinstance(self.norm, AdaLayerNorm) else self.norm(y)
        y = self.pwconv2(F.gelu(self.pwconv1(y)))
        out: Tensor = x + (self.gamma * y).transpose(1, 2)
        return out


class VocosBackbone(nn.Module):
    """embed conv -> norm -> ConvNeXt blocks -> final LayerNorm; [B, C_in, T] in, [B, C, T] out.

    `input_channels` defaults to `dim` (the prenet's backbones); the encoder's first backbone reads wav2vec2 features.
    """

    def __init__(
        self,
        dim: int,
        intermediate_dim: int,
        num_layers: int,
        condition_dim: int | None,
        input_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.embed = nn.Conv1d(input_channels or dim, dim, kernel_size=7, padding=3)
        self.norm: nn.Module = (
            AdaLayerNorm(condition_dim, dim) if condition_dim is not None else nn.LayerNorm(dim, eps=1e-6)
        )
        self.convnext = nn.ModuleList(
            ConvNeXtBlock(dim, intermediate_dim, condition_dim) for _ in range(num_layers)
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor, cond: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        x = self.embed(masked(x, mask)).transpose(1, 2)
        x = self.norm(x, cond) if isinstance(self.norm, AdaLayerNorm) else self.norm(x)
        x = x.transpose(1, 2)
        for block in self.convnext:
            x = block(x, cond, mask)
        out: Tensor = self.final_layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return out


class UnitRatioSampling(nn.Module):
    """Upstream SamplingBlock at ratio 1: no parameters; conv path and both skips are identity, so 3x."""

    def forward(self, x: Tensor) -> Tensor:
        return 3.0 * x


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(dim),
            WNConv1d(dim, dim, 7, dilation=dilation, padding=3 * dilation),
            Snake1d(dim),
            WNConv1d(dim, dim, 1),
        )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            out: Tensor = x + self.block(x)
            return out
        snake, conv, snake2, pointwise = self.block
        # The k7 conv's input is zeroed beyond the valid length (the Snake output is a fresh tensor: in place);
        # the 1x1 conv is pointwise in time and needs no mask.
        out = x + pointwise(snake2(conv(snake(x).mul_(mask))))
        return out
