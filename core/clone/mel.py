"""Magnitude mel spectrogram with torchaudio's `MelSpectrogram` semantics, written in torch
(docs/reference/spark-tts.md#bicodec-encode-reference-audio-to-voice-tokens).

BiCodec's speaker branch was trained on `torchaudio.transforms.MelSpectrogram(sr, n_fft, win_length, hop_length,
f_min, f_max, n_mels=..., power=1, norm="slaney", mel_scale="slaney")`. torchaudio is not a dependency of this
service (its wheels pin one torch build each, which vLLM's image does not share), so the transform is rebuilt here:
a periodic Hann window of `win_length` centred in `n_fft`, reflect-padded centred STFT, magnitude (no log), then a
Slaney-scale, Slaney-normalised triangular filterbank, built in float32 exactly as torchaudio builds it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(freq: float) -> float:
    if freq < _MIN_LOG_HZ:
        return freq / _F_SP
    return _MIN_LOG_MEL + math.log(freq / _MIN_LOG_HZ) / _LOG_STEP


def mel_to_hz(mels: Tensor) -> Tensor:
    linear = _F_SP * mels
    logarithmic = _MIN_LOG_HZ * torch.exp(_LOG_STEP * (mels - _MIN_LOG_MEL))
    return torch.where(mels >= _MIN_LOG_MEL, logarithmic, linear)


def mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> Tensor:
    """[n_freqs, n_mels] triangular filters on the Slaney scale with Slaney (area) normalisation, float32."""
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    mel_points = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2)
    f_pts = mel_to_hz(mel_points)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)  # [n_freqs, n_mels + 2]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = torch.clamp(torch.minimum(down, up), min=0.0)
    return fb * (2.0 / (f_pts[2 : n_mels + 2] - f_pts[:n_mels])).unsqueeze(0)


@dataclass(frozen=True)
class MelConfig:
    """`audio_tokenizer.mel_params` of `BiCodec/config.yaml`."""

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 640
    hop_length: int = 320
    f_min: float = 10.0
    f_max: float | None = None  # None: Nyquist
    num_mels: int = 128

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> MelConfig:
        f_max = params.get("mel_fmax")
        return cls(
            sample_rate=int(params["sample_rate"]),
            n_fft=int(params["n_fft"]),
            win_length=int(params.get("win_length") or params["n_fft"]),
            hop_length=int(params["hop_length"]),
            f_min=float(params.get("mel_fmin", 0.0)),
            f_max=None if f_max is None else float(f_max),
            num_mels=int(params["num_mels"]),
        )


class MagnitudeMel(nn.Module):
    """Waveform [B, N] -> magnitude mel [B, n_mels, 1 + N // hop] (centred frames)."""

    window: Tensor
    filterbank: Tensor

    def __init__(self, config: MelConfig) -> None:
        super().__init__()
        self.config = config
        f_max = config.f_max if config.f_max is not None else float(config.sample_rate // 2)
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)
        self.register_buffer(
            "filterbank",
            mel_filterbank(config.n_fft // 2 + 1, config.f_min, f_max, config.num_mels, config.sample_rate),
            persistent=False,
        )

    def forward(self, waveform: Tensor) -> Tensor:
        c = self.config
        spectrum = torch.stft(
            waveform,
            n_fft=c.n_fft,
            hop_length=c.hop_length,
            win_length=c.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        magnitude = spectrum.abs()  # [B, n_freqs, frames]
        return torch.matmul(magnitude.transpose(-1, -2), self.filterbank).transpose(-1, -2)
