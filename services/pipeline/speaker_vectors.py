"""A voice's d-vector: BiCodec's speaker encoder over its 32 global tokens, made once per voice and kept.

It depends on nothing but the tokens, so one cache serves every request of the process. A miss is a model call on
the serving device: it runs as device work of the codec scheduler (`CodecScheduler.run_model_call`), never beside
it, so admission sees its time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from core.bicodec import BiCodecDecoder

MAX_CACHED_VOICES = 1024


class SpeakerVectors:
    def __init__(self, bicodec: BiCodecDecoder) -> None:
        self._bicodec = bicodec
        self._cache: dict[tuple[int, ...], torch.Tensor] = {}

    def cached(self, global_tokens: tuple[int, ...]) -> torch.Tensor | None:
        """The voice's d-vector if one was made already (no model call: safe on the event loop)."""
        return self._cache.get(global_tokens)

    def compute(self, global_tokens: tuple[int, ...]) -> torch.Tensor:
        """Blocking model call (the scheduler's device thread runs it): the d-vector, cached per voice."""
        cached = self._cache.get(global_tokens)
        if cached is None:
            tokens = torch.tensor([global_tokens], dtype=torch.long, device=self._bicodec.device)
            cached = self._bicodec.speaker_vector(tokens)
            if len(self._cache) > MAX_CACHED_VOICES:
                self._cache.clear()
            self._cache[global_tokens] = cached
        return cached
