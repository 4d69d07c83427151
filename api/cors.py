"""CORS for browser apps (TTS_CORS_ORIGINS): which request headers a page may send and which answers it may read.

Request headers are listed, not "*": what `fetch` and the official OpenAI JS SDK send (openai-node adds its
X-Stainless-* telemetry headers and, when configured, OpenAI-Organization/-Project). No credentials mode: keys travel
in Authorization / X-API-Key, never cookies. Exposed headers are every X- header the service sets on an answer
(tests/unit/api/test_cors.py finds them in the source), so a page reads the same metadata as curl.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

STAINLESS_HEADERS = (
    "X-Stainless-OS",
    "X-Stainless-Lang",
    "X-Stainless-Package-Version",
    "X-Stainless-Runtime",
    "X-Stainless-Runtime-Version",
    "X-Stainless-Arch",
    "X-Stainless-Retry-Count",
    "X-Stainless-Timeout",
)
ALLOWED_REQUEST_HEADERS = (
    "Authorization",
    "X-API-Key",
    "Content-Type",
    "Accept",
    "X-Request-ID",
    "OpenAI-Organization",
    "OpenAI-Project",
    "Idempotency-Key",
    *STAINLESS_HEADERS,
)
EXPOSED_HEADERS = (
    "X-Request-ID",
    "X-Server-Request-ID",
    "X-App-Version",
    "X-Model-Version",
    "X-Voice",
    "X-SR-Applied",
    "X-Sample-Rate",
    "X-Format",
    "X-Stream",
    "X-Text-Chunked",
    "X-Chunking-Enabled",
    "X-Normalized-Text",
    "X-Normalized-Text-Truncated",
    "X-Audio-Bytes",
    "X-Audio-Seconds",
    "X-TTFB-ms",
    "X-RTF",
    "X-Chunks-Retried",
    "X-Chunks-Cut",
    "X-Timestamps-Status",
    "X-Ignored-Fields",
    "X-Voice-Description",
    "X-Voice-Description-Ignored",
    "X-Wake-Ms",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Retry-After",
    "Content-Disposition",
)


def origins(setting: str) -> list[str]:
    return [o.strip() for o in setting.split(",") if o.strip()]


def install_cors(app: FastAPI, setting: str) -> None:
    """Add the CORS middleware when origins are configured (a no-op otherwise)."""
    allowed = origins(setting)
    if not allowed:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=allowed,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=list(ALLOWED_REQUEST_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        max_age=600,
    )
