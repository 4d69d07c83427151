"""How the process runs and is reached: deployment, idle sleep, metrics, the Wyoming server."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.settings.base import _Group


class DeploymentSettings(_Group):
    """The server process: address, logs, start-up, what it exposes, metrics."""

    host: str = Field(
        "0.0.0.0",
        description="Address the launch command (python -m api.launch) binds: 0.0.0.0, except 127.0.0.1 "
        "when scripts/serve switches auth off itself (demo model, no keys) and TTS_HOST is unset.",
    )
    port: int = Field(8000, description="Port the launch command (python -m api.launch) binds.")
    log_level: str = Field("INFO", description="Root log level.")
    log_json: bool = Field(True, description="Emit JSON log lines (false: plain text for a terminal).")
    warmup: bool = Field(True, description="Run one generation at start-up before reporting ready.")
    idle_sleep_s: float = Field(
        0.0,
        ge=0,
        description="After this many seconds without a request, free the device: vLLM sleeps (level 1, on a "
        "GPU: this turns its sleep mode on) and the codec models move off it; the next request wakes it and waits (its "
        "X-Wake-Ms header says how long). 0: never (docs/operate/idle-sleep.md).",
    )
    pin_voices_at_start: bool = Field(
        False,
        description="After warm-up, pin every voice without stored global tokens (seed 0, the same on every "
        "container), so style voices also skip the ~35 global-token steps before their first audio.",
    )
    cors_origins: str = Field(
        "",
        description="Comma-separated browser origins allowed by CORS (e.g. https://app.example.com); empty: no CORS. "
        'See docs/api/index.md, "From a browser".',
    )
    docs_enabled: bool = Field(
        True, description="Serve /docs, /redoc and /openapi.json (off for public deployments)."
    )
    playground_enabled: bool = Field(
        True,
        description="Serve the web playground at /playground (and redirect / to it); false: both answer 404.",
    )
    metrics_require_admin: bool = Field(
        False,
        description="/metrics and /v1/tts/metrics need the admin key (public deployments; Prometheus sends it).",
    )
    metrics_push_url: str = Field(
        "",
        description="Prometheus Pushgateway URL (http(s)://[user:password@]host:port) this process pushes its "
        "whole registry to, grouped by job and instance, and deletes its group from at shutdown: fleet-correct "
        "metrics on Modal (RUNBOOK §5). Empty: no push (Prometheus scrapes /metrics).",
    )
    metrics_push_interval_s: float = Field(
        5.0,
        gt=0,
        description="Seconds between pushes; keep it at or below the gateway's scrape interval.",
    )
    metrics_push_job: str = Field(
        "veena3-tts",
        min_length=1,
        description="The `job` label of the pushed group (the alerts and dashboard filter on it).",
    )
    metrics_push_instance: str = Field(
        "",
        description="The `instance` label of the pushed group; empty: the Modal task id (MODAL_TASK_ID), else "
        "hostname-pid. Must differ between processes, or their pushes overwrite each other.",
    )
    metrics_push_linger_s: float = Field(
        5.0,
        ge=0,
        description="At shutdown, seconds the final push stays on the gateway before the group is "
        "deleted, so Prometheus scrapes the last requests' counts; keep it at or above the gateway's scrape interval.",
    )


class WyomingSettings(_Group):
    """The Wyoming server (Home Assistant's voice protocol, docs/guides/home-assistant.md)."""

    wyoming_enabled: bool = Field(
        False,
        description="Start the Wyoming TCP server with the service (also `python -m api.protocols.wyoming` on its own).",
    )
    wyoming_host: str = Field(
        "127.0.0.1",
        description="Address the Wyoming server binds. Anything but loopback needs TTS_WYOMING_API_KEY: the "
        "protocol has no authentication, so the server refuses to start on another address without a key.",
    )
    wyoming_port: int = Field(10200, ge=1, le=65535, description="Port the Wyoming server binds.")
    wyoming_api_key: str = Field(
        "",
        description="The API key every Wyoming request runs as (its credits, limits and rate apply; its "
        "requests are logged under it); a key the key store refuses (unknown, revoked, suspended, expired) stops the "
        "service at start. Empty: requests run unkeyed, and only a loopback address may be bound.",
    )
    wyoming_sample_rate: Literal[16000, 24000] = Field(
        16000,
        description="Sample rate of the Wyoming audio (16-bit mono PCM): 16000 (the codec's own rate) or 24000.",
    )
    wyoming_zeroconf: bool = Field(
        False,
        description="Announce the Wyoming server over mDNS (`_wyoming._tcp.local.`) so Home Assistant discovers it "
        "on the same network segment; a failed announcement is logged and the server serves on.",
    )
    wyoming_max_connections: int = Field(
        64,
        ge=1,
        description="Wyoming connections the server holds at once (never more than a quarter of the process's "
        "open-file limit, so HTTP keeps its sockets). A connection over the cap waits up to "
        "TTS_WYOMING_ADMISSION_WAIT_S for a slot, then gets an error event and is closed.",
    )
    wyoming_max_connections_per_address: int = Field(
        16,
        ge=1,
        description="Wyoming connections one client address (an IPv6 client: its /64) holds at once, waiting ones "
        "included (never more than half the cap), so one client cannot take every slot; more from that address get "
        "an error event and are closed at once.",
    )
    wyoming_contended_idle_timeout_s: float = Field(
        5.0,
        gt=0,
        description="While a connection waits for a slot, an idle connection (nothing sent, nothing being "
        "synthesised) is closed after this many seconds instead of TTS_WS_IDLE_TIMEOUT_S, so idle sockets "
        "cannot keep a client out.",
    )
    wyoming_admission_wait_s: float = Field(
        10.0,
        ge=0,
        description="How long a connection over the cap waits for a slot (idle ones are closed meanwhile) before "
        "it is refused; keep it above TTS_WYOMING_CONTENDED_IDLE_TIMEOUT_S. 0: refused at once.",
    )
