"""The float numerics BiCodec, AP-BWE and the reference encoder run with: set once per process at start-up.

These are process-wide torch switches, so they are set in one place when the runtime is built
(services/deployment/runtime.py) and never per request (a switch flipped around a call leaks into every
concurrent request; core/exact_conv says how AP-BWE got rid of the one it had).

- TF32 off for cuDNN convolutions and for matmuls. On Ampere and later torch runs fp32 convolutions in TF32 by
  default (10 mantissa bits, ~1e-3 relative error), which moves BiCodec's and AP-BWE's outputs far more than the 1e-7
  that streamed == offline is checked at; AP-BWE's phase head amplifies such errors into audible ones. Off until a
  GPU measurement shows it harmless (the GPU acceptance run measures streamed against offline with these settings).
- fp16 matmuls accumulate in fp32 throughout (no reduced-precision split-K reductions): AP-BWE's fp16 pointwise
  layers (core/apbwe_precision) then round as the CPU emulation that cleared them does. Only AP-BWE multiplies fp16.
- cuDNN autotuning (`benchmark`) off: it times algorithms per input shape, so a window's rounding would depend on its
  length and on the run.
The vLLM engine runs in its own process and is not affected. The legacy flag API is used throughout: torch refuses
to read the legacy flags once the newer `fp32_precision` API has set them inconsistently.
"""

from __future__ import annotations

import torch


def apply_model_numerics() -> dict[str, object]:
    """Set the switches (idempotent) and return them, for the start-up log."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    torch.backends.cudnn.benchmark = False
    torch.set_float32_matmul_precision("highest")
    return model_numerics()


def model_numerics() -> dict[str, object]:
    return {
        "cuda_matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_conv_tf32": torch.backends.cudnn.allow_tf32,
        "cuda_matmul_fp16_reduced_reduction": torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
