"""Random-weight BiCodec checkpoints for the demo model, tests and benchmarks: the released file layout (every
tensor name and shape, the encoder side included) at small widths, filled deterministically from a seed."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save_file
from torch import Tensor, nn

from core.bicodec import CONFIG_FILE, CONFIG_TOP_KEY, WEIGHTS_FILE, BiCodecDecoder, unwrap_config
from core.nn import AdaLayerNorm, ConvNeXtBlock, Snake1d, WNConv1d

# Same structure as the released config; widths small enough that the demo decodes fast on a CPU.
DEMO_CONFIG: dict[str, Any] = {
    "mel_params": {
        "sample_rate": 16000,
        "n_fft": 1024,
        "win_length": 640,
        "hop_length": 320,
        "mel_fmin": 10,
        "mel_fmax": None,
        "num_mels": 128,
    },
    "encoder": {
        "input_channels": 64,
        "vocos_dim": 32,
        "vocos_intermediate_dim": 64,
        "vocos_num_layers": 2,
        "out_channels": 48,
        "sample_ratios": [1, 1],
    },
    "decoder": {"input_channel": 48, "channels": 64, "rates": [8, 5, 4, 2], "kernel_sizes": [16, 11, 8, 4]},
    "quantizer": {
        "input_dim": 48,
        "codebook_size": 8192,
        "codebook_dim": 8,
        "commitment": 0.25,
        "codebook_loss_weight": 2.0,
        "use_l2_normlize": True,
        "threshold_ema_dead_code": 0.2,
    },
    "speaker_encoder": {
        "input_dim": 128,
        "out_dim": 48,
        "latent_dim": 16,
        "token_num": 32,
        "fsq_levels": [4, 4, 4, 4, 4, 4],
        "fsq_num_quantizers": 1,
    },
    "prenet": {
        "input_channels": 48,
        "vocos_dim": 32,
        "vocos_intermediate_dim": 64,
        "vocos_num_layers": 3,
        "out_channels": 48,
        "condition_dim": 48,
        "sample_ratios": [1, 1],
        "use_tanh_at_final": False,
    },
    "postnet": {
        "input_channels": 48,
        "vocos_dim": 32,
        "vocos_intermediate_dim": 64,
        "vocos_num_layers": 2,
        "out_channels": 48,
        "use_tanh_at_final": False,
    },
}


class _RandomFill:
    """Deterministic values per module type, scaled so activations stay O(1) and the output is audible noise."""

    def __init__(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)

    def normal(self, shape: Iterable[int], std: float = 1.0, mean: float = 0.0) -> Tensor:
        return torch.randn(tuple(shape), generator=self.gen) * std + mean

    def uniform(self, shape: Iterable[int], low: float, high: float) -> Tensor:
        return torch.rand(tuple(shape), generator=self.gen) * (high - low) + low

    def module(self, prefix: str, module: nn.Module, out: dict[str, Tensor], *, num_layers: int = 1) -> None:
        p = prefix
        if isinstance(module, WNConv1d):
            v = self.normal(module.weight_v.shape)
            gain = 1.0  # g = per-row norm of W; 1 keeps a plain conv's output variance near its input's
            if module.transposed:  # g is per input channel here: rescale by fan-out
                in_ch, out_ch, _ = v.shape
                gain = math.sqrt(module.stride * out_ch / in_ch)
            elif v.shape[0] == 1:  # the waveform conv: keep tanh out of saturation (output std ~0.15)
                gain = 0.06
            out[p + "weight_v"] = v
            out[p + "weight_g"] = gain * self.uniform(module.weight_g.shape, 0.5, 1.0)
            out[p + "bias"] = self.normal(module.bias.shape, 0.01)
        elif isinstance(module, Snake1d):
            out[p + "alpha"] = self.uniform(module.alpha.shape, 0.5, 1.5)
        elif isinstance(module, nn.LayerNorm):
            out[p + "weight"] = self.normal(module.weight.shape, 0.1, 1.0)
            out[p + "bias"] = self.normal(module.bias.shape, 0.1)
        elif isinstance(module, AdaLayerNorm):
            fan_in = module.scale.in_features
            out[p + "scale.weight"] = self.normal(module.scale.weight.shape, 0.1 / math.sqrt(fan_in))
            out[p + "scale.bias"] = self.normal(module.scale.bias.shape, 0.1, 1.0)
            out[p + "shift.weight"] = self.normal(module.shift.weight.shape, 0.1 / math.sqrt(fan_in))
            out[p + "shift.bias"] = self.normal(module.shift.bias.shape, 0.1)
        elif isinstance(module, nn.Linear | nn.Conv1d):
            w = module.weight
            fan_in = w.shape[1] * (w.shape[2] if w.dim() == 3 else 1)
            out[p + "weight"] = self.normal(w.shape, 1.0 / math.sqrt(fan_in))
            out[p + "bias"] = self.normal(module.bias.shape, 0.01)
        elif isinstance(module, nn.Embedding):
            out[p + "weight"] = self.normal(module.weight.shape)
        elif isinstance(module, ConvNeXtBlock):
            out[p + "gamma"] = self.uniform(module.gamma.shape, 0.5, 1.5) / num_layers


def build_random_state_dict(config: Mapping[str, Any], seed: int) -> dict[str, Tensor]:
    """Random decode tensors in the released naming (weight_g / weight_v), plus a few encoder-side tensors
    a real file also carries. Deterministic for a seed."""
    cfg = unwrap_config(config)
    with torch.device("meta"):
        model = BiCodecDecoder(cfg)
    fill = _RandomFill(seed)
    out: dict[str, Tensor] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, ConvNeXtBlock):
            n_layers = len(model.get_submodule(name.rsplit(".convnext.", 1)[0]).convnext)
            fill.module(prefix, module, out, num_layers=n_layers)
        elif not isinstance(module, AdaLayerNorm) and _owner_is_adanorm(model, name):
            continue  # AdaLayerNorm fills its own Linear children
        else:
            fill.module(prefix, module, out)
    expected = {n: tuple(t.shape) for n, t in model.state_dict().items()}
    if {n: tuple(t.shape) for n, t in out.items()} != expected:
        raise RuntimeError("random fill does not cover the decode tree exactly")  # a new module type
    out.update(_encoder_side_tensors(cfg, fill))
    return out


def _owner_is_adanorm(model: nn.Module, name: str) -> bool:
    if "." not in name:
        return False
    return isinstance(model.get_submodule(name.rsplit(".", 1)[0]), AdaLayerNorm)


def _encoder_side_tensors(cfg: Mapping[str, Any], fill: _RandomFill) -> dict[str, Tensor]:
    """A few tensors a released file holds but decoding skips, so loaders exercise the skip list."""
    q, spk = cfg["quantizer"], cfg["speaker_encoder"]
    out = {
        "quantizer.in_project.weight_g": fill.uniform((q["codebook_dim"], 1, 1), 0.5, 1.0),
        "quantizer.in_project.weight_v": fill.normal((q["codebook_dim"], q["input_dim"], 1)),
        "quantizer.in_project.bias": fill.normal((q["codebook_dim"],), 0.01),
        "quantizer.cluster_size": fill.uniform((q["codebook_size"],), 0.0, 10.0),
        "speaker_encoder.quantizer.project_in.weight": fill.normal(
            (len(spk["fsq_levels"]), spk["latent_dim"]), 0.1
        ),
        "speaker_encoder.quantizer.project_in.bias": fill.normal((len(spk["fsq_levels"]),), 0.01),
    }
    if "encoder" in cfg:
        enc = cfg["encoder"]
        out["encoder.project.weight"] = fill.normal((enc["out_channels"], enc["vocos_dim"]), 0.1)
        out["encoder.project.bias"] = fill.normal((enc["out_channels"],), 0.01)
    if "postnet" in cfg:
        post = cfg["postnet"]
        out["postnet.linear.weight"] = fill.normal((post["out_channels"], post["vocos_dim"]), 0.1)
        out["postnet.linear.bias"] = fill.normal((post["out_channels"],), 0.01)
    return out


def write_random_checkpoint(out_dir: Path, config: Mapping[str, Any], seed: int) -> None:
    """Write `config.yaml` (top key audio_tokenizer) + `model.safetensors` with random weights to `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = unwrap_config(config)
    tensors = {name: t.contiguous() for name, t in build_random_state_dict(cfg, seed).items()}
    # Write then rename, so a reader never sees half a file.
    tmp_weights = out_dir / f".{WEIGHTS_FILE}.tmp{os.getpid()}"
    save_file(tensors, str(tmp_weights), metadata={"format": "pt"})
    os.replace(tmp_weights, out_dir / WEIGHTS_FILE)
    tmp_config = out_dir / f".{CONFIG_FILE}.tmp{os.getpid()}"
    tmp_config.write_text(yaml.safe_dump({CONFIG_TOP_KEY: cfg}, sort_keys=False), encoding="utf-8")
    os.replace(tmp_config, out_dir / CONFIG_FILE)
