"""Refusals on a dialect's HTTP routes in that vendor's own shape (ElevenLabs' `{"detail": {...}}`, Cartesia's
`{"error_code", "title", "message", "request_id"}`), with our status codes and headers kept.

One ASGI layer, inside the request-id middleware and outside everything that can refuse: any answer of status 400
or more on a dialect's paths whose body is our envelope is re-shaped by that dialect's `http_error`, whoever wrote
it (the exception handlers, FastAPI's body validation, the auth dependency, the body-size middleware and the
credentials check it runs before reading a body). Re-shaping the finished envelope, rather than teaching each
source about dialects, keeps the sources dialect-free and leaves no refusal out. An exception no handler answered
becomes the dialect's 500 here: Starlette answers those outside every middleware, in our envelope, and without the
request id; its handler still logs it (the exception is raised on)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True)
class HttpError:
    """One refusal as our envelope said it, for a dialect to re-shape."""

    status: int
    code: str  # ours: VALIDATION_ERROR, INVALID_API_KEY, ...
    message: str
    param: str | None
    request_id: str


@dataclass(frozen=True)
class DialectErrors:
    """Which paths speak a dialect, and its error body."""

    name: str
    matches: Callable[[str], bool]
    http_error: Callable[[HttpError], dict[str, Any]]


def _from_envelope(status: int, body: bytes, request_id: str) -> HttpError | None:
    try:
        error = json.loads(body)["error"]
        return HttpError(status, str(error["code"]), str(error["message"]), error.get("param"), request_id)
    except (ValueError, KeyError, TypeError):
        return None  # not our envelope (a CORS refusal, a dialect's own body): left as it is


class DialectErrorsMiddleware:
    def __init__(self, app: ASGIApp, dialects: Iterable[DialectErrors]) -> None:
        self.app = app
        self.dialects = tuple(dialects)

    def _dialect(self, scope: Scope) -> DialectErrors | None:
        if scope["type"] != "http":
            return None  # WebSocket refusals are in-band, in each dialect's wire format
        path = scope.get("path", "")
        return next((d for d in self.dialects if d.matches(path)), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        dialect = self._dialect(scope)
        if dialect is None:
            await self.app(scope, receive, send)
            return
        request_id = scope.setdefault("state", {}).get("request_id", "")
        held: Message | None = None  # an error's start, kept until its body is complete
        chunks: list[bytes] = []
        started = False

        async def reshaping_send(message: Message) -> None:
            nonlocal held, started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] >= 400:
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                start, held = held, None
                await self._send_error(send, dialect, start, b"".join(chunks), request_id)
                return
            await send(message)

        try:
            await self.app(scope, receive, reshaping_send)
        except Exception:
            if not started or held is not None:  # nothing of an answer has gone out yet
                error = HttpError(
                    500, "INTERNAL_ERROR", "An internal error occurred; it has been logged.", None, request_id
                )
                await _send_json(send, 500, dialect.http_error(error), [])
            raise

    async def _send_error(
        self, send: Send, dialect: DialectErrors, start: Message, body: bytes, request_id: str
    ) -> None:
        status = start["status"]
        error = _from_envelope(status, body, request_id)
        if error is None:
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        kept = [
            (k, v)
            for k, v in start.get("headers") or []
            if k.lower() not in (b"content-length", b"content-type")
        ]
        await _send_json(send, status, dialect.http_error(error), kept)


async def _send_json(
    send: Send, status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def status_title(status: int) -> str:
    """A short summary of a status (Cartesia's `title`)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
