"""ASGI middleware: request ids on every response and log line, and a cap on request body size."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, error_envelope
from api.lone_surrogates import has_lone_surrogate
from shared.logging import client_request_id_var, request_id_var
from shared.settings import APP_VERSION

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# What is read and dropped of a body over its cap before the 413 is sent: the rest of a moderately oversized body
# (a client that reads its response only after sending gets the 413, not a reset); a larger one is cut short.
MAX_DRAIN_BYTES = 16 * 2**20


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Give every request a server id (X-Server-Request-ID); echo a well-formed client X-Request-ID (else the
    server id) as X-Request-ID; expose both to logs, the request log and response headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        # The server's own id identifies the request everywhere (logs, engine, request log, credits): a client's
        # X-Request-ID is kept beside it and echoed, but two requests can never share an identity through it.
        request_id = new_request_id()
        client_id = incoming if _SAFE_ID.match(incoming) else None
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["client_request_id"] = client_id
        state["received_at"] = time.perf_counter()
        token = request_id_var.set(request_id)
        client_token = client_request_id_var.set(client_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {name.lower() for name, _ in headers}
                if b"x-request-id" not in names:
                    headers.append((b"x-request-id", (client_id or request_id).encode()))
                if b"x-server-request-id" not in names:
                    headers.append((b"x-server-request-id", request_id.encode()))
                if b"x-app-version" not in names:
                    headers.append((b"x-app-version", APP_VERSION.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
            client_request_id_var.reset(client_token)


class BodySizeLimitMiddleware:
    """Read each request body in full before the app sees it: refuse one over its cap with 413 and one that
    does not arrive within `timeout_s` (a slow-body client holding a connection) with 408, both in the error
    envelope. The app then reads the buffered body; later receives (disconnect) go to the server as usual.

    The cap is `max_bytes`, except on the upload routes named in `uploads` ((method, path) -> cap); `hints` (path ->
    sentence) adds where a client should send a larger body instead. On the routes in `authenticated` (those that need
    an API key; exact (method, path) pairs, or `authenticated_patterns` matched against "METHOD /path" for routes
    with path parameters, such as the dialects') `check_credentials` (raising ApiError) runs first: a request with missing or wrong credentials is
    answered before one byte of its body is read, so unauthenticated connections hold no body at all. On the upload
    routes `grant_before_upload` runs instead when given: the key's rate, concurrency and credits are checked (and its
    slot held) from the headers, so a key over its limits holds no body either; what it returns runs when the request
    ends (giving back a grant the route never claimed)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        timeout_s: float = 30.0,
        uploads: dict[tuple[str, str], int] | None = None,
        hints: dict[str, str] | None = None,
        check_credentials: Callable[[Scope], Awaitable[None]] | None = None,
        authenticated: set[tuple[str, str]] | None = None,
        authenticated_patterns: Sequence[re.Pattern[str]] = (),
        grant_before_upload: Callable[[Scope], Awaitable[Callable[[], Awaitable[None]] | None]] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.uploads = dict(uploads or {})
        self.hints = dict(hints or {})
        self.check_credentials = check_credentials
        self.authenticated = set(authenticated or ())
        self.authenticated_patterns = tuple(authenticated_patterns)
        self.grant_before_upload = grant_before_upload

    async def _refuse(self, send: Send, status: int, code: str, message: str) -> None:
        body = json.dumps(error_envelope(code, message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _reject(self, send: Send, cap: int, path: str) -> None:
        hint = f" {self.hints[path]}" if path in self.hints else ""
        await self._refuse(send, 413, "PAYLOAD_TOO_LARGE", f"The request body exceeds {cap} bytes.{hint}")

    @staticmethod
    async def _drain(receive: Receive, received: int, limit: int, deadline: float) -> bool:
        """Read and drop the rest of a refused body (`received` bytes of it read so far): until its end, `limit`
        bytes in all, or the body deadline, whichever comes first. False when the client went away."""
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                while received <= limit:
                    message = await receive()
                    if message["type"] != "http.request":
                        return False
                    received += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            pass  # a slow sender is answered now; closing may then reset it, as it would any over-long body
        return True

    def _needs_key(self, route: tuple[str, str]) -> bool:
        if route in self.authenticated:
            return True
        line = f"{route[0]} {route[1]}"
        return any(pattern.fullmatch(line) for pattern in self.authenticated_patterns)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = (scope.get("method", ""), scope.get("path", ""))
        give_back: Callable[[], Awaitable[None]] | None = None
        if self.check_credentials is not None and self._needs_key(route):
            try:
                if self.grant_before_upload is not None and route in self.uploads:
                    give_back = await self.grant_before_upload(scope)
                else:
                    await self.check_credentials(scope)
            except ApiError as err:
                body = json.dumps(err.envelope()).encode()
                headers = [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
                await send(
                    {
                        "type": "http.response.start",
                        "status": err.status,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                            *headers,
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        try:
            await self._limited(scope, receive, send, route)
        finally:
            if give_back is not None:
                await give_back()

    async def _limited(self, scope: Scope, receive: Receive, send: Send, route: tuple[str, str]) -> None:
        """The body read within its cap and deadline, then the app."""
        cap = self.uploads.get(route, self.max_bytes)
        request_headers = dict(scope.get("headers") or [])
        declared = request_headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            # A client waiting for "100 Continue" has sent nothing: refuse at once. Any other is sending its body
            # now; read and drop what fits in the drain allowance, so closing the socket resets nothing it still
            # has to read (most clients read a response only once their body is sent).
            expects_continue = b"100-continue" in request_headers.get(b"expect", b"").lower()
            if not expects_continue and int(declared) <= cap + MAX_DRAIN_BYTES:
                if not await self._drain(
                    receive, 0, cap + MAX_DRAIN_BYTES, time.monotonic() + self.timeout_s
                ):
                    return
            await self._reject(send, cap, scope.get("path", ""))
            return
        chunks: list[bytes] = []
        received = 0
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away before its body arrived
                    body = message.get("body", b"")
                    received += len(body)
                    if received > cap:
                        break
                    chunks.append(body)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._refuse(
                send,
                408,
                "REQUEST_TIMEOUT",
                f"The request body did not arrive within {self.timeout_s:g} s; send it at once.",
            )
            return
        if received > cap:
            more = message.get("more_body", False)
            if more and not await self._drain(
                receive, received, cap + MAX_DRAIN_BYTES, started + self.timeout_s
            ):
                return
            await self._reject(send, cap, scope.get("path", ""))
            return
        whole = b"".join(chunks)
        content_type = dict(scope.get("headers") or []).get(b"content-type", b"").lower()
        if b"json" in content_type and has_lone_surrogate(whole):
            await self._refuse(
                send,
                400,
                "VALIDATION_ERROR",
                "The JSON body escapes a lone UTF-16 surrogate (such as \\ud800 without its pair), which is not "
                "text; send valid Unicode.",
            )
            return
        buffered: Message | None = {"type": "http.request", "body": whole, "more_body": False}

        async def replay() -> Message:
            nonlocal buffered
            if buffered is not None:
                message, buffered = buffered, None
                return message
            return await receive()

        await self.app(scope, replay, send)


class HttpMetricsMiddleware:
    """Count every HTTP response (4xx and 5xx included) by route template, method and status, and time to headers.

    The route template (`/v1/audio/voices/{id}`), never the raw path, keeps label values bounded; a path no route
    matched counts as "unmatched"."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from shared import metrics

        started = time.perf_counter()
        method = scope.get("method", "GET")

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                metrics.HTTP_REQUESTS.labels(template, method, str(message["status"])).inc()
                metrics.HTTP_LATENCY.labels(template, method).observe(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, counting_send)
