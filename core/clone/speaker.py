"""The speaker branch of BiCodec's encode half
(docs/reference/spark-tts.md#bicodec-encode-reference-audio-to-voice-tokens): magnitude mel -> ECAPA-TDNN frame
features -> perceiver resampler (32 latents) -> FSQ -> 32 global ids in 0..4095.

The module tree mirrors `speaker_encoder.*` of the released `BiCodec/model.safetensors`, so `state_dict()` names
are the file's own. Widths are read from the tensors, not assumed: upstream hard-codes ECAPA's 512 channels and its
1536-wide latent (not config keys), and smaller checkpoints exist. The ECAPA x-vector head (`pool`, `bn`, `linear`)
is never used to make tokens and is not built; `project` and `quantizer.project_out` belong to the decode half.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.nn import empty_parameter

ECAPA_PREFIX = "speaker_encoder.speaker_encoder."
PERCEIVER_PREFIX = "speaker_encoder.perceiver_sampler."
# Upstream's fixed values (not in any config): Res2 split, dilations of layers 2-4, attention heads x width.
RES2_SCALE = 8
RES2_DILATIONS = (2, 3, 4)
PERCEIVER_HEAD_DIM = 64
# Tensors of the speaker encoder that token extraction never reads (x-vector head, decode-side projections).
UNUSED_PREFIXES = (
    ECAPA_PREFIX + "pool.",
    ECAPA_PREFIX + "bn.",
    ECAPA_PREFIX + "linear.",
    "speaker_encoder.project.",
    "speaker_encoder.quantizer.project_out.",
)


class BatchNorm(nn.Module):
    """Eval-mode BatchNorm1d over channels with the stored running statistics (`num_batches_tracked` ignored)."""

    running_mean: Tensor
    running_var: Tensor

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = empty_parameter(channels)
        self.bias = empty_parameter(channels)
        self.register_buffer("running_mean", torch.empty(channels))
        self.register_buffer("running_var", torch.empty(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


class ConvReluBN(nn.Module):
    """ECAPA's unit: Conv1d -> ReLU -> BatchNorm (in that order)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            padding=dilation * (kernel_size - 1) // 2,
            dilation=dilation,
        )
        self.bn = BatchNorm(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.bn(F.relu(self.conv(x)))
        return out


class Res2Conv(nn.Module):
    """Split channels into `scale` groups; group i (i >= 1) adds the previous group's output before its conv; the
    last group passes through unchanged. Parameters `convs.N` / `bns.N` as stored."""

    def __init__(self, channels: int, dilation: int, scale: int = RES2_SCALE) -> None:
        super().__init__()
        self.width = channels // scale
        self.convs = nn.ModuleList(
            nn.Conv1d(self.width, self.width, 3, padding=dilation, dilation=dilation)
            for _ in range(scale - 1)
        )
        self.bns = nn.ModuleList(BatchNorm(self.width) for _ in range(scale - 1))

    def forward(self, x: Tensor) -> Tensor:
        splits = torch.split(x, self.width, dim=1)
        outputs: list[Tensor] = []
        current = splits[0]
        for index, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            if index:
                current = current + splits[index]
            current = bn(F.relu(conv(current)))
            outputs.append(current)
        outputs.append(splits[-1])
        return torch.cat(outputs, dim=1)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, bottleneck: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(channels, bottleneck)
        self.linear2 = nn.Linear(bottleneck, channels)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(dim=2)))))
        return x * gate.unsqueeze(2)


