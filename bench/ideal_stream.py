"""A codec that costs nothing, and the stream a zero-latency service would send with it (bench only).

`FreeCodec` stands in for BiCodec: `decode_with_speaker` returns silence of exactly the length the real decoder
returns (T tokens x hop samples per row), at once. Everything else (`speaker_vector`, `device`, ...) is the
wrapped decoder's. `bench/serve_paced.py` can serve with it to show how much of a latency spread is the
service's own scheduling (HTTP, parsing, queues, thread hops) and how much is decode compute. It is never part
of the product.

`FreeSR` does the same for AP-BWE's batched call (the 48 kHz host path without the model's compute).

`ideal_arrivals` drives the product's `StreamingDecoder` with a `FreeCodec`, one semantic token at a time at the
engine's due times, and returns when each chunk's audio would reach a client of a service that adds no time:
the chunk schedule's and the engine's share of any underrun. `ideal_underruns` counts those underruns with the
product's playback model (`services.usage.flow_monitor.StreamCadence`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.streaming import StreamingConfig, StreamingDecoder
from services.usage.flow_monitor import StreamCadence

HOP = 320
NATIVE_RATE = 16_000


class _Wrapper:
    """A bench stand-in for a model: attributes it does not set itself (speaker_vector, grid, ...) are the wrapped
    model's, so only the compute is replaced."""

    inner: Any

    def __getattr__(self, name: str) -> Any:  # only reached for attributes not set on the stand-in
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


class FreeCodec(_Wrapper):
    """BiCodec's decode contract with no compute: zeros of the exact output length (bench only)."""

    def __init__(
        self,
        inner: Any = None,
        *,
        hop_length: int = HOP,
        semantic_codebook_size: int = 8192,
        d_vector_dim: int = 1024,
    ) -> None:
        self.inner = inner
        self.hop_length = getattr(inner, "hop_length", hop_length)
        self.semantic_codebook_size = getattr(inner, "semantic_codebook_size", semantic_codebook_size)
        self.d_vector_dim = getattr(inner, "d_vector_dim", d_vector_dim)
        self.device = getattr(inner, "device", torch.device("cpu"))
        self.wave_reach_tokens = getattr(inner, "wave_reach_tokens", 11)

    def decode_with_speaker(self, semantic: torch.Tensor, d_vector: torch.Tensor) -> torch.Tensor:
        rows, tokens = torch.as_tensor(semantic).shape
        return torch.zeros(rows, tokens * self.hop_length)

    def decode_padded(self, ids: Any, lengths: Any, d_vector: Any) -> torch.Tensor:
        """The codec scheduler's call (ids [B, L] -> [B, L * hop]), the one serving makes: without it `__getattr__`
        would hand it to the wrapped decoder, which computes. Whatever `decode_with_speaker` returns, padded rows
        included (a bench that patches that method gets its output here too)."""
        return self.decode_with_speaker(torch.as_tensor(ids), d_vector)

    def decode_rows(
        self, ids: Any, starts: Any, lengths: Any, wave_lengths: Any, d_vector: Any, *, margin: int
    ) -> torch.Tensor:
        """The scheduler's trimmed call (ids [B, L] -> [B, (L - 2 margin) * hop]), answered here for the same reason."""
        ids = torch.as_tensor(ids)
        return self.decode_with_speaker(ids[:, margin : ids.shape[1] - margin], d_vector)


class FreeSR(_Wrapper):
    """AP-BWE's batch contract with no compute (bench only): [B, S] in, [B, 3S] out, the real model's length, so the
    48 kHz audio chain downstream (framing, encoding, sending) runs on real sizes. Every row is the same slice of a
    quiet noise buffer made once (rows of a view, as `FreeCodec` answers): the device's compute is not the API path's,
    and on a GPU the host only copies the result out, as the runner does here. Everything else (`grid`, `context`,
    ...) is the wrapped model's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._noise = torch.zeros(0)

    def enhance_batch(self, x16: Any) -> torch.Tensor:
        rows, samples = torch.as_tensor(x16).shape
        if self._noise.numel() < 3 * samples:  # grown once to the longest window seen (one thread calls it)
            rng = np.random.default_rng(0)
            self._noise = torch.from_numpy((rng.standard_normal(3 * samples) * 0.05).astype(np.float32))
        return self._noise[: 3 * samples].expand(rows, -1)


@dataclass(frozen=True)
class EngineTiming:
    """When a stream's semantic tokens reach the service: token i at first_due_s + i / tokens_per_s."""

    semantic_tokens: int
    first_due_s: float
    tokens_per_s: float

    def due(self, index: int) -> float:
        return self.first_due_s + index / self.tokens_per_s


def ideal_arrivals(
    config: StreamingConfig, timing: EngineTiming, holdback_samples: int = 0
) -> list[tuple[float, float]]:
    """(seconds after the request, audio seconds) per chunk a zero-latency service sends.

    `holdback_samples` (16 kHz) stay behind each chunk until the next one or the end, as a crossfade buffer or
    AP-BWE's context would keep them."""
    codec = FreeCodec(d_vector_dim=1)
    decoder = StreamingDecoder(codec, torch.zeros(1, 1), config)  # type: ignore[arg-type]
    arrivals: list[tuple[float, float]] = []
    decoded = released = 0
    for index in range(timing.semantic_tokens):
        decoded += sum(len(c) for c in decoder.push([0]))
        ready = max(released, decoded - holdback_samples)
        if ready > released:
            arrivals.append((timing.due(index), (ready - released) / NATIVE_RATE))
            released = ready
    decoded += sum(len(c) for c in decoder.finish())
    end = timing.due(timing.semantic_tokens)  # the stop id follows the last semantic token
    if decoded > released:
        arrivals.append((end, (decoded - released) / NATIVE_RATE))
    return arrivals


def underruns(arrivals: list[tuple[float, float]], prebuffer_s: float) -> int:
    """Playback underruns of a client that starts `prebuffer_s` after the first audio (StreamCadence)."""
    cadence = StreamCadence(prebuffer_s=prebuffer_s, observe_metrics=False)
    for at, seconds in arrivals:
        cadence.on_chunk(seconds, at=at)
    return cadence.underruns


def ideal_underruns(
    config: StreamingConfig, timing: EngineTiming, prebuffer_s: float, holdback_samples: int = 0
) -> int:
    return underruns(ideal_arrivals(config, timing, holdback_samples), prebuffer_s)


def ideal_first_audio_s(config: StreamingConfig, timing: EngineTiming) -> float:
    """When the first audio leaves a zero-latency service: with the first chunk's last look-ahead token."""
    return timing.due(min(timing.semantic_tokens, config.tokens_before_first_audio) - 1)
