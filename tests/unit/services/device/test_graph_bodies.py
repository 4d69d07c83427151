"""The bodies the codec captures as CUDA graphs can be captured: checked on a CPU, without CUDA.

A CUDA graph records kernels; it cannot record the host waiting for the device (`.item()`, `if tensor:`), an op whose
output shape depends on tensor values (a boolean mask, `nonzero`), or a copy from host memory made inside the body
(`torch.tensor(...).to(device)`). Any of these in `run_decode` or `enhance_batch` makes every capture fail on the GPU,
and the service then serves every call eager: the audio is the same, the device time is not, and nothing in CI would
notice (no GPU here). So each body `graph_body` gives `CodecGraphs.capture` runs after a warm-up, as `CodecGraphs.capture` runs it, on the meta device (no
data: `.item()` and data-dependent shapes raise) under a dispatch mode that rejects any tensor argument not on the
device (a host tensor copied in) and any op that waits for values. Released sizes cost nothing on meta.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from core.apbwe import RELEASED_CONFIG as APBWE_RELEASED
from core.apbwe import APBWEConfig, SuperResolution, random_generator
from core.apbwe_precision import SRPrecision
from core.bicodec import RELEASED_CONFIG as BICODEC_RELEASED
from core.bicodec import BiCodecDecoder
from core.demo.random_bicodec import DEMO_CONFIG
from services.device.calls import DEFAULT_DECODE_MARGIN
from services.device.graphs import GraphKey, graph_body

META = torch.device("meta")
# Ops that read tensor values on the host or size their output by them (on CUDA: a sync, illegal while capturing).
HOST_READS = frozenset(
    {
        "_local_scalar_dense",
        "item",
        "is_nonzero",
        "equal",
        "allclose",
        "nonzero",
        "masked_select",
        "_unique",
        "_unique2",
        "unique_dim",
        "unique_consecutive",
        "bincount",
        "histc",
        "repeat_interleave",
        "tolist",
    }
)


class _CaptureRules(TorchDispatchMode):
    """Records what a CUDA capture would refuse: a host tensor entering an op (a copy from host memory; 0-dim host
    scalars are passed by value and allowed) and an op that reads values on the host."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.refused: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch's signature
        name = func.overloadpacket.__name__
        if name in HOST_READS:
            self.refused.append(f"{func}: reads tensor values on the host")
        for value in pytree.tree_leaves((args, kwargs or {})):
            if isinstance(value, torch.Tensor) and value.device != self.device and value.dim() > 0:
                self.refused.append(
                    f"{func}: a {value.device} tensor of shape {list(value.shape)} enters the body"
                )
            if (
                isinstance(value, torch.Tensor)
                and value.dtype == torch.bool
                and name in ("index", "index_put", "index_put_")
            ):
                self.refused.append(f"{func}: a boolean mask index (its output shape depends on the values)")
        return func(*args, **(kwargs or {}))


def capture_problems(body: Callable[[], object], device: torch.device = META) -> list[str]:
    """What a CUDA capture of `body` would refuse, found on `device` (meta): a warm-up first (as `CodecGraphs.capture`
    does, so per-device caches are filled outside the graph), then the body under the rules. An error on meta (a
    value read, a data-dependent shape, a host tensor mixed in) is a refusal too."""
    rules = _CaptureRules(device)
    with torch.inference_mode():
        try:
            body()
            with rules:
                body()
        except (RuntimeError, NotImplementedError) as exc:
            rules.refused.append(f"raised on {device}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return rules.refused


def _decoder_on_meta(config: dict) -> BiCodecDecoder:
    with torch.device(META):
        return BiCodecDecoder(config).eval()


def _sr_on_meta(config: dict, precision: SRPrecision = "fp32") -> SuperResolution:
    """AP-BWE with its generator and STFT window on meta (the window's NOLA check reads it on the host once, at
    construction, so the object is built on the CPU and then moved), its products at `precision` as on CUDA (not
    emulated: fp16 tensors)."""
    cfg = APBWEConfig.from_dict(config)
    sr = SuperResolution(random_generator(cfg, seed=0), cfg, device="cpu")
    sr.generator.to(META)
    sr.generator.set_precision(precision, emulate=False)
    sr._frontend.window = sr._frontend.window.to(META)
    sr.device = META
    return sr


@pytest.mark.parametrize("size", ["demo", "released"])
@pytest.mark.parametrize(
    "key", [GraphKey("decode", 16, 1), GraphKey("decode", 48, 3), GraphKey("decode", 256, 8)]
)
@pytest.mark.parametrize("margin", [0, DEFAULT_DECODE_MARGIN])
def test_the_decode_graph_body_has_nothing_a_capture_refuses(size, key, margin) -> None:
    decoder = _decoder_on_meta(DEMO_CONFIG if size == "demo" else BICODEC_RELEASED)
    inputs, body = graph_body(decoder, None, key, META, margin)
    assert capture_problems(body) == []
    out = body()
    assert out.device == META and out.shape == (key.rows, key.length * decoder.hop_length)


@pytest.mark.parametrize("size", ["narrow", "released"])
@pytest.mark.parametrize("key", [GraphKey("sr", 2_240, 1), GraphKey("sr", 9_760, 6)])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_super_resolution_graph_body_has_nothing_a_capture_refuses(size, key, precision) -> None:
    config = (
        dict(APBWE_RELEASED)
        if size == "released"
        else {**APBWE_RELEASED, "ConvNeXt_channels": 16, "ConvNeXt_layers": 2}
    )
    inputs, body = graph_body(None, _sr_on_meta(config, precision), key, META)
    assert capture_problems(body) == []
    out = body()
    assert out.shape == (key.rows, 3 * key.length) and out.dtype == torch.float32


# ------------------------------------------------------------------ the check refuses what a capture refuses


def _on_meta(n: int = 8) -> torch.Tensor:
    return torch.zeros(n, device=META)


@pytest.mark.parametrize(
    "body, why",
    [
        (lambda x: x * float(x.sum().item()), "value read"),
        (lambda x: x * 2 if bool(x.sum() > 0) else x, "branch on a value"),
        (lambda x: x[x > 0], "boolean mask"),
        (lambda x: x + torch.arange(x.shape[0], dtype=torch.float32).to(x.device), "host copy"),
        (lambda x: x + torch.ones(x.shape[0]), "host tensor mixed in"),
        (lambda x: torch.nonzero(x), "data-dependent shape"),
    ],
)
def test_the_check_finds_each_thing_a_capture_refuses(body, why) -> None:
    x = _on_meta()
    assert capture_problems(lambda: body(x)), why


def test_the_check_passes_device_work_and_host_scalars() -> None:
    x = _on_meta()
    assert (
        capture_problems(lambda: torch.tanh(x * 3.0 + torch.tensor(0.5)) + torch.arange(8, device=x.device))
        == []
    )


def test_a_per_device_cache_filled_by_the_warm_up_is_not_a_refusal() -> None:
    cache: dict[torch.device, torch.Tensor] = {}

    def body() -> torch.Tensor:
        x = _on_meta()
        if x.device not in cache:  # built from host data once, as the AP-BWE resampler's kernel is
            cache[x.device] = torch.ones(8).to(x.device)
        return x * cache[x.device]

    assert capture_problems(body) == []
