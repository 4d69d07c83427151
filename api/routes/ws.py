"""`WS /v1/tts/ws`: text in pieces in, audio frames out, on one connection (protocol: the README's WebSocket section).

This module is the protocol edge: the handshake (API key from a header or the `api_key` query parameter, the
per-connection rate check), parsing and validating client messages, the idle timeout, and limits/accounting per
utterance. What happens to the text and audio lives in services/sessions/ws_session.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from functools import partial

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse

from api.deps import Services, services_of
from api.errors import ApiError, error_envelope
from api.ws_messages import PingMessage, StartMessage, TextMessage, parse_message
from services.access import AccessGate, AccessServices, ApiKeyRecord
from services.access.rate_limit import rate_refusal
from services.errors import ServiceError
from services.pipeline.synthesis import SynthesisRequest
from services.sessions.ws_outbox import ClientStalled, Outbox
from services.sessions.ws_session import WsSession

logger = logging.getLogger("api.ws")
router = APIRouter(tags=["tts"])

WS_PATH = "/v1/tts/ws"
_CLOSE_NORMAL, _CLOSE_POLICY, _CLOSE_ERROR = 1000, 1008, 1011


# ---------------------------------------------------------------------------------------------- access
async def _authenticate(websocket: WebSocket, access: AccessServices) -> ApiKeyRecord:
    headers = dict(websocket.headers.items())
    query_key = websocket.query_params.get("api_key")
    if query_key and not (headers.get("authorization") or headers.get("x-api-key")):
        headers["x-api-key"] = query_key  # browsers cannot set headers on a WebSocket
    try:
        return await access.authenticate(headers, websocket.client.host if websocket.client else None)
    except ServiceError as exc:
        raise ApiError.from_service(exc) from None


async def _check_connection_rate(access: AccessServices, key: ApiKeyRecord) -> bool:
    """Count the connection as one request; True when limits apply (the count then covers utterance 1)."""
    if access.authenticator is None:
        return False
    limit = key.rate_limit_per_minute or access.settings.rate_limit_per_minute
    decision = await access.limiter.check_rate(key.key_id, limit)
    if not decision.allowed:
        refusal = rate_refusal(decision)
        raise ApiError(refusal.code, refusal.message, headers=decision.headers())
    return True


async def _refuse(websocket: WebSocket, error: ApiError) -> None:
    """Refuse the handshake with the HTTP status and envelope an HTTP request would get."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(
            JSONResponse(error.envelope(), error.status, headers=error.headers)
        )
        return
    await websocket.accept()  # no denial extension: say why in-band, then close
    await websocket.send_text(json.dumps({"type": "error", **error.envelope(), "utterance_id": None}))
    await websocket.close(_CLOSE_POLICY, error.code)


# ---------------------------------------------------------------------------------------------- connection
async def _synthesis_request(services: Services, msg: StartMessage, key_id: str) -> SynthesisRequest:
    """The same gate, voice resolution (custom voices of this key included) and defaults as HTTP (services.pipeline.speech);
    text comes in pieces later."""
    speech = msg.to_speech_request(services.settings)
    try:
        services.speech.check_available()
        voice = await services.speech.voice(speech, key_id)
    except ServiceError as exc:
        raise ApiError.from_service(exc) from None
    return services.speech.synthesis_request(speech, voice, request_id="")


async def _dispatch(websocket: WebSocket, session: WsSession, raw: str, key_id: str) -> None:
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


async def _read_loop(websocket: WebSocket, session: WsSession, outbox: Outbox, idle_s: float, key_id: str) -> str:
    """Handle client messages until the client leaves ("disconnect") or stays silent too long ("idle")."""
    while True:
        silent = time.monotonic() - outbox.last_activity
        if silent >= idle_s and not session.working:
            return "idle"
        wait_s = idle_s - silent if silent < idle_s else idle_s
        try:
            message = await asyncio.wait_for(websocket.receive(), timeout=wait_s)
        except TimeoutError:
            continue
        if message["type"] == "websocket.disconnect":
            return "disconnect"
        outbox.touch()
        text = message.get("text")
        try:
            if text is None:
                raise ApiError(
                    "VALIDATION_ERROR",
                    "Binary messages are not accepted; send JSON text frames.",
                    param="type",
                )
            await _dispatch(websocket, session, text, key_id)
        except ApiError as err:
            await session.reject(err.code, err.message, err.param)
        except Exception:  # noqa: BLE001 - a bug handling one message must not end the connection
            logger.exception("websocket message handling failed")
            await session.reject("INTERNAL_ERROR", "An internal error occurred; it has been logged.")


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await asyncio.wait_for(websocket.close(code, reason), timeout=2.0)
    except Exception:  # noqa: BLE001 - the socket may already be gone
        pass


