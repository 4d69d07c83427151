"""BiCodec decode path: semantic ids + 32 global ids -> 16 kHz waveform (docs/reference/spark-tts.md#bicodec-decode).

Only the detokenize half of the codec is built. The module tree mirrors the released checkpoint, so
`state_dict()` names and shapes are the file's own (319 tensors at the released config); weight-normed
convolutions hold `weight_g` / `weight_v` until `fold_weight_norm()` replaces them with one plain weight.
Everything runs in float32: the codec is not trained for reduced precision.

Longer than 500 lines because the module tree is the checkpoint's file format: the modules, their config and the
tensor accounting change together (reusable blocks live in core/nn.py, random weights in core/demo/).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
import yaml
from safetensors import safe_open
from torch import Tensor, nn

from core.nn import (
    ResidualUnit,
    Snake1d,
    UnitRatioSampling,
    VocosBackbone,
    WNConv1d,
    fold_weight_norms,
    length_mask,
)

if TYPE_CHECKING:
    import numpy as np

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
CONFIG_TOP_KEY = "audio_tokenizer"

# Checkpoint tensors that decoding never reads. Every name in the file must be either needed by the decode
# tree or matched here; anything else means the file is not a BiCodec checkpoint we understand.
SKIP_PREFIXES: tuple[str, ...] = (
    "encoder.",  # wav2vec2 features -> latent (encode side)
    "postnet.",  # predicts wav2vec2 features for a training loss only
    "speaker_encoder.speaker_encoder.",  # ECAPA-TDNN over the reference mel
    "speaker_encoder.perceiver_sampler.",  # pools ECAPA features into 32 latents
    "speaker_encoder.quantizer.project_in.",  # FSQ input projection (encode side)
    "quantizer.in_project.",  # latent -> codebook space (encode side)
    "quantizer.cluster_size",  # training statistic of code usage
    "mel_transformer.",  # torchaudio buffers; not in the released file but present if upstream re-saves it
)


# The released `BiCodec/config.yaml` (docs/reference/spark-tts.md#checkpoint-layout; fixtures/bicodec_manifest.json).
# Fine-tunes are often copied without it: when the file is missing and the weights' shapes match this config, it
# is used.
RELEASED_CONFIG: dict[str, Any] = {
    "audio_tokenizer": {
        "mel_params": {"sample_rate": 16000, "n_fft": 1024, "win_length": 640, "hop_length": 320,
                       "mel_fmin": 10, "mel_fmax": None, "num_mels": 128},
        "encoder": {"input_channels": 1024, "vocos_dim": 384, "vocos_intermediate_dim": 2048,
                    "vocos_num_layers": 12, "out_channels": 1024, "sample_ratios": [1, 1]},
        "decoder": {"input_channel": 1024, "channels": 1536, "rates": [8, 5, 4, 2], "kernel_sizes": [16, 11, 8, 4]},
        "quantizer": {"input_dim": 1024, "codebook_size": 8192, "codebook_dim": 8, "commitment": 0.25,
                      "codebook_loss_weight": 2.0, "use_l2_normlize": True, "threshold_ema_dead_code": 0.2},
        "speaker_encoder": {"input_dim": 128, "out_dim": 1024, "latent_dim": 128, "token_num": 32,
                            "fsq_levels": [4, 4, 4, 4, 4, 4], "fsq_num_quantizers": 1},
        "prenet": {"input_channels": 1024, "vocos_dim": 384, "vocos_intermediate_dim": 2048, "vocos_num_layers": 12,
                   "out_channels": 1024, "condition_dim": 1024, "sample_ratios": [1, 1], "use_tanh_at_final": False},
        "postnet": {"input_channels": 1024, "vocos_dim": 384, "vocos_intermediate_dim": 2048, "vocos_num_layers": 6,
                    "out_channels": 1024, "use_tanh_at_final": False},
    }
}  # fmt: skip


class BiCodecLoadError(ValueError):
    """A BiCodec directory or state dict does not hold what the decoder needs."""


# --------------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class BiCodecDecodeConfig:
    """The decode-relevant part of the released `audio_tokenizer` config, validated."""

    latent_dim: int  # quantizer.input_dim: width of z_q and of the wave generator input
    semantic_codebook_size: int
    semantic_codebook_dim: int
    fsq_levels: tuple[int, ...]
    speaker_latent_dim: int
    speaker_token_num: int
    d_vector_dim: int
    prenet_dim: int
    prenet_intermediate_dim: int
    prenet_num_layers: int
    prenet_use_tanh: bool
    prenet_sample_ratios: tuple[int, ...]
    wave_channels: int
    wave_rates: tuple[int, ...]
    wave_kernel_sizes: tuple[int, ...]

    @property
    def global_codebook_size(self) -> int:
        return math.prod(self.fsq_levels)

    @property
    def hop_length(self) -> int:
        return math.prod(self.wave_rates)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> BiCodecDecodeConfig:
        cfg = unwrap_config(config)
        try:
            quantizer, speaker = cfg["quantizer"], cfg["speaker_encoder"]
            prenet, decoder = cfg["prenet"], cfg["decoder"]
            out = cls(
                latent_dim=int(quantizer["input_dim"]),
                semantic_codebook_size=int(quantizer["codebook_size"]),
                semantic_codebook_dim=int(quantizer["codebook_dim"]),
                fsq_levels=tuple(int(v) for v in speaker["fsq_levels"]),
                speaker_latent_dim=int(speaker["latent_dim"]),
                speaker_token_num=int(speaker["token_num"]),
                d_vector_dim=int(speaker["out_dim"]),
                prenet_dim=int(prenet["vocos_dim"]),
                prenet_intermediate_dim=int(prenet["vocos_intermediate_dim"]),
                prenet_num_layers=int(prenet["vocos_num_layers"]),
                prenet_use_tanh=bool(prenet.get("use_tanh_at_final", False)),
                prenet_sample_ratios=tuple(int(v) for v in prenet.get("sample_ratios", [1, 1])),
                wave_channels=int(decoder["channels"]),
                wave_rates=tuple(int(v) for v in decoder["rates"]),
                wave_kernel_sizes=tuple(int(v) for v in decoder["kernel_sizes"]),
            )
            checks = {
                "prenet.input_channels == quantizer.input_dim": prenet["input_channels"] == out.latent_dim,
                "prenet.out_channels == decoder.input_channel": prenet["out_channels"]
                == decoder["input_channel"],
                "prenet.out_channels == speaker_encoder.out_dim (d is added to the prenet output)": (
                    prenet["out_channels"] == out.d_vector_dim
                ),
                "prenet.condition_dim == speaker_encoder.out_dim": prenet["condition_dim"]
                == out.d_vector_dim,
                "speaker_encoder.fsq_num_quantizers == 1": int(speaker.get("fsq_num_quantizers", 1)) == 1,
                "len(decoder.rates) == len(decoder.kernel_sizes)": len(out.wave_rates)
                == len(out.wave_kernel_sizes),
                "prenet.sample_ratios all 1 (the released value; other ratios change the frame rate)": all(
                    r == 1 for r in out.prenet_sample_ratios
                ),
            }
        except (KeyError, TypeError) as exc:
            raise BiCodecLoadError(f"BiCodec config lacks a decode key: {exc!r}") from exc
        broken = [name for name, ok in checks.items() if not ok]
        if broken:
            raise BiCodecLoadError(f"BiCodec config not supported by the decoder: {', '.join(broken)}")
        return out


def unwrap_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Accept either the file layout ({audio_tokenizer: {...}}) or the inner mapping."""
    inner = config.get(CONFIG_TOP_KEY, config)
    if not isinstance(inner, Mapping):
        raise BiCodecLoadError(f"'{CONFIG_TOP_KEY}' must be a mapping, found {type(inner).__name__}")
    return dict(inner)


