"""AP-BWE speech super-resolution, 16 kHz -> 48 kHz, offline and streaming.

The pipeline (docs/reference/ap-bwe.md#signal-path): windowed-sinc x3 upsampling -> centred STFT (n_fft 1024, hop 80,
win 320) -> log amplitude and phase -> generator (two ConvNeXt streams that exchange features) -> iSTFT of the
predicted amplitude and phase, trimmed to exactly 3N samples.

The generator is non-causal with a finite receptive field, so streaming is exact: each model call sees enough
left and right context that the samples it keeps equal the offline result, and every window starts on the
STFT frame grid (80 samples at 16 kHz) so its frames coincide with the offline frames.

Longer than 500 lines because the signal path, the generator and its streaming windows are one contract (streamed ==
offline at the served precision) and read best together; the precision's roundings live in core/apbwe_precision.py.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core import exact_stft
from core.apbwe_precision import Products, SRPrecision, check_precision
from core.checkpoint import CheckpointError
from core.exact_conv import dense_conv1d, depthwise_conv1d
from core.sinc_resample import sinc_resample
from core.sr_planner import SRPlanner, SRWindow

WEIGHTS_FILE = "g_16kto48k"
CONFIG_FILE = "config.json"
LOG_FLOOR = 1e-4  # additive floor inside the log amplitude, as in training
LN_EPS = 1e-6
KERNEL = 7  # every temporal conv of the generator: k=7, symmetric padding 3
SERVED = ("served_w1", "served_b1", "served_w2", "served_b2")  # a block's pointwise layers as served

# The released 16kto48k config.json (file-format fact; only the last five model keys are read at inference).
RELEASED_CONFIG: dict[str, Any] = {
    "num_gpus": 0,
    "batch_size": 16,
    "learning_rate": 0.0002,
    "adam_b1": 0.8,
    "adam_b2": 0.99,
    "lr_decay": 0.999,
    "seed": 1234,
    "ConvNeXt_channels": 512,
    "ConvNeXt_layers": 8,
    "segment_size": 8000,
    "n_fft": 1024,
    "hop_size": 80,
    "win_size": 320,
    "hr_sampling_rate": 48000,
    "lr_sampling_rate": 16000,
    "num_workers": 4,
    "dist_config": {"dist_backend": "nccl", "dist_url": "tcp://localhost:54321", "world_size": 1},
}


class SRCheckpointError(CheckpointError):
    """The AP-BWE directory is missing a file, or a tensor is missing, unexpected or mis-shaped."""


@dataclass(frozen=True)
class APBWEConfig:
    channels: int
    layers: int
    n_fft: int
    hop_size: int
    win_size: int
    input_rate: int
    output_rate: int

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> APBWEConfig:
        keys = ("ConvNeXt_channels", "ConvNeXt_layers", "n_fft", "hop_size", "win_size")
        missing = [k for k in (*keys, "hr_sampling_rate", "lr_sampling_rate") if k not in raw]
        if missing:
            raise SRCheckpointError(f"AP-BWE config: missing keys {missing}")
        cfg = cls(
            channels=int(raw["ConvNeXt_channels"]),
            layers=int(raw["ConvNeXt_layers"]),
            n_fft=int(raw["n_fft"]),
            hop_size=int(raw["hop_size"]),
            win_size=int(raw["win_size"]),
            input_rate=int(raw["lr_sampling_rate"]),
            output_rate=int(raw["hr_sampling_rate"]),
        )
        if (cfg.input_rate, cfg.output_rate) != (16000, 48000):
            raise SRCheckpointError(
                f"AP-BWE config: rates {cfg.input_rate}->{cfg.output_rate} Hz; only 16000->48000 is supported"
            )
        return cfg

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def ratio(self) -> int:
        return self.output_rate // self.input_rate

    @property
    def grid(self) -> int:
        """Smallest input step that moves the output by whole STFT hops (80 at 16 kHz for hop 80, ratio 3)."""
        return self.hop_size // math.gcd(self.hop_size, self.ratio)

    @property
    def receptive_frames(self) -> int:
        """Frames each side an output frame depends on: pre-conv + one depthwise conv per block."""
        return (KERNEL // 2) * (1 + self.layers)

    @property
    def context(self) -> int:
        """Input samples each side that make a window's kept output exact (880 for the released config)."""
        reach48 = 2 * (self.win_size // 2) + self.receptive_frames * self.hop_size  # STFT + model + iSTFT
        resampler_width = 7  # ceil(lowpass_filter_width / rolloff) input taps each side
        reach16 = math.ceil(reach48 / self.ratio) + resampler_width
        return math.ceil(reach16 / self.grid) * self.grid


# ----------------------------------------------------------------------------------------------------------
# Generator. Attribute names and registration order reproduce the released state-dict keys.


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, layer_scale: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))
        self.dwconv = nn.Conv1d(dim, dim, KERNEL, padding=KERNEL // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.pwconv1 = nn.Linear(dim, 3 * dim)
        self.pwconv2 = nn.Linear(3 * dim, dim)
        self.products = Products()
        self.set_products(self.products)

    def set_products(self, products: Products) -> None:
        """Serve the pointwise layers at `products`' precision (after the module is on its device). Their served
        weights are buffers left out of the state dict: moving the module (idle sleep) moves them too."""
        self.products = products
        served = (
            (*products.served(self.pwconv1), *products.served(self.pwconv2))
            if products.own_weights
            else (None,) * 4
        )
        for name, tensor in zip(SERVED, served, strict=True):
            self.register_buffer(name, tensor, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        y = depthwise_conv1d(x, self.dwconv.weight, self.dwconv.bias).transpose(1, 2)
        w1, b1, w2, b2 = (getattr(self, name) for name in SERVED)
        if w1 is None:
            y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))  # exact (erf) GELU, as trained
        else:  # the trunk's tensor-core layers (core/apbwe_precision); the residual stream stays fp32
            h = self.products.gelu(self.products.trunk_linear(self.norm(y), w1, b1))
            y = self.products.trunk_linear(h, w2, b2).float()
        out: torch.Tensor = x + (self.gamma * y).transpose(1, 2)
        return out