class SERes2Block(nn.Module):
    """`layerN.se_res2block.{0,1,2,3}` with a residual around the whole block."""

    def __init__(self, channels: int, dilation: int, se_bottleneck: int) -> None:
        super().__init__()
        self.se_res2block = nn.Sequential(
            ConvReluBN(channels, channels),
            Res2Conv(channels, dilation),
            ConvReluBN(channels, channels),
            SqueezeExcite(channels, se_bottleneck),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = x + self.se_res2block(x)
        return out


@dataclass(frozen=True)
class SpeakerWidths:
    """The speaker encoder's widths, read from a checkpoint's tensor shapes."""

    mel_bins: int
    ecapa_channels: int
    ecapa_latent: int
    se_bottleneck: int
    latent_dim: int
    token_num: int
    perceiver_inner: int
    feedforward_inner: int
    depth: int
    fsq_dims: int

    @classmethod
    def from_shapes(cls, shapes: Mapping[str, Sequence[int]]) -> SpeakerWidths:
        def shape(name: str) -> Sequence[int]:
            try:
                return shapes[name]
            except KeyError:
                raise KeyError(f"speaker encoder tensor {name} missing") from None

        layer1 = shape(ECAPA_PREFIX + "layer1.conv.weight")
        latents = shape(PERCEIVER_PREFIX + "latents")
        depth = 0
        while PERCEIVER_PREFIX + f"layers.{depth}.0.to_q.weight" in shapes:
            depth += 1
        return cls(
            mel_bins=int(layer1[1]),
            ecapa_channels=int(layer1[0]),
            ecapa_latent=int(shape(ECAPA_PREFIX + "conv.weight")[0]),
            se_bottleneck=int(shape(ECAPA_PREFIX + "layer2.se_res2block.3.linear1.weight")[0]),
            latent_dim=int(latents[1]),
            token_num=int(latents[0]),
            perceiver_inner=int(shape(PERCEIVER_PREFIX + "layers.0.0.to_q.weight")[0]),
            feedforward_inner=int(shape(PERCEIVER_PREFIX + "layers.0.1.2.weight")[1]),
            depth=depth,
            fsq_dims=int(shape("speaker_encoder.quantizer.project_in.weight")[0]),
        )


class EcapaTdnn(nn.Module):
    """ECAPA-TDNN up to its frame-level latent: mel [B, F, T] -> ReLU(conv(cat(layer2..4))) [B, E, T]."""

    def __init__(self, w: SpeakerWidths) -> None:
        super().__init__()
        c = w.ecapa_channels
        self.layer1 = ConvReluBN(w.mel_bins, c, kernel_size=5)
        self.layer2, self.layer3, self.layer4 = (SERes2Block(c, d, w.se_bottleneck) for d in RES2_DILATIONS)
        self.conv = nn.Conv1d(3 * c, w.ecapa_latent, kernel_size=1)

    def forward(self, mel: Tensor) -> Tensor:
        out2 = self.layer2(self.layer1(mel))
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        return F.relu(self.conv(torch.cat([out2, out3, out4], dim=1)))


class CrossAttention(nn.Module):
    """Latents attend over [latents; context] (no mask, no bias); `to_kv` holds k then v."""

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        if inner % PERCEIVER_HEAD_DIM:
            raise ValueError(f"perceiver attention width {inner} is not a multiple of {PERCEIVER_HEAD_DIM}")
        self.heads = inner // PERCEIVER_HEAD_DIM
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, latents: Tensor, context: Tensor) -> Tensor:
        batch, queries, _ = latents.shape
        keys_in = torch.cat([latents, context], dim=1)
        k, v = self.to_kv(keys_in).chunk(2, dim=-1)

        def heads(t: Tensor) -> Tensor:  # [B, N, H * D] -> [B, H, N, D]
            return t.reshape(batch, t.shape[1], self.heads, PERCEIVER_HEAD_DIM).transpose(1, 2)

        q, k, v = heads(self.to_q(latents)), heads(k), heads(v)
        weights = (q @ k.transpose(-1, -2) * PERCEIVER_HEAD_DIM**-0.5).softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(batch, queries, -1)
        attended: Tensor = self.to_out(out)
        return attended


