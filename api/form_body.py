"""A JSON route that also takes `multipart/form-data`: the form's fields become the JSON body (a file part becomes
its bytes in base64), so both shapes go through one protocol model, one validation and one error envelope.

Used by `POST /v1/tts/generate`, whose per-request cloning takes the reference as a file (`reference_audio`) from
clients that would rather not base64 it. Empty form fields count as absent (browsers send blank inputs as "").
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Coroutine, MutableMapping
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import UploadFile

MAX_FORM_FIELDS = 32
FORM_BODY_STATE = "form_body"  # request.scope["state"] key: the body came as a form this route accepts


def came_as_form(request: Request) -> bool:
    return bool(request.scope.get("state", {}).get(FORM_BODY_STATE))


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def form_as_json(request: Request) -> Request:
    """The same request with its form re-expressed as a JSON object body."""
    # Marks the request so a field error answers 400 naming the field, as for JSON (not 415 "send JSON").
    request.scope.setdefault("state", {})[FORM_BODY_STATE] = True
    data: dict[str, Any] = {}
    async with request.form(max_files=2, max_fields=MAX_FORM_FIELDS) as form:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data[name] = base64.b64encode(await value.read()).decode("ascii")
            elif value != "":
                data[name] = value
    body = json.dumps(data).encode()
    headers = [(k, v) for k, v in request.scope["headers"] if k not in (b"content-type", b"content-length")]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    sent = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()

    return Request({**request.scope, "headers": headers}, receive)


class FormAsJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(await form_as_json(request) if is_multipart(request) else request)

        return route