def _conv(conv: nn.Conv1d, x: torch.Tensor, products: Products) -> torch.Tensor:
    # The Conv1d modules only hold the weights (state-dict names); the maths is length-independent (core/exact_conv).
    return dense_conv1d(products.operand(x), products.operand(conv.weight), conv.bias)


def _head(linear: nn.Linear, x: torch.Tensor, products: Products) -> torch.Tensor:
    return F.linear(products.operand(x), products.operand(linear.weight), linear.bias)


def _norm_channels(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    normed: torch.Tensor = norm(x.transpose(1, 2)).transpose(1, 2)
    return normed


class APBWEGenerator(nn.Module):
    """(log amplitude, phase) of the upsampled narrowband signal -> wideband (log amplitude, phase)."""

    def __init__(self, channels: int, layers: int, n_fft: int) -> None:
        super().__init__()
        bins = n_fft // 2 + 1
        self.conv_pre_mag = nn.Conv1d(bins, channels, KERNEL, padding=KERNEL // 2)
        self.norm_pre_mag = nn.LayerNorm(channels, eps=LN_EPS)
        self.conv_pre_pha = nn.Conv1d(bins, channels, KERNEL, padding=KERNEL // 2)
        self.norm_pre_pha = nn.LayerNorm(channels, eps=LN_EPS)
        self.convnext_mag = nn.ModuleList(ConvNeXtBlock(channels, 1.0 / layers) for _ in range(layers))
        self.convnext_pha = nn.ModuleList(ConvNeXtBlock(channels, 1.0 / layers) for _ in range(layers))
        self.norm_post_mag = nn.LayerNorm(channels, eps=LN_EPS)
        self.norm_post_pha = nn.LayerNorm(channels, eps=LN_EPS)
        self.linear_post_mag = nn.Linear(channels, bins)
        self.linear_post_pha_r = nn.Linear(channels, bins)
        self.linear_post_pha_i = nn.Linear(channels, bins)
        self.products = Products()
        self._layer: Any = _layer

    def fuse(self) -> None:
        """Compile one layer pair (the streams' exchange and both ConvNeXt blocks) with TorchInductor, which fuses its
        elementwise chain: the depthwise taps, norm, casts, GELU, layer scale and residual adds. One compile serves
        all layers (the blocks are its arguments) and every shape (dynamic); a graph break raises (fullgraph).
        The input convolutions, heads, resampler and STFT stay eager: they are few kernels and must stay bit-stable."""
        self._layer = torch.compile(_layer, dynamic=True, fullgraph=True)

    def set_precision(self, precision: SRPrecision, emulate: bool = False) -> None:
        """The precision of the matrix products (core/apbwe_precision); `emulate`: fp32 kernels rounding as a GPU's
        reduced precision would (a CPU's figures). Call it once the generator is on its device."""
        self.products = Products(precision, emulate)
        for block in (*self.convnext_mag, *self.convnext_pha):
            block.set_products(self.products)

    @classmethod
    def from_config(cls, cfg: APBWEConfig) -> APBWEGenerator:
        return cls(cfg.channels, cfg.layers, cfg.n_fft)

    def forward(self, logamp: torch.Tensor, pha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, bins, T) each -> (B, bins, T) each; phase wrapped to (-pi, pi]."""
        products = self.products
        a = _norm_channels(self.norm_pre_mag, _conv(self.conv_pre_mag, logamp, products))
        p = _norm_channels(self.norm_pre_pha, _conv(self.conv_pre_pha, pha, products))
        for block_mag, block_pha in zip(self.convnext_mag, self.convnext_pha, strict=True):
            a, p = self._layer(a, p, block_mag, block_pha)
        a = self.norm_post_mag(a.transpose(1, 2))
        p = self.norm_post_pha(p.transpose(1, 2))
        logamp_wb = logamp + _head(self.linear_post_mag, a, products).transpose(1, 2)  # amplitude is residual
        pha_wb = torch.atan2(
            _head(self.linear_post_pha_i, p, products), _head(self.linear_post_pha_r, p, products)
        ).transpose(1, 2)
        return logamp_wb, pha_wb


def _layer(
    a: torch.Tensor, p: torch.Tensor, block_mag: nn.Module, block_pha: nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer of the two streams: they exchange features, then each runs its ConvNeXt block."""
    a = a + p
    p = p + a  # uses the already-updated amplitude features, as trained
    return block_mag(a), block_pha(p)


def random_generator(cfg: APBWEConfig, seed: int = 0) -> APBWEGenerator:
    """A generator with deterministic random weights (demo checkpoint, benchmarks). Output audio is noise."""
    gen = torch.Generator().manual_seed(seed)
    model = APBWEGenerator.from_config(cfg)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("gamma"):
                param.fill_(1.0 / cfg.layers)
            elif "norm" in name:
                param.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
    return model.eval()


# ----------------------------------------------------------------------------------------------------------
# Signal path.


@dataclass(frozen=True)
class Spectrum:
    logamp: torch.Tensor  # (B, bins, T)
    pha: torch.Tensor  # (B, bins, T)


class _Frontend:
    """STFT analysis/synthesis with the training conventions (periodic Hann, centre, reflect)."""

    def __init__(self, cfg: APBWEConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.window = torch.hann_window(cfg.win_size, periodic=True, device=device)
        exact_stft.check_nola(self.window, cfg.n_fft, cfg.hop_size)  # once here: no host sync per window
        # torch.stft reflect padding needs more samples than n_fft/2; shorter inputs are zero-padded.
        self.min_input = cfg.n_fft // 2 // cfg.ratio + 1

    def analyse(self, x48: torch.Tensor) -> Spectrum:
        """x48 (N,) or (B, N) -> (B, bins, T) each (B = 1 for a 1-D signal)."""
        # FFTs of one batch shape (core/exact_stft): a frame rounds the same in a streamed window as offline on a GPU.
        spec = exact_stft.stft(x48.reshape(-1, x48.shape[-1]), self.cfg.n_fft, self.cfg.hop_size, self.window)
        return Spectrum(torch.log(spec.abs() + LOG_FLOOR), torch.angle(spec))

    def synthesise(self, out: Spectrum, length: int) -> torch.Tensor:
        """(1, bins, T) -> (length,)."""
        return self.synthesise_batch(out, length)[0]

    def synthesise_batch(self, out: Spectrum, length: int) -> torch.Tensor:
        """(B, bins, T) -> (B, length)."""
        spec = torch.polar(torch.exp(out.logamp), out.pha)  # the log floor is not subtracted
        return exact_stft.istft(spec, self.cfg.n_fft, self.cfg.hop_size, self.window, length, check=False)


# ----------------------------------------------------------------------------------------------------------
# Service object.


class SuperResolution:
    """AP-BWE 16 kHz -> 48 kHz. `upsample` for whole signals, `stream()` for incremental input."""

    input_rate = 16000
    output_rate = 48000

    def __init__(
        self,
        generator: APBWEGenerator,
        config: APBWEConfig,
        device: str | torch.device = "cpu",
        offline_block: int = 30 * 16000,
        *,
        precision: SRPrecision = "fp32",
        fused: bool = False,
    ) -> None:
        self.config = config
        self.device = _resolve_device(device)
        self.precision = check_precision(precision)
        self.generator = generator.to(self.device).eval()
        # Off CUDA the reduced precisions are emulated (core/apbwe_precision): the figures a GPU would give. Precision
        # and fusing are set on the generator: a generator shared by two objects serves the last one's.
        self.generator.set_precision(self.precision, emulate=self.device.type != "cuda")
        # fused: the generator's layers compiled (APBWEGenerator.fuse) for every call alike, graphs and eager, so
        # offline and streamed windows run the same kernels.
        self.fused = fused
        if fused:
            self.generator.fuse()
        self._frontend = _Frontend(config, self.device)
        # Longer inputs are processed in exact windows of this size so memory stays bounded.
        self.offline_block = _round_up(offline_block, config.grid)

    @classmethod
    def from_pretrained(
        cls,
        sr_dir: str | Path,
        device: str | torch.device = "cpu",
        *,
        precision: SRPrecision = "fp32",
        fused: bool = False,
    ) -> SuperResolution:
        sr_dir = Path(sr_dir)
        config = APBWEConfig.from_dict(_read_config(sr_dir / CONFIG_FILE))
        generator = APBWEGenerator.from_config(config)
        load_generator_weights(generator, sr_dir / WEIGHTS_FILE)
        return cls(generator, config, device, precision=precision, fused=fused)

    @property
    def context(self) -> int:
        return self.config.context

    @property
    def grid(self) -> int:
        return self.config.grid

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.generator.parameters())

    # -- whole-window maths -----------------------------------------------------------------------------

    def resample(self, x16: torch.Tensor) -> torch.Tensor:
        return sinc_resample(x16, self.input_rate, self.output_rate, lowpass_filter_width=6, rolloff=0.99)

    def analyse(self, x48: torch.Tensor) -> Spectrum:
        return self._frontend.analyse(x48)

    @torch.inference_mode()
    def enhance_window(self, x16: np.ndarray) -> np.ndarray:
        """The offline recipe on one window: 16 kHz samples in, exactly 3x as many 48 kHz samples out."""
        x = torch.from_numpy(np.ascontiguousarray(x16, dtype=np.float32)).to(self.device)
        return self._enhance(x[None])[0].float().cpu().numpy() if x.numel() else np.zeros(0, np.float32)

    @torch.inference_mode()
    def enhance_batch(self, x16: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Rows of 16 kHz samples [B, S] -> [B, 3S] at 48 kHz, on the model's device (the caller copies it out).
        Rows are right zero-padded: a row's output beyond `context` from its padded end equals `enhance_window` of the
        row alone (every op is per row; bit-identical, or ~1e-8 where a CPU's GEMM rounds by length). A stream's true
        end is reflect-padded by the STFT: run it at its exact length (rows of one length may share a call)."""
        x = torch.as_tensor(x16).to(self.device, torch.float32, non_blocking=True)
        if x.dim() != 2:
            raise ValueError(f"enhance_batch takes [B, S] samples, got shape {list(x.shape)}")
        return self._enhance(x)

    def _enhance(self, x: torch.Tensor) -> torch.Tensor:  # (B, n) on the device -> (B, 3n)
        n = x.shape[-1]
        if n < self._frontend.min_input:
            x = F.pad(x, (0, self._frontend.min_input - n))
        # Every convolution here is length-independent (core/exact_conv), so a window's samples round the same
        # whatever its length and streamed output equals offline; no process-wide switch is touched.
        x48 = self.resample(x)
        spec = self._frontend.analyse(x48)
        logamp, pha = self.generator(spec.logamp, spec.pha)
        y = self._frontend.synthesise_batch(Spectrum(logamp, pha), length=x48.shape[-1])
        return y[:, : n * self.config.ratio]

    # -- public API ---------------------------------------------------------------------------------------

    def upsample(self, wav16: np.ndarray) -> np.ndarray:
        """Whole signal, float32 at 16 kHz -> float32 at 48 kHz, exactly 3x the length. Not clipped."""
        stream = self.stream(min_block=self.offline_block, max_block=self.offline_block)
        head = stream.push(wav16)
        return np.concatenate([head, stream.finish()])

    def stream(
        self, min_block: int = 1600, max_block: int = 10 * 16000, context: int | None = None
    ) -> SRStream:
        return SRStream(self, min_block=min_block, max_block=max_block, context=context)


class SRStream:
    """Incremental super-resolution whose concatenated output equals `upsample` of the whole input.

    The windows are `core.sr_planner.SRPlanner`'s (the schedule the serving path hands the codec scheduler); this
    class runs each one here, at once. A model call runs once at least `min_block` new samples (16 kHz) have their full
    right context buffered; it then handles everything ready, at most `max_block` per call. The algorithmic latency
    is the right context (`context` samples, 55 ms for the released config) plus the wait for a block. Not
    thread-safe.
    """

    def __init__(
        self, sr: SuperResolution, min_block: int, max_block: int, context: int | None = None
    ) -> None:
        self._sr = sr
        self._planner = SRPlanner(
            grid=sr.grid,
            context=sr.context if context is None else context,
            min_block=min_block,
            max_block=max_block,
        )
        self.grid = self._planner.grid
        self.context = self._planner.context
        self.min_block = self._planner.min_block
        self.max_block = self._planner.max_block
        self.samples_out = 0  # 48 kHz samples returned

    @property
    def samples_in(self) -> int:
        """16 kHz samples pushed."""
        return self._planner.samples_in

    @property
    def model_calls(self) -> int:
        return self._planner.windows

    @property
    def samples_processed(self) -> int:
        """16 kHz samples fed to the model, context included."""
        return self._planner.samples_planned

    def push(self, chunk16: np.ndarray) -> np.ndarray:
        """Add 16 kHz samples; return the 48 kHz samples that are final now (possibly none)."""
        if self._planner.finished:
            raise RuntimeError("SRStream.push after finish()")
        return self._run(self._planner.push(chunk16))

    def finish(self) -> np.ndarray:
        """Flush: the rest of the output, using the true end of the signal as right boundary."""
        return self._run(self._planner.finish())

    def _run(self, windows: list[SRWindow]) -> np.ndarray:
        out = []
        for w in windows:
            kept = np.ascontiguousarray(self._sr.enhance_window(w.samples)[w.keep_start : w.keep_end])
            self.samples_out += kept.size
            out.append(kept)
        return _join(out)


# ----------------------------------------------------------------------------------------------------------
# Checkpoint files.


def load_generator_weights(generator: APBWEGenerator, path: Path) -> None:
    """Load `{"generator": state_dict}` into `generator`; every mismatch names the tensor and shapes."""
    if not path.is_file():
        raise SRCheckpointError(f"{path}: missing; expected the AP-BWE generator checkpoint ({WEIGHTS_FILE})")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or non-torch file; say which
        raise SRCheckpointError(
            f"{path}: not a readable torch checkpoint ({exc.__class__.__name__}: {exc})"
        ) from exc
    if not isinstance(blob, dict) or not isinstance(blob.get("generator"), dict):
        found = sorted(blob)[:5] if isinstance(blob, dict) else type(blob).__name__
        raise SRCheckpointError(
            f"{path}: expected a dict with key 'generator' holding a state dict, found {found}"
        )
    state = blob["generator"]
    expected = {name: tuple(t.shape) for name, t in generator.state_dict().items()}
    for name, shape in expected.items():
        if name not in state:
            raise SRCheckpointError(f"{path}: tensor '{name}' is missing; expected shape {list(shape)}")
        actual = tuple(state[name].shape)
        if actual != shape:
            raise SRCheckpointError(
                f"{path}: tensor '{name}' has shape {list(actual)}; the config expects {list(shape)}"
            )
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise SRCheckpointError(
            f"{path}: {len(unexpected)} unexpected tensors (e.g. '{unexpected[0]}'); "
            "this is not a generator of the AP-BWE architecture the config describes"
        )
    generator.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)


def write_random_checkpoint(out_dir: Path, channels: int = 32, layers: int = 2, seed: int = 0) -> None:
    """Write config.json (released config, model size changed) and g_16kto48k with random weights."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = copy.deepcopy(RELEASED_CONFIG)
    raw["ConvNeXt_channels"] = channels
    raw["ConvNeXt_layers"] = layers
    model = random_generator(APBWEConfig.from_dict(raw), seed=seed)
    (out_dir / CONFIG_FILE).write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    torch.save({"generator": model.state_dict()}, out_dir / WEIGHTS_FILE)


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SRCheckpointError(f"{path}: missing; expected the AP-BWE config.json")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SRCheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise SRCheckpointError(f"{path}: expected a JSON object, found {type(raw).__name__}")
    return raw


# ----------------------------------------------------------------------------------------------------------
# Small helpers.


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _round_up(n: int, step: int) -> int:
    return -(-int(n) // step) * step


def _join(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros(0, np.float32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