class GegluFeedForward(nn.Sequential):
    """`layers.N.1`: Linear(dim, 2 * inner) -> GEGLU (first half value, second half gate) -> Linear(inner, dim).
    Index 1 has no parameters, so the stored names are `.0.` and `.2.`."""

    class Geglu(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            value, gate = x.chunk(2, dim=-1)
            return F.gelu(gate) * value

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__(nn.Linear(dim, 2 * inner), self.Geglu(), nn.Linear(inner, dim))


class RMSNorm(nn.Module):
    """normalize(x) * sqrt(dim) * gamma."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = math.sqrt(dim)
        self.gamma = empty_parameter(dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=-1) * self.scale * self.gamma


class PerceiverResampler(nn.Module):
    """ECAPA frames [B, T, E] -> `token_num` latents [B, N, latent_dim]."""

    def __init__(self, w: SpeakerWidths) -> None:
        super().__init__()
        self.proj_context = nn.Linear(w.ecapa_latent, w.latent_dim)
        self.latents = empty_parameter(w.token_num, w.latent_dim)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    CrossAttention(w.latent_dim, w.perceiver_inner),
                    GegluFeedForward(w.latent_dim, w.feedforward_inner),
                ]
            )
            for _ in range(w.depth)
        )
        self.norm = RMSNorm(w.latent_dim)

    def forward(self, frames: Tensor) -> Tensor:
        context = self.proj_context(frames)
        latents = self.latents.unsqueeze(0).expand(frames.shape[0], -1, -1)
        # Each layer is an (attention, feedforward) ModuleList; torch types a ModuleList's items as plain Modules.
        for attention, feedforward in cast(Iterable[nn.ModuleList], self.layers):
            latents = attention(latents, context) + latents
            latents = feedforward(latents) + latents
        normed: Tensor = self.norm(latents)
        return normed


class FsqTokenizer(nn.Module):
    """`speaker_encoder.quantizer` (encode half, one quantizer): project_in -> bound -> round -> index.

    bound(z) = tanh(z + atanh(offset / h)) * h - offset with h = (L - 1)(1 + 1e-3) / 2 and offset 0.5 for even
    L; the rounded level plus L // 2 is the digit, and index = sum(digit_k * prod(L_0..L_{k-1}))."""

    BOUND_EPS = 1e-3
    half_level: Tensor
    offset: Tensor
    half_width: Tensor
    basis: Tensor

    def __init__(self, latent_dim: int, levels: Sequence[int]) -> None:
        super().__init__()
        self.levels = tuple(int(v) for v in levels)
        self.project_in = nn.Linear(latent_dim, len(self.levels))
        # Constants, not checkpoint tensors: built on the CPU even when the tree is built on the meta device.
        level_t = torch.tensor(self.levels, dtype=torch.int32, device="cpu")
        half_level = (level_t - 1) * (1 + self.BOUND_EPS) / 2
        offset = torch.where(level_t % 2 == 0, 0.5, 0.0)
        basis = [math.prod(self.levels[:k]) for k in range(len(self.levels))]
        self.register_buffer("half_level", half_level, persistent=False)
        self.register_buffer("offset", offset, persistent=False)
        self.register_buffer("half_width", level_t // 2, persistent=False)
        self.register_buffer("basis", torch.tensor(basis, dtype=torch.int64, device="cpu"), persistent=False)

    def bounded(self, latents: Tensor) -> Tensor:
        z: Tensor = self.project_in(latents)
        shift = (self.offset / self.half_level).atanh()
        return (z + shift).tanh() * self.half_level - self.offset

    def forward(self, latents: Tensor) -> Tensor:  # [B, N, latent] -> [B, N] ids
        digits = self.bounded(latents).round().long() + self.half_width.long()
        return (digits * self.basis).sum(dim=-1)


class SpeakerTokenizer(nn.Module):
    """mel [B, F, T] -> 32 global ids [B, N]. Submodule names follow `speaker_encoder.*` in the checkpoint."""

    def __init__(self, widths: SpeakerWidths, fsq_levels: Sequence[int]) -> None:
        super().__init__()
        if len(fsq_levels) != widths.fsq_dims:
            raise ValueError(
                f"config fsq_levels has {len(fsq_levels)} levels but project_in makes {widths.fsq_dims}"
            )
        self.widths = widths
        self.speaker_encoder = EcapaTdnn(widths)
        self.perceiver_sampler = PerceiverResampler(widths)
        self.quantizer = FsqTokenizer(widths.latent_dim, fsq_levels)

    def latents(self, mel: Tensor) -> Tensor:
        latents: Tensor = self.perceiver_sampler(self.speaker_encoder(mel).transpose(1, 2))
        return latents

    def forward(self, mel: Tensor) -> Tensor:
        ids: Tensor = self.quantizer(self.latents(mel))
        return ids