@router.websocket(WS_PATH)
async def tts_websocket(websocket: WebSocket) -> None:
    state = websocket.app.state
    services = services_of(websocket)
    settings, access = services.settings, services.access
    connection_id = websocket.scope.get("state", {}).get("request_id") or f"ws{id(websocket):x}"
    open_per_key: dict[str, int] | None = getattr(state, "ws_open_per_key", None)
    if open_per_key is None:
        open_per_key = state.ws_open_per_key = {}
    try:
        key = await _authenticate(websocket, access)
        cap = settings.ws_max_connections_per_key
        if cap and open_per_key.get(key.key_id, 0) >= cap:
            raise ApiError("TOO_MANY_CONCURRENT_REQUESTS", f"At most {cap} WebSocket connections per API key are "
                           "open at once on this server; close one or reuse it (it carries any number of "
                           "utterances).", headers={"Retry-After": "5"})
        counted = await _check_connection_rate(access, key)
    except ApiError as err:
        logger.info("websocket refused", extra={"error_code": err.code})
        await _refuse(websocket, err)
        return
    open_per_key[key.key_id] = open_per_key.get(key.key_id, 0) + 1
    try:
        await _serve_connection(websocket, services, key, counted, connection_id)
    finally:
        left = open_per_key.get(key.key_id, 1) - 1
        if left > 0:
            open_per_key[key.key_id] = left
        else:
            open_per_key.pop(key.key_id, None)


async def _serve_connection(websocket: WebSocket, services: Services, key: ApiKeyRecord, counted: bool,
                            connection_id: str) -> None:
    settings, access = services.settings, services.access
    await websocket.accept(
        headers=[
            (b"x-request-id", connection_id.encode()),
            (b"x-model-version", str(services.runtime.model_version).encode()),
        ]
    )
    outbox = Outbox(
        websocket, max_items=settings.stream_queue_chunks, send_timeout_s=settings.send_stall_timeout_s
    )
    session = WsSession(
        services.runtime,
        outbox,
        AccessGate(access, key, connection_counted=counted,
                   client_request_id=websocket.scope.get("state", {}).get("client_request_id")),
        connection_id=connection_id,
        max_text_chars=settings.max_text_chars,
        format_error=lambda code, message, param: error_envelope(code, message, param=param),
        on_job=None if services.speech.continuity is None else partial(services.speech.continuity.track,
                                                                        key_id=key.key_id),
    )
    idle_s = float(settings.ws_idle_timeout_s)
    writer = outbox.start()
    reader = asyncio.create_task(_read_loop(websocket, session, outbox, idle_s, key.key_id), name="ws-reader")
    logger.info("websocket_opened", extra={"event": "websocket_opened", "key_id": key.key_id})
    ending = "disconnect"
    try:
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        if reader.done() and not reader.cancelled():
            if reader.exception() is not None:
                logger.error("websocket reader failed", exc_info=reader.exception())
                ending = "server_error"
            else:
                ending = reader.result()
        elif writer.done():
            ending = "stalled" if isinstance(outbox.failure, ClientStalled) else "send_failed"
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await session.close()  # aborts generation of anything unfinished
        if ending == "idle":
            await session.reject("IDLE_TIMEOUT", f"No messages for {idle_s:g} s; closing the connection.")
            await outbox.drain(timeout_s=2.0)
        await outbox.close()
        if ending == "idle":
            await _close(websocket, _CLOSE_NORMAL, "idle timeout")
        elif ending == "stalled":
            await _close(websocket, _CLOSE_POLICY, "client stopped reading")
        elif ending == "server_error":
            await _close(websocket, _CLOSE_ERROR, "internal error")
        logger.info(
            "websocket_closed",
            extra={"event": "websocket_closed", "reason": ending, "utterances": session.utterance_count},
        )
