"""`WS /v1/tts/ws`: text in pieces in, audio frames out, on one connection (protocol: the README's WebSocket section).

This module is the protocol edge: the handshake (API key from a header or the `api_key` query parameter, the
per-connection rate check), parsing and validating client messages, the idle timeout, and limits/accounting per
utterance. What happens to the text and audio lives in services/sessions/ws_session.py.
"""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse

from api.deps import Services, services_of
from api.errors import ApiError, error_envelope
from api.protocols.native.requests import PingMessage, StartMessage, TextMessage, parse_message
from api.protocols.native.responses import NativeWire
from api.socket_guard import denial_sent
from api.ws_connection import CLOSE_POLICY, admitted, serve_session, socket_caller
from services.access import ApiKeyRecord
from services.errors import ServiceError
from services.pipeline.synthesis import SynthesisRequest
from services.sessions.entrance import SessionShape
from services.sessions.ws_session import WsSession

logger = logging.getLogger("api.ws")
router = APIRouter(tags=["tts"])

WS_PATH = "/v1/tts/ws"


# ---------------------------------------------------------------------------------------------- connection
async def _refuse(websocket: WebSocket, error: ApiError) -> None:
    """Refuse the handshake with the HTTP status and envelope an HTTP request would get."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(
            JSONResponse(error.envelope(), error.status, headers=error.headers)
        )
        denial_sent(websocket._receive)  # noqa: SLF001 - no false "handshake not completed" error in uvicorn's log
        return
    await websocket.accept()  # no denial extension: say why in-band, then close
    await websocket.send_text(json.dumps({"type": "error", **error.envelope(), "utterance_id": None}))
    await websocket.close(CLOSE_POLICY, error.code)


async def _synthesis_request(services: Services, msg: StartMessage, key_id: str) -> SynthesisRequest:
    """The same gate, voice resolution (custom voices of this key included) and defaults as HTTP (services.pipeline.speech);
    text comes in pieces later."""
    try:
        return await services.sessions.context(msg.to_speech_request(services.settings), key_id)
    except ServiceError as exc:
        raise ApiError.from_service(exc) from None


async def _dispatch(websocket: WebSocket, session: WsSession, raw: str, key_id: str) -> str | None:
    kind, msg = parse_message(raw)
    if kind in ("start", "oneshot"):
        assert isinstance(msg, StartMessage)
        request = await _synthesis_request(services_of(websocket), msg, key_id)
        await session.start(request, text=msg.text, end=kind == "oneshot")
    elif kind == "text":
        assert isinstance(msg, TextMessage)
        await session.text(msg.text)
    elif kind == "flush":
        await session.flush()
    elif kind == "end":
        await session.end()
    elif kind == "cancel":
        await session.cancel()
    elif kind == "ping":
        assert isinstance(msg, PingMessage)
        await session.ping(msg.id)
    return None


@router.websocket(WS_PATH)
async def tts_websocket(websocket: WebSocket) -> None:
    services = services_of(websocket)
    query_key = websocket.query_params.get("api_key")  # browsers cannot set headers on a WebSocket
    async with admitted(websocket, services, query_key=query_key, refuse=_refuse) as admission:
        if admission is not None:
            key, counted, connection_id = admission
            await _serve_connection(websocket, services, key, counted, connection_id)


async def _serve_connection(
    websocket: WebSocket, services: Services, key: ApiKeyRecord, counted: bool, connection_id: str
) -> None:
    settings = services.settings
    await websocket.accept(
        headers=[
            (b"x-request-id", connection_id.encode()),
            (b"x-model-version", str(services.model.model_version).encode()),
        ]
    )
    shape = SessionShape(NativeWire(lambda code, message, param: error_envelope(code, message, param=param)))
    session = services.sessions.open(websocket, socket_caller(websocket, key, counted, connection_id), shape)
    await serve_session(
        websocket,
        session,
        session.outbox,
        idle_s=float(settings.websocket.ws_idle_timeout_s),
        handle=lambda raw: _dispatch(websocket, session, raw, key.key_id),
    )
