"""Who may call and what it costs: keys and limits, databases, credits and the request log."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from shared.settings.base import _Group


class AccessSettings(_Group):
    """Who may use the service and how much: API keys, rate limits, load shedding."""

    auth_enabled: bool = Field(
        True, description="Require an API key. Off only for local development (logs a warning)."
    )
    api_keys: str = Field(
        "", description="Comma-separated plain keys for the static backend (hashed at load)."
    )
    api_keys_file: Path | None = Field(
        None,
        description="JSON file of static key records (sha256 hashes). A file that cannot be read or holds a "
        "malformed record stops the service at start, naming the record (it would answer every request 401).",
    )
    key_backend: Literal["static", "postgres", "supabase"] = Field(
        "static",
        description="Where API keys live. postgres needs TTS_DATABASE_URL and supabase TTS_SUPABASE_URL and "
        "TTS_SUPABASE_KEY, or the service refuses to start.",
    )
    key_cache_ttl_s: float = Field(30.0, ge=0, description="API-key lookup cache TTL (revocation latency).")
    key_stale_if_error_s: float = Field(
        30.0,
        ge=0,
        description="While the key store is unreachable, a cached key keeps working this long past its TTL; a key "
        "revoked meanwhile works at most TTL + this (60 s by default), then requests get 503.",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or CIDR ranges of reverse proxies (or *) whose X-Forwarded-For "
        "names the client; the failed-login throttles count per that client address. Empty: the TCP peer's address.",
    )
    auth_failures_per_minute: int = Field(
        20,
        ge=0,
        description="Failed authentications one client address may make per minute before it gets 429 without a "
        "key-store lookup (0: no limit).",
    )
    admin_key: str = Field("", description="Key for /v1/tts/debug/* (empty: debug routes disabled).")
    rate_limit_per_minute: int = Field(60, ge=1, description="Default per-key requests per minute.")
    max_concurrent_streams: int = Field(4, ge=1, description="Default per-key concurrent requests.")
    shed_first_audio_s: float = Field(
        0.0,
        ge=0,
        description="Load shedding: while the oldest admitted request of a process has waited longer than "
        "this for its first audio, new requests get 503 SERVER_OVERLOADED with Retry-After. 0: off (set it on "
        "deployments that can send clients elsewhere, e.g. 5).",
    )

    @field_validator("api_keys_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value


class DatabaseSettings(_Group):
    """The shared stores that keys, the request log, voices and continuity use."""

    redis_url: str | None = Field(None, description="Redis URL for limits shared across containers.")
    database_url: str | None = Field(
        None, description="PostgreSQL DSN for the request log, keys and the voice library."
    )
    supabase_url: str | None = Field(
        None, description="Supabase project URL (request log sink / keys / voice library)."
    )
    supabase_key: str | None = Field(None, description="Supabase service key.")


class UsageSettings(_Group):
    """The request log and credits."""

    request_log_sink: Literal["none", "postgres", "supabase"] = Field(
        "none", description="Request log destination."
    )
    log_request_text: bool = Field(False, description="Store the request text in the request log.")
    request_log_spool_dir: Path | None = Field(
        Path("var/request-log-spool"),
        description="Durable request-log spool (SQLite, one file per process): a record is on disk as its request "
        "ends and leaves only when the database confirmed it. Empty: in-memory queue only (records can be lost).",
    )
    request_log_spool_stale_s: float | None = Field(
        None,
        gt=0,
        description="For a spool directory shared by machines (a Modal Volume, where file locks do not cross "
        "containers): each spool keeps a heartbeat and another's is adopted only when its heartbeat is older than "
        "this. Set to 60 on Modal; empty: the file lock alone decides (one machine).",
    )
    request_log_queue_size: int = Field(10_000, ge=1, description="Bounded request-log queue.")
    request_log_batch_size: int = Field(100, ge=1, description="Rows per insert.")
    request_log_flush_s: float = Field(
        1.0, gt=0, description="Longest wait before a partial batch is written."
    )
    credits_enabled: bool = Field(False, description="Charge characters/audio seconds to the key's balance.")
    credits_outage_allowance: int = Field(
        2000,
        ge=0,
        description="While the key store cannot take a debit, a metered key whose record is cached is "
        "still served up to min(its cached balance, this) credits per container; the spend is taken when the "
        "request's row is stored. Past it (or with 0): 503 SERVICE_UNAVAILABLE with Retry-After.",
    )
    credits_reserve_ahead: int = Field(
        256,
        ge=1,
        description="WebSocket text reserves credits in blocks of at least this many characters (one "
        "database write per block, not per text frame); what an utterance did not use is refunded when it settles.",
    )

    @field_validator("request_log_spool_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value
