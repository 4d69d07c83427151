"""One log line per HTTP request, refused ones included: `http_request` with the method, the route template, the
status, the error code of a refusal (read from its JSON body, whatever dialect shaped it), the key id once the key was
read, the server's request id and the client's X-Request-ID (on every line, shared/logging.py), and the time to the
end of the answer. Probes (health, readiness, metrics) are logged only when they fail.

Synthesis requests also write their lifecycle lines (services/usage/accounting.py); this line is the one every
request has, so a client's X-Request-ID finds its refusal as well as its audio.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("api.access")
PROBES = frozenset({"/v1/tts/health", "/v1/tts/ready", "/metrics", "/v1/tts/metrics"})
MAX_ERROR_BODY = 8192  # bytes of a refusal's body kept to read its code


def error_code(body: bytes) -> str | None:
    """The code of an error body in any of the served shapes: ours and OpenAI's `error.code`, ElevenLabs'
    `detail.status`, Cartesia's and others' top-level `code`/`error`."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    for outer, inner in (("error", "code"), ("detail", "status"), ("detail", "code")):
        value = parsed.get(outer)
        if isinstance(value, dict) and isinstance(value.get(inner), str):
            return str(value[inner])
    for name in ("code", "error"):
        if isinstance(parsed.get(name), str):
            return str(parsed[name])
    return None


class AccessLogMiddleware:
    """Write the request's one line when its answer ends (or the client leaves before it does)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        json_error = False
        body = bytearray()

        async def watching_send(message: Message) -> None:
            nonlocal status, json_error
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = dict(message.get("headers") or [])
                json_error = status >= 400 and headers.get(b"content-type", b"").startswith(
                    b"application/json"
                )
            elif message["type"] == "http.response.body" and json_error and len(body) < MAX_ERROR_BODY:
                body.extend(message.get("body", b"")[: MAX_ERROR_BODY - len(body)])
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            path = scope.get("path", "")
            if not (path in PROBES and 0 < status < 400):
                route = scope.get("route")
                state = scope.get("state") or {}
                logger.info(
                    "http_request",
                    extra={
                        "method": scope.get("method"),
                        # The route's template once routed; a refusal before routing names the path asked for.
                        "route": getattr(route, "path", None) or path,
                        "status": status or None,  # None: the client left before any answer
                        "error_code": error_code(bytes(body)) if json_error else None,
                        "key_id": state.get("key_id"),
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )
