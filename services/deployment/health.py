"""What the runtime reports of itself: its state while it loads and serves, and the health answer built from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


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