# --------------------------------------------------------------------------------------------------------
# BiCodec's own modules (generic blocks: core/nn.py)


class FeaturePrenet(nn.Module):
    """`prenet`: z_q [B, latent, T] + d [B, D] -> [B, latent, T] (no time mixing beyond the convs)."""

    def __init__(self, cfg: BiCodecDecodeConfig) -> None:
        super().__init__()
        dim, inter = cfg.prenet_dim, cfg.prenet_intermediate_dim
        self.linear_pre = nn.Linear(cfg.latent_dim, dim)
        # Named `downsample` in the checkpoint; each stage is (SamplingBlock, 2-block plain backbone).
        self.downsample = nn.ModuleList(
            nn.ModuleList([UnitRatioSampling(), VocosBackbone(dim, inter, 2, None)])
            for _ in cfg.prenet_sample_ratios
        )
        self.vocos_backbone = VocosBackbone(dim, inter, cfg.prenet_num_layers, cfg.d_vector_dim)
        self.linear = nn.Linear(dim, cfg.latent_dim)
        self.use_tanh = cfg.prenet_use_tanh

    def forward(self, z_q: Tensor, d_vector: Tensor, mask: Tensor | None = None) -> Tensor:
        x = self.linear_pre(z_q.transpose(1, 2)).transpose(1, 2)
        # Each stage is a (sampler, backbone) ModuleList; torch types a ModuleList's items as plain Modules.
        for sampler, backbone in cast(Iterable[nn.ModuleList], self.downsample):
            x = backbone(sampler(x), mask=mask)
        x = self.vocos_backbone(x, d_vector, mask)
        out: Tensor = self.linear(x.transpose(1, 2)).transpose(1, 2)
        return torch.tanh(out) if self.use_tanh else out


class DecoderBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.block = nn.Sequential(
            Snake1d(in_dim),
            WNConv1d(
                in_dim,
                out_dim,
                kernel_size,
                stride=stride,
                padding=(kernel_size - stride) // 2,
                transposed=True,
            ),
            ResidualUnit(out_dim, 1),
            ResidualUnit(out_dim, 3),
            ResidualUnit(out_dim, 9),
        )

    def forward(self, x: Tensor, mask_in: Tensor | None = None, mask_out: Tensor | None = None) -> Tensor:
        """`mask_in` at the input's rate, `mask_out` at the upsampled rate (None: unpadded rows)."""
        if mask_in is None:
            out: Tensor = self.block(x)
            return out
        snake, upsample, *residuals = self.block
        # The transposed conv spreads input step t over outputs up to t * stride + pad: its input is masked too.
        x = upsample(snake(x).mul_(mask_in))
        for unit in residuals:
            x = unit(x, mask_out)
        return x


class WaveGenerator(nn.Module):
    """`decoder`: DAC-style upsampler, [B, latent, T] -> [B, 1, T * hop], tanh-bounded."""

    def __init__(self, cfg: BiCodecDecodeConfig) -> None:
        super().__init__()
        ch = cfg.wave_channels
        layers: list[nn.Module] = [WNConv1d(cfg.latent_dim, ch, 7, padding=3)]
        for i, (kernel, stride) in enumerate(zip(cfg.wave_kernel_sizes, cfg.wave_rates, strict=True)):
            if (kernel - stride) % 2:
                raise BiCodecLoadError(f"decoder kernel {kernel} and rate {stride}: (k - s) must be even")
            layers.append(DecoderBlock(ch // 2**i, ch // 2 ** (i + 1), kernel, stride))
        out_dim = ch // 2 ** len(cfg.wave_rates)
        layers += [Snake1d(out_dim), WNConv1d(out_dim, 1, 7, padding=3), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """`lengths` [B] (frames): right-padded rows, each convolution's input zeroed beyond its row's length."""
        if lengths is None:
            wave: Tensor = self.model(x)
            return wave
        first, *blocks, snake, last, tanh = self.model
        steps, rate = x.shape[-1], 1
        mask = length_mask(lengths, steps)
        x = first(x * mask)
        for block in cast(list[DecoderBlock], blocks):
            stride = block.stride
            mask_out = length_mask(lengths, steps * rate * stride, rate * stride)
            x = block(x, mask, mask_out)
            mask, rate = mask_out, rate * stride
        wave = tanh(last(snake(x).mul_(mask)))
        return wave


class SemanticDequantizer(nn.Module):
    """`quantizer` (decode half): codebook row lookup (no L2 norm at decode) -> out_project."""

    def __init__(self, cfg: BiCodecDecodeConfig) -> None:
        super().__init__()
        size, dim = cfg.semantic_codebook_size, cfg.semantic_codebook_dim
        self.codebook = nn.Embedding(size, dim, _weight=torch.empty(size, dim), _freeze=True)
        self.out_project: nn.Module = (
            WNConv1d(cfg.semantic_codebook_dim, cfg.latent_dim, 1)
            if cfg.semantic_codebook_dim != cfg.latent_dim
            else nn.Identity()
        )

    def forward(self, semantic: Tensor) -> Tensor:  # [B, T] -> [B, latent, T]
        z_q: Tensor = self.out_project(F.embedding(semantic, self.codebook.weight).transpose(1, 2))
        return z_q


class FSQProjection(nn.Module):
    """`speaker_encoder.quantizer` (decode half): FSQ index -> centred codes -> project_out."""

    def __init__(self, cfg: BiCodecDecodeConfig) -> None:
        super().__init__()
        self.levels = cfg.fsq_levels
        self.basis = tuple(math.prod(cfg.fsq_levels[:k]) for k in range(len(cfg.fsq_levels)))
        n = len(cfg.fsq_levels)
        self.project_out: nn.Module = (
            nn.Linear(n, cfg.speaker_latent_dim) if n != cfg.speaker_latent_dim else nn.Identity()
        )

    def codes(self, indices: Tensor) -> Tensor:  # [B, N] -> [B, N, len(levels)] in [-1, 1)
        digits = [(indices // base) % level for base, level in zip(self.basis, self.levels, strict=True)]
        half = torch.tensor([level // 2 for level in self.levels], dtype=torch.float32, device=indices.device)
        return (torch.stack(digits, dim=-1).float() - half) / half

    def forward(self, indices: Tensor) -> Tensor:  # [B, N] -> [B, N, latent]
        # One quantizer: its residual scale (levels - 1) ** 0 is 1.
        latents: Tensor = self.project_out(self.codes(indices))
        return latents


class SpeakerDetokenizer(nn.Module):
    """`speaker_encoder` (decode half): 32 global ids -> d-vector."""

    def __init__(self, cfg: BiCodecDecodeConfig) -> None:
        super().__init__()
        self.quantizer = FSQProjection(cfg)
        self.project = nn.Linear(cfg.speaker_latent_dim * cfg.speaker_token_num, cfg.d_vector_dim)

    def forward(self, global_tokens: Tensor) -> Tensor:  # [B, N] -> [B, D]
        latents = self.quantizer(global_tokens)  # [B, N, latent]
        # Flatten channel-major (index = channel * N + token), as upstream's [B, latent, N].reshape does.
        d_vector: Tensor = self.project(latents.transpose(1, 2).reshape(latents.shape[0], -1))
        return d_vector


# --------------------------------------------------------------------------------------------------------
# the decoder


class BiCodecDecoder(nn.Module):
    """Semantic + global tokens -> 16 kHz float waveform, T tokens -> T * 320 samples.

    Build with `from_pretrained(dir)`; `BiCodecDecoder(config)` alone gives uninitialised weights (use it
    under `torch.device("meta")` to inspect names and shapes).
    """

    sample_rate = 16000

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.raw_config = unwrap_config(config)
        self.config = BiCodecDecodeConfig.from_dict(self.raw_config)
        self.quantizer = SemanticDequantizer(self.config)
        self.speaker_encoder = SpeakerDetokenizer(self.config)
        self.prenet = FeaturePrenet(self.config)
        self.decoder = WaveGenerator(self.config)

    # ---- facts callers need ----------------------------------------------------------------------------

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def device(self) -> torch.device:
        return self.quantizer.codebook.weight.device

    @property
    def d_vector_dim(self) -> int:
        return self.config.d_vector_dim

    @property
    def global_token_count(self) -> int:
        return self.config.speaker_token_num

    @property
    def semantic_codebook_size(self) -> int:
        return self.config.semantic_codebook_size

    @property
    def global_codebook_size(self) -> int:
        return self.config.global_codebook_size

    @property
    def receptive_field_tokens(self) -> int:
        return receptive_field_tokens(self.config)

    @property
    def wave_reach_tokens(self) -> int:
        return wave_reach_tokens(self.config)

    # ---- loading ---------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, bicodec_dir: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> BiCodecDecoder:
        """Load `config.yaml` + `model.safetensors` (released layout), fold weight norm, move to `device`.

        Without `config.yaml` the released config is used if the weights' shapes match it exactly."""
        root = Path(bicodec_dir)
        config_path, weights_path = root / CONFIG_FILE, root / WEIGHTS_FILE
        if not weights_path.is_file():
            raise BiCodecLoadError(f"{weights_path}: missing; expected the BiCodec weights")
        if config_path.is_file():
            raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or not isinstance(raw.get(CONFIG_TOP_KEY), dict):
                raise BiCodecLoadError(f"{config_path}: expected a mapping under top key '{CONFIG_TOP_KEY}'")
        else:
            raw = RELEASED_CONFIG
        with torch.device("meta"):
            model = cls(raw)
        expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
        with safe_open(str(weights_path), framework="pt", device="cpu") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
            try:
                needed = plan_decode_tensors(shapes, expected, source=str(weights_path))
            except BiCodecLoadError as exc:
                if raw is not RELEASED_CONFIG:
                    raise
                raise BiCodecLoadError(
                    f"{config_path}: missing, and the weights are not the released BiCodec size ({exc}); "
                    "copy the checkpoint's BiCodec/config.yaml beside its model.safetensors"
                ) from exc
            tensors = {name: f.get_tensor(name) for name in needed}
        model.load_decode_state_dict(tensors)
        return model.to(torch.device(device))

    def load_decode_state_dict(self, tensors: Mapping[str, Tensor]) -> None:
        """Take exactly the decode tensors (unfolded names), cast to fp32, then fold weight norm."""
        for name, t in tensors.items():
            if not t.is_floating_point():
                raise BiCodecLoadError(f"tensor {name}: dtype {t.dtype}, expected a float tensor (float32)")
        state = {name: t.detach().to(torch.float32) for name, t in tensors.items()}
        self.load_state_dict(state, strict=True, assign=True)
        self.fold_weight_norm()
        self.requires_grad_(False)
        self.eval()

    def fold_weight_norm(self) -> None:
        fold_weight_norms(self)

    # ---- inference -------------------------------------------------------------------------------------

    @torch.inference_mode()
    def quantize_semantic(self, semantic: Tensor) -> Tensor:
        """Semantic ids [B, T] -> z_q [B, latent, T]."""
        z_q: Tensor = self.quantizer(self._check_semantic(semantic))
        return z_q

    @torch.inference_mode()
    def speaker_vector(self, global_tokens: Tensor) -> Tensor:
        """32 global ids ([B, 32] or [B, 1, 32]) -> d-vector [B, D]. Depends only on the voice; cache it."""
        d_vector: Tensor = self.speaker_encoder(self._check_global(global_tokens))
        return d_vector

    @torch.inference_mode()
    def decode_with_speaker(self, semantic: Tensor, d_vector: Tensor) -> Tensor:
        """Semantic ids [B, T] + d-vector [B, D] (or [1, D], broadcast) -> waveform [B, T * hop]."""
        semantic = self._check_semantic(semantic)
        d = torch.as_tensor(d_vector, dtype=torch.float32, device=self.device)
        if d.dim() == 1:
            d = d.unsqueeze(0)
        if d.dim() != 2 or d.shape[1] != self.d_vector_dim or d.shape[0] not in (1, semantic.shape[0]):
            raise ValueError(
                f"d_vector must have shape [{semantic.shape[0]}, {self.d_vector_dim}] (or [1, "
                f"{self.d_vector_dim}]), got {list(d.shape)}"
            )
        d = d.expand(semantic.shape[0], -1)
        x = self.prenet(self.quantizer(semantic), d) + d.unsqueeze(-1)
        wave: Tensor = self.decoder(x).squeeze(1)
        return wave

    @torch.inference_mode()
    def decode_padded(
        self, ids: Tensor | np.ndarray, lengths: Tensor | np.ndarray, d_vector: Tensor | np.ndarray
    ) -> Tensor:
        """Right-padded rows: ids [B, L] + valid lengths [B] (tokens) + d-vectors [B, D] -> waveform [B, L * hop]
        on the decoder's device. Row b's first lengths[b] * hop samples equal `decode_with_speaker` of its first
        lengths[b] ids alone (within ~1e-5: the convolutions round differently at another length); the rest is
        padding garbage. `decode_rows` with every row at column 0 and the wave generator over the whole row."""
        ids = torch.as_tensor(ids)
        lengths = torch.as_tensor(lengths)
        return self.decode_rows(ids, torch.zeros_like(lengths), lengths, lengths, d_vector, margin=0)

    @torch.inference_mode()
    def decode_rows(
        self,
        ids: Tensor | np.ndarray,
        starts: Tensor | np.ndarray,
        lengths: Tensor | np.ndarray,
        wave_lengths: Tensor | np.ndarray,
        d_vector: Tensor | np.ndarray,
        *,
        margin: int,
    ) -> Tensor:
        """Rows placed anywhere in a padded batch, the wave generator run on a span of each (the serving path).

        ids [B, L]: row b's window at columns [starts[b], starts[b] + lengths[b]), id 0 elsewhere (a valid index);
        d-vectors [B, D]. The prenet reads each window with every convolution's input zeroed outside it, as the
        window alone would be read. The wave generator, nearly all of the cost (~95% at the released size: the prenet
        works at the token rate, the wave generator up to 320x it), then runs on columns [margin, L - margin) only:
        row b's wave span is wave_lengths[b] tokens from column `margin`, each convolution's input zeroed beyond it.
        Returns [B, (L - 2 * margin) * hop]: row b's first wave_lengths[b] * hop samples are its span's audio. Where
        the span reaches `wave_reach_tokens` beyond the tokens kept on each side (or ends where the window does),
        the kept tokens' audio equals the whole window's through `decode_with_speaker` (within ~1e-5: other lengths
        round differently): the wave generator reads no further (the caller places rows: services/device/runner.py).

        No range check and no host sync here; the ids were checked where they entered (core/streaming)."""
        ids = torch.as_tensor(ids).to(self.device, torch.long, non_blocking=True)
        starts, lengths, wave_lengths = (
            torch.as_tensor(v).to(self.device, torch.long, non_blocking=True)
            for v in (starts, lengths, wave_lengths)
        )
        d = torch.as_tensor(d_vector).to(self.device, torch.float32, non_blocking=True)
        rows, steps = ids.shape if ids.dim() == 2 else (-1, -1)
        if (
            ids.dim() != 2
            or d.shape != (rows, self.d_vector_dim)
            or not 0 <= 2 * margin < steps
            or any(v.shape != (rows,) for v in (starts, lengths, wave_lengths))
        ):
            raise ValueError(
                f"decode_rows takes ids [B, L], starts, lengths and wave lengths [B], d [B, {self.d_vector_dim}] and "
                f"0 <= 2 * margin < L; got {list(ids.shape)}, {list(starts.shape)}, {list(lengths.shape)}, "
                f"{list(wave_lengths.shape)}, {list(d.shape)}, margin {margin}"
            )
        t = torch.arange(steps, device=ids.device)
        mask = (
            ((t >= starts.unsqueeze(-1)) & (t < (starts + lengths).unsqueeze(-1)))
            .unsqueeze(1)
            .to(torch.float32)
        )
        x = self.prenet(self.quantizer(ids), d, mask) + d.unsqueeze(-1)
        if margin:
            x = x[:, :, margin : steps - margin]
        wave: Tensor = self.decoder(x, wave_lengths).squeeze(1)
        return wave

    @torch.inference_mode()
    def decode(self, semantic: Tensor, global_tokens: Tensor) -> Tensor:
        """Semantic ids [B, T] + global ids [B, 32] / [B, 1, 32] -> waveform [B, T * hop] in [-1, 1]."""
        return self.decode_with_speaker(semantic, self.speaker_vector(global_tokens))

    forward = decode

    # ---- validation ------------------------------------------------------------------------------------

    def _check_semantic(self, semantic: Tensor) -> Tensor:
        s = _as_index_tensor(semantic, "semantic tokens", self.device)
        if s.dim() == 1:
            s = s.unsqueeze(0)
        if s.dim() != 2 or s.shape[1] == 0:
            raise ValueError(f"semantic tokens must have shape [B, T] with T >= 1, got {list(s.shape)}")
        _check_range(s, self.semantic_codebook_size, "semantic token")
        return s

    def _check_global(self, global_tokens: Tensor) -> Tensor:
        g = _as_index_tensor(global_tokens, "global tokens", self.device)
        if g.dim() == 3 and g.shape[1] == 1:
            g = g.squeeze(1)
        elif g.dim() == 1:
            g = g.unsqueeze(0)
        n = self.global_token_count
        if g.dim() != 2 or g.shape[1] != n:
            raise ValueError(
                f"global tokens must be exactly {n} per item ([B, {n}] or [B, 1, {n}]), got {list(g.shape)}"
            )
        _check_range(g, self.global_codebook_size, "global token")
        return g


def _as_index_tensor(values: Any, what: str, device: torch.device) -> Tensor:
    t = torch.as_tensor(values)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{what} must be integers, got dtype {t.dtype}")
    return t.to(device=device, dtype=torch.long)


def _check_range(t: Tensor, size: int, what: str) -> None:
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= size):
        bad = t[(t < 0) | (t >= size)].flatten()[0].item()
        raise ValueError(f"{what} value {bad} out of range; accepted values are 0..{size - 1}")


# --------------------------------------------------------------------------------------------------------
# checkpoint accounting


def is_skipped_tensor(name: str) -> bool:
    return name.startswith(SKIP_PREFIXES)


def plan_decode_tensors(
    file_shapes: Mapping[str, tuple[int, ...]],
    expected_shapes: Mapping[str, tuple[int, ...]],
    *,
    source: str = "checkpoint",
) -> list[str]:
    """Names to read from a checkpoint. Every file tensor must be needed or skipped; needed ones must exist
    with the expected shape. Errors name the tensor (and both shapes)."""
    unknown = sorted(n for n in file_shapes if n not in expected_shapes and not is_skipped_tensor(n))
    if unknown:
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise BiCodecLoadError(
            f"{source}: unexpected tensor(s) {unknown[:5]}{more}; not a BiCodec decode tensor "
            "and not on the encoder-side skip list"
        )
    missing = sorted(n for n in expected_shapes if n not in file_shapes)
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise BiCodecLoadError(f"{source}: missing decode tensor(s) {missing[:5]}{more}")
    for name, shape in expected_shapes.items():
        got = tuple(file_shapes[name])
        if got != tuple(shape):
            raise BiCodecLoadError(f"{source}: tensor {name} has shape {list(got)}, expected {list(shape)}")
    return list(expected_shapes)


def decode_tensor_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Names and shapes (unfolded, as stored) of the decode tree for a config; built on the meta device."""
    with torch.device("meta"):
        model = BiCodecDecoder(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def receptive_field_tokens(cfg: BiCodecDecodeConfig) -> int:
    """Frames on each side that can influence one output frame (upper bound, from the kernel sizes)."""

    def backbone_reach(layers: int) -> int:
        return 3 + 3 * layers  # embed k7 + one k7 depthwise conv per ConvNeXt block

    reach = float(len(cfg.prenet_sample_ratios) * backbone_reach(2) + backbone_reach(cfg.prenet_num_layers))
    return math.ceil(reach + _wave_reach(cfg))


def wave_reach_tokens(cfg: BiCodecDecodeConfig) -> int:
    """Frames on each side of one output frame that the wave generator alone reads (upper bound: 11 at the released
    config, of the ~68 the whole decoder reads). A span of the prenet's output reaching this far beyond the frames
    kept gives them exactly the audio the whole window would (`BiCodecDecoder.decode_rows`)."""
    return math.ceil(_wave_reach(cfg))


def _wave_reach(cfg: BiCodecDecodeConfig) -> float:
    reach = 3.0  # decoder.model.0, k7 at frame rate
    rate = 1
    residual_reach = 3 * (1 + 3 + 9)  # three k7 residual convs, dilations 1, 3, 9
    for kernel, stride in zip(cfg.wave_kernel_sizes, cfg.wave_rates, strict=True):
        pad = (kernel - stride) // 2
        reach += max(pad, kernel - 1 - pad) / stride / rate  # transposed conv, in frames
        rate *= stride
        reach += residual_reach / rate
    return reach + 3 / rate  # final k7 conv
