"""The loaded model as the API edge sees it: its state while it loads and serves, the health answer built from it, and
the narrow interfaces routes use (`ServingModel`, `VoicePinning`). The runtime (services/deployment/runtime.py)
implements them; nothing at the edge holds the runtime itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from core.voices import VoiceRegistry
from services.pipeline.resources import ModelSource


class RuntimeState(StrEnum):
    STARTING = "starting"
    LOADING = "loading"
    WARMING = "warming"
    READY = "ready"
    FAILED = "failed"
    WARMUP_FAILED = "warmup_failed"
    UNHEALTHY = "unhealthy"
    STOPPED = "stopped"


@dataclass
class HealthReport:
    status: str
    state: str
    model_loaded: bool
    model_version: str
    demo_model: bool | None  # None while starting with TTS_MODEL_DIR set: not known until it is read
    sr_ready: bool
    sr_error: str | None
    engine: str
    device: str
    gpu_available: bool
    uptime_seconds: float
    app_version: str
    codec_graphs: dict[str, Any] | None = None  # start-up's codec CUDA graph capture; None without graphs
    error: str | None = None
    idle_sleep: str | None = None  # TTS_IDLE_SLEEP_S: awake, falling_asleep, asleep or waking; None when off
    details: dict[str, Any] = field(default_factory=dict)


class ServingModel(ModelSource, Protocol):
    """What routes and socket front ends read of the loaded model (a `ModelSource` for the sessions they open)."""

    @property
    def model_version(self) -> str: ...

    @property
    def voices(self) -> VoiceRegistry | None: ...  # None until the checkpoint is read

    def health(self) -> HealthReport: ...

    def codec_snapshot(
        self, limit: int
    ) -> dict[str, Any] | None: ...  # None before the codec scheduler exists

    def refresh_codec_gauges(self) -> None: ...


@dataclass(frozen=True)
class PinnedVoices:
    """Voices pinned on the running server: each one's 32 globals, the voices.json document now served, and where
    it was written (None: memory only)."""

    pinned: dict[str, tuple[int, ...]]
    document: dict[str, Any]
    saved_to: Path | None


class VoicePinning(Protocol):
    """Pins voices on the running server (services/deployment/pin_voices.py); raises ServiceError when the model is
    not ready, a voice is unknown, or voices.json cannot be written."""

    async def pin(self, voice_ids: Sequence[str] | None, *, seed: int, save: bool) -> PinnedVoices: ...
