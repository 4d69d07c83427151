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
from core.nn import AdaLayerNorm, ConvNeXtBlock, Snake1d, UnitRatioSampling, VocosBackbone, WNConv1d

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
            assert module.bias is not None, f"{p}: every Linear and Conv1d of the tree has a bias"
            out[p + "bias"] = self.normal(module.bias.shape, 0.01)
        elif isinstance(module, nn.Embedding):
            out[p + "weight"] = self.normal(module.weight.shape)
        elif isinstance(module, ConvNeXtBlock):
            out[p + "gamma"] = self.uniform(module.gamma.shape, 0.5, 1.5) / num_layers


def build_random_state_dict(
    config: Mapping[str, Any], seed: int, speaker_widths: Mapping[str, int] | None = None
) -> dict[str, Tensor]:
    """Random tensors for the whole released tree in its naming (weight_g / weight_v): the decode half and the
    encode half (so the demo can clone voices). Deterministic for a seed. `speaker_widths`: ECAPA / perceiver
    widths (DEMO_SPEAKER_WIDTHS by default; RELEASED_SPEAKER_WIDTHS for the released size)."""
    cfg = unwrap_config(config)
    with torch.device("meta"):
        model = BiCodecDecoder(cfg)
    fill = _RandomFill(seed)
    out: dict[str, Tensor] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, ConvNeXtBlock):
            backbone = model.get_submodule(name.rsplit(".convnext.", 1)[0])
            assert isinstance(backbone, VocosBackbone), f"{name} sits outside a VocosBackbone"
            n_layers = len(backbone.convnext)
            fill.module(prefix, module, out, num_layers=n_layers)
        elif not isinstance(module, AdaLayerNorm) and _owner_is_adanorm(model, name):
            continue  # AdaLayerNorm fills its own Linear children
        else:
            fill.module(prefix, module, out)
    expected = {n: tuple(t.shape) for n, t in model.state_dict().items()}
    if {n: tuple(t.shape) for n, t in out.items()} != expected:
        raise RuntimeError("random fill does not cover the decode tree exactly")  # a new module type
    for name, tensor in _encoder_side_tensors(cfg, fill, speaker_widths or DEMO_SPEAKER_WIDTHS).items():
        out.setdefault(name, tensor)  # the semantic codebook is shared by both halves: keep the decode tree's
    return out


def _owner_is_adanorm(model: nn.Module, name: str) -> bool:
    if "." not in name:
        return False
    return isinstance(model.get_submodule(name.rsplit(".", 1)[0]), AdaLayerNorm)


# ECAPA and perceiver widths are not config keys (upstream hard-codes 512 / 1536 / 128 / 8 heads); the loader reads
# them from the tensor shapes, so the demo picks small ones: 32 channels (Res2 width 4), latent 96, one head of 64.
DEMO_SPEAKER_WIDTHS = {"ecapa_channels": 32, "ecapa_latent": 96, "se_bottleneck": 16, "perceiver_inner": 64}
RELEASED_SPEAKER_WIDTHS = {
    "ecapa_channels": 512,
    "ecapa_latent": 1536,
    "se_bottleneck": 128,
    "perceiver_inner": 512,
}


