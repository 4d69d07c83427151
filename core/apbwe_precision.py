"""The AP-BWE generator's matrix products at a chosen precision, on a GPU or emulated bit for bit on a CPU.

Only the generator's trunk may round: the resampler, the STFT/iSTFT and the generator's input convolutions stay fp32
(core/exact_conv, core/exact_stft), because the log amplitude and phase of the empty 8-24 kHz band are rounding noise
that the generator reads; rounding them differently changes the output wholesale (docs/decisions/apbwe-precision.md).

- `fp32`: every product in fp32 (the reference).
- `fp16`: the ConvNeXt blocks' two pointwise layers (`pwconv1`, `pwconv2`: ~95 % of the generator's multiply-adds)
  take fp16 operands and write fp16, as cuBLAS does for fp16 tensors on tensor cores (fp32 accumulation); the
  depthwise convolution, the norms, the residual stream, the input convolutions and the heads stay fp32. The
  precision is carried by the tensors' dtype, so an eager call (offline, a stream's true end) and a captured graph
  run the same kernels: no process-wide switch is involved.
- `tf32`: every matrix product (input convolutions, pointwise layers, heads) with operands rounded to TF32's 10-bit
  mantissa, fp32 accumulation. On a GPU that is a process-wide cuBLAS switch, so it applies only inside a CUDA graph's
  capture (services/device/graphs.py); the generator's own code stays fp32 there.

`emulate=True` computes the same roundings with fp32 kernels (round the operands, multiply in fp32, round the output):
the figures a CPU gives for a GPU's reduced precision. Rounding is to nearest, ties to even, as fp16 casts and the
tensor cores' TF32 conversion round; products of 11-bit (fp16) or 11-bit (TF32) significands are exact in fp32, so
only the accumulation order differs from the GPU (fp32 rounding, far below the operands' own).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SRPrecision = Literal["fp32", "tf32", "fp16"]
SR_PRECISIONS: tuple[SRPrecision, ...] = get_args(SRPrecision)


def round_tf32(x: Tensor) -> Tensor:
    """fp32 -> the nearest value with a 10-bit mantissa (TF32), ties to even; still an fp32 tensor."""
    bits = x.contiguous().view(torch.int32)
    # Sign-magnitude: adding to the low bits rounds the magnitude, and a carry into the exponent is the right result.
    rounded = (bits + (0xFFF + ((bits >> 13) & 1))) & ~0x1FFF
    return rounded.view(torch.float32)


def round_fp16(x: Tensor) -> Tensor:
    return x.to(torch.float16).to(torch.float32)


def check_precision(precision: str) -> SRPrecision:
    if precision not in SR_PRECISIONS:
        raise ValueError(f"AP-BWE precision must be one of {SR_PRECISIONS}, got {precision!r}")
    return precision


class Products:
    """How one generator's matrix products round. `served` gives a pointwise layer's weights in their served form
    (made once, when the precision is set); `trunk_linear` runs a pointwise layer, `operand` rounds the other
    products' inputs (the input convolutions and heads: the TF32 emulation only)."""

    def __init__(self, precision: SRPrecision = "fp32", emulate: bool = False) -> None:
        self.precision = check_precision(precision)
        self.emulate = emulate

    @property
    def half(self) -> bool:
        return self.precision == "fp16"

    @property
    def rounds_operands(self) -> bool:
        """The TF32 emulation: the code itself rounds every product's operands (a GPU's switch does, in a graph)."""
        return self.precision == "tf32" and self.emulate

    @property
    def own_weights(self) -> bool:
        """The pointwise layers read copies of their weights (fp16, or rounded ones when emulating); else the
        parameters themselves (fp32, and TF32 on a GPU, whose rounding the switch does)."""
        return self.half or self.rounds_operands

    def operand(self, x: Tensor) -> Tensor:
        return round_tf32(x) if self.rounds_operands else x

    def served(self, layer: nn.Linear) -> tuple[Tensor, Tensor | None]:
        """`layer`'s weight and bias as the products read them: fp16 (or fp16-rounded fp32 when emulated), TF32-rounded
        when emulating TF32, else the parameters themselves."""
        weight, bias = layer.weight.detach(), None if layer.bias is None else layer.bias.detach()
        if self.half:
            cast = round_fp16 if self.emulate else (lambda t: t.to(torch.float16))
            return cast(weight), None if bias is None else cast(bias)
        return (round_tf32(weight) if self.rounds_operands else weight), bias

    def trunk_linear(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """A pointwise layer at this precision (`weight`, `bias` from `served`). fp16: the result stays fp16."""
        if self.half:
            if self.emulate:  # fp16 operands, fp32 accumulation, the output (bias added) rounded to fp16
                return round_fp16(F.linear(round_fp16(x), weight, bias))
            return F.linear(x.to(torch.float16), weight, bias)
        return F.linear(self.operand(x), weight, bias)

    def gelu(self, x: Tensor) -> Tensor:
        """Exact (erf) GELU, as trained; fp16 on fp16 input (computed in fp32, rounded once), as a GPU does."""
        y = F.gelu(x)
        return round_fp16(y) if self.half and self.emulate else y