def _encoder_side_tensors(
    cfg: Mapping[str, Any], fill: _RandomFill, w: Mapping[str, int]
) -> dict[str, Tensor]:
    """Every encode-side tensor a released file holds, so the demo can clone voices: the speaker encoder
    (ECAPA-TDNN with BatchNorm statistics and its x-vector head, perceiver, FSQ project_in), the feature encoder,
    the quantizer's in_project and code statistics, and two postnet tensors (training only)."""
    from core.clone.semantic import SemanticTokenizer
    from core.clone.speaker import BatchNorm, GegluFeedForward, RMSNorm, SpeakerTokenizer, SpeakerWidths

    spk = cfg["speaker_encoder"]
    latent = int(spk["latent_dim"])
    widths = SpeakerWidths(
        mel_bins=int(cfg["mel_params"]["num_mels"]),
        ecapa_channels=w["ecapa_channels"],
        ecapa_latent=w["ecapa_latent"],
        se_bottleneck=w["se_bottleneck"],
        latent_dim=latent,
        token_num=int(spk["token_num"]),
        perceiver_inner=w["perceiver_inner"],
        feedforward_inner=int(latent * 4 * 2 / 3),
        depth=2,
        fsq_dims=len(spk["fsq_levels"]),
    )
    with torch.device("meta"):
        trees = {
            "speaker_encoder.": SpeakerTokenizer(widths, spk["fsq_levels"]),
            "": SemanticTokenizer(cfg["encoder"], cfg["quantizer"]),
        }
    out: dict[str, Tensor] = {}
    for root, tree in trees.items():
        for name, module in tree.named_modules():
            prefix = f"{root}{name}." if name else root
            if isinstance(module, BatchNorm):
                channels = module.weight.shape[0]
                out[prefix + "weight"] = fill.uniform((channels,), 0.8, 1.2)
                out[prefix + "bias"] = fill.normal((channels,), 0.05)
                out[prefix + "running_mean"] = fill.normal((channels,), 0.1, 0.3)
                out[prefix + "running_var"] = fill.uniform((channels,), 0.05, 0.3)
                out[prefix + "num_batches_tracked"] = torch.tensor(1000, dtype=torch.int64)
            elif isinstance(module, RMSNorm):
                out[prefix + "gamma"] = fill.uniform(module.gamma.shape, 0.8, 1.2)
            elif isinstance(module, nn.Linear) and module.bias is None:
                out[prefix + "weight"] = fill.normal(
                    module.weight.shape, 1.0 / math.sqrt(module.weight.shape[1])
                )
            elif isinstance(module, GegluFeedForward | nn.ModuleList | nn.Sequential) or _owner_is_wnconv(
                tree, name
            ):
                continue
            else:
                fill.module(prefix, module, out, num_layers=2)
        if root:
            out[root + "perceiver_sampler.latents"] = fill.normal((widths.token_num, latent), 1.0)
    expected = {
        f"speaker_encoder.{n}": tuple(t.shape) for n, t in trees["speaker_encoder."].state_dict().items()
    }
    expected.update({n: tuple(t.shape) for n, t in trees[""].state_dict().items()})
    covered = {n: tuple(t.shape) for n, t in out.items() if not n.endswith("num_batches_tracked")}
    if covered != expected:
        raise RuntimeError(
            f"random fill does not cover the encode tree: {sorted(set(expected) ^ set(covered))[:5]}"
        )
    # Also in a released file, never read by encode or decode.
    ecapa = "speaker_encoder.speaker_encoder."
    pooled = 2 * widths.ecapa_latent
    out[ecapa + "pool.linear1.weight"] = fill.normal((w["se_bottleneck"], 3 * widths.ecapa_latent, 1), 0.05)
    out[ecapa + "pool.linear1.bias"] = fill.normal((w["se_bottleneck"],), 0.01)
    out[ecapa + "pool.linear2.weight"] = fill.normal((widths.ecapa_latent, w["se_bottleneck"], 1), 0.05)
    out[ecapa + "pool.linear2.bias"] = fill.normal((widths.ecapa_latent,), 0.01)
    out[ecapa + "bn.weight"] = fill.uniform((pooled,), 0.8, 1.2)
    out[ecapa + "bn.bias"] = fill.normal((pooled,), 0.05)
    out[ecapa + "bn.running_mean"] = fill.normal((pooled,), 0.1)
    out[ecapa + "bn.running_var"] = fill.uniform((pooled,), 0.5, 1.5)
    out[ecapa + "bn.num_batches_tracked"] = torch.tensor(1000, dtype=torch.int64)
    out[ecapa + "linear.weight"] = fill.normal((int(spk["out_dim"]), pooled), 0.05)
    out[ecapa + "linear.bias"] = fill.normal((int(spk["out_dim"]),), 0.01)
    out["quantizer.cluster_size"] = fill.uniform((int(cfg["quantizer"]["codebook_size"]),), 0.0, 10.0)
    if "postnet" in cfg:
        out.update(_postnet_tensors(cfg["postnet"], fill))
    return out


def _postnet_tensors(post: Mapping[str, Any], fill: _RandomFill) -> dict[str, Tensor]:
    """`postnet.*`: the prenet's structure without conditioning; it predicts wav2vec2 features for a training loss
    only, so nothing here runs it, but a released file holds it."""
    dim, inter = int(post["vocos_dim"]), int(post["vocos_intermediate_dim"])
    with torch.device("meta"):
        tree = nn.Module()
        tree.linear_pre = nn.Linear(int(post["input_channels"]), dim)
        tree.downsample = nn.ModuleList(
            nn.ModuleList([UnitRatioSampling(), VocosBackbone(dim, inter, 2, None)])
            for _ in post.get("sample_ratios", [1, 1])
        )
        tree.vocos_backbone = VocosBackbone(dim, inter, int(post["vocos_num_layers"]), None)
        tree.linear = nn.Linear(dim, int(post["out_channels"]))
    out: dict[str, Tensor] = {}
    for name, module in tree.named_modules():
        fill.module(
            f"postnet.{name}." if name else "postnet.", module, out, num_layers=int(post["vocos_num_layers"])
        )
    return out


def _owner_is_wnconv(model: nn.Module, name: str) -> bool:
    """Weight-normed convs fill their own parameters."""
    return "." in name and isinstance(model.get_submodule(name.rsplit(".", 1)[0]), WNConv1d)


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
