"""`WS /v1/tts/ws`: text in pieces in, audio frames out, on one connection (protocol: the README's WebSocket section).

This module is the protocol edge: the handshake (API key from a header or the `api_key` query parameter, the
per-connection rate check), parsing and validating client messages, the idle timeout, and limits/accounting per
utterance. What happens to the text and audio lives in services/ws_session.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Literal

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from api.access import AccessGrant, AccessServices
from api.delivery import RequestOutcome
from api.errors import ApiError, error_envelope
from api.schemas import (
    MAX_TEXT_CHARS,
    SUPPORTED_RATES,
    AudioFormat,
    SamplingFields,
    check_rate_for_format,
    output_rate_for,
    reject_control_characters,
)
from services.auth import ApiKeyRecord, anonymous_record
from services.credits import CreditError, CreditReservation
from services.rate_limit import LimitExceeded, rate_refusal
from services.synthesis import SamplingOptions, SynthesisError, SynthesisRequest
from services.ws_outbox import ClientStalled, Outbox
from services.ws_session import UtteranceOutcome, WsSession

logger = logging.getLogger("api.ws")
router = APIRouter(tags=["tts"])

WS_PATH = "/v1/tts/ws"
MESSAGE_TYPES = ("start", "text", "flush", "end", "cancel", "ping")
# Fields of the HTTP request that mean nothing here; a one-shot message copied from an HTTP body may carry them.
_HTTP_ONLY_FIELDS = ("stream", "chunking", "normalize_verbose")
_CLOSE_NORMAL, _CLOSE_POLICY, _CLOSE_ERROR = 1000, 1008, 1011


# ---------------------------------------------------------------------------------------------- messages
class StartMessage(SamplingFields):
    """`start`: opens an utterance. Sampling fields as in POST /v1/tts/generate."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["start"] = "start"
    speaker: str | None = Field(None, min_length=1, max_length=128, description="Voice name or alias.")
    voice: str | None = Field(None, min_length=1, max_length=128, description="Same as speaker.")
    format: AudioFormat = Field(
        "pcm", description="pcm (s16le, default) | wav | mp3 | opus | flac | aac | mulaw."
    )
    sample_rate: int | None = Field(
        None, description=f"One of {SUPPORTED_RATES}; default 16000 (mulaw: 8000)."
    )
    output: Literal["16khz", "48khz"] | None = Field(
        None, description="Shorthand for sample_rate 16000 / 48000."
    )
    normalize: bool = Field(True, description="Expand numbers, currency, dates, abbreviations to words.")
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS, description="First text of the utterance.")

    @field_validator("text")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else reject_control_characters(value)

    @field_validator("sample_rate")
    @classmethod
    def _rate(cls, value: int | None, info: ValidationInfo) -> int | None:
        return check_rate_for_format(value, info.data.get("format"))

    @model_validator(mode="after")
    def _consistent(self) -> StartMessage:
        if self.speaker and self.voice and self.speaker != self.voice:
            raise PydanticCustomError(
                "conflict", "'speaker' and 'voice' name different voices; send one of them"
            )
        return self

    def output_rate(self) -> int:
        return output_rate_for(self.format, self.sample_rate, self.output)


class TextMessage(BaseModel):
    """`text`: a piece of the utterance's text, appended verbatim (include the spaces between words)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str = Field(..., max_length=MAX_TEXT_CHARS)

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return reject_control_characters(value)


class ControlMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["flush", "end", "cancel"]


class PingMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["ping"]
    id: str | int | None = Field(None, description="Echoed in the pong.")


_MODELS: dict[str, type[BaseModel]] = {
    "start": StartMessage,
    "text": TextMessage,
    "flush": ControlMessage,
    "end": ControlMessage,
    "cancel": ControlMessage,
    "ping": PingMessage,
}


def _validation_error(exc: ValidationError, kind: str) -> ApiError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or None
    detail = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        accepted = ", ".join(f for f in _MODELS[kind].model_fields if f != "type") or "none besides 'type'"
        return ApiError(
            "VALIDATION_ERROR",
            f"Unknown field '{field}' in a '{kind}' message; accepted: {accepted}.",
            param=field,
        )
    if first.get("type") == "missing":
        return ApiError(
            "VALIDATION_ERROR", f"Field '{field}' is required in a '{kind}' message.", param=field
        )
    code = (
        "TEXT_TOO_LONG" if field == "text" and first.get("type") == "string_too_long" else "VALIDATION_ERROR"
    )
    return ApiError(
        code, f"Invalid '{field}': {detail}" if field else f"Invalid '{kind}' message: {detail}", param=field
    )


def parse_message(raw: str) -> tuple[str, BaseModel]:
    """(kind, validated message). A message without `type` but with `text` is a one-shot request ("oneshot")."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(
            "INVALID_JSON", f"The message is not valid JSON ({exc.msg}); send one JSON object per text frame."
        ) from None
    except RecursionError:  # hostile nesting ([[[[...]]]]): a client error, not a server fault
        raise ApiError("INVALID_JSON", "The message nests too deeply; send a flat JSON object.") from None
    if not isinstance(data, dict):
        raise ApiError(
            "VALIDATION_ERROR", "A message must be a JSON object with a 'type' field.", param="type"
        )
    kind = data.get("type")
    if kind is None and "text" in data:  # the one-shot form: {"text": ..., "speaker": ...}
        for name in _HTTP_ONLY_FIELDS:
            data.pop(name, None)
        try:
            return "oneshot", StartMessage.model_validate(data)
        except ValidationError as exc:
            raise _validation_error(exc, "start") from None
    if kind not in _MODELS:
        shown = "missing" if kind is None else repr(kind)
        raise ApiError(
            "VALIDATION_ERROR",
            f"Unknown message type ({shown}); accepted: {', '.join(MESSAGE_TYPES)}.",
            param="type",
        )
    try:
        return kind, _MODELS[kind].model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, kind) from None


# ---------------------------------------------------------------------------------------------- access
class AccessGate:
    """Limits and accounting for one connection's utterances, on the app's AccessServices.

    Opening the connection counts one request against the key's per-minute rate, and that count covers the
    first utterance; every later utterance counts one more. Each utterance holds a concurrency slot while it
    synthesises. Credits (when enabled) are reserved per text piece and settled once per utterance.
    """

    def __init__(self, access: AccessServices | None, key: ApiKeyRecord, *, connection_counted: bool,
                 client_request_id: str | None = None) -> None:
        self.access = access
        self.key = key
        self.client_request_id = client_request_id  # the handshake's X-Request-ID, kept beside server ids
        self._covered = connection_counted
        self._grants: dict[str, AccessGrant] = {}
        self._reservations: dict[str, list[CreditReservation]] = {}
        self._settled: set[str] = set()  # utterances already accounted: text arriving late is never charged

    @property
    def limits_apply(self) -> bool:
        return self.access is not None and self.access.authenticator is not None

    async def charge_text(self, utterance_id: str, characters: int) -> None:
        if self.access is None or characters <= 0 or utterance_id in self._settled:
            return
        try:
            reservation = await self.access.ledger.reserve(self.key, characters, request_id=utterance_id)
        except CreditError as exc:
            raise SynthesisError(exc.code, exc.message, "text") from None
        if utterance_id in self._settled:  # settled while the reservation was being made: give it back
            await self.access.ledger.release(reservation)
            return
        self._reservations.setdefault(utterance_id, []).append(reservation)

    async def admit(self, utterance_id: str) -> None:
        grant = AccessGrant(key=self.key, services=self.access, client_request_id=self.client_request_id)
        if self.limits_apply:
            assert self.access is not None
            settings = self.access.settings
            if self._covered:
                self._covered = False
            else:
                limit = self.key.rate_limit_per_minute or settings.rate_limit_per_minute
                decision = await self.access.limiter.check_rate(self.key.key_id, limit)
                if not decision.allowed:
                    refusal = rate_refusal(decision)
                    raise SynthesisError(refusal.code, refusal.message)
            try:
                grant.lease = await self.access.limiter.acquire_stream(
                    self.key.key_id, self.key.max_concurrent or settings.max_concurrent_streams
                )
            except LimitExceeded as exc:
                raise SynthesisError(exc.code, exc.message) from None
        self._grants[utterance_id] = grant

    def settle(self, outcome: UtteranceOutcome) -> None:
        uid = outcome.utterance_id
        self._settled.add(uid)
        grant = self._grants.pop(uid, None) or AccessGrant(key=self.key, services=self.access,
                                                           client_request_id=self.client_request_id)
        grant.reservation = _merge(self._reservations.pop(uid, []))
        if self.access is None:
            return
        if not outcome.admitted:  # no synthesis happened: give the credits back, write no record
            self.access.spawn(grant.abandon())
            return
        status = outcome.status if outcome.status in ("completed", "failed") else "disconnected"
        grant.on_complete(
            RequestOutcome(
                request_id=uid,
                status=status,
                error_code=outcome.error.code if outcome.error else None,
                ttfb_ms=outcome.ttfb_ms,
                audio_seconds=outcome.audio_seconds,
                rtf=outcome.rtf,
                wall_seconds=outcome.wall_seconds,
                job=outcome.job,
            )
        )


def _merge(reservations: list[CreditReservation]) -> CreditReservation | None:
    """One reservation standing for several (the ledger settles by key and amount)."""
    held = [r for r in reservations if r.state == "held"]
    if not held:
        return None
    last = held[-1]
    return CreditReservation(last.key_id, last.request_id, sum(r.credits for r in held), last.balance_after)


async def _authenticate(websocket: WebSocket, access: AccessServices | None) -> ApiKeyRecord:
    if access is None:
        return anonymous_record()
    headers = dict(websocket.headers.items())
    query_key = websocket.query_params.get("api_key")
    if query_key and not (headers.get("authorization") or headers.get("x-api-key")):
        headers["x-api-key"] = query_key  # browsers cannot set headers on a WebSocket
    return await access.authenticate(headers, websocket.client.host if websocket.client else None)


async def _check_connection_rate(access: AccessServices | None, key: ApiKeyRecord) -> bool:
    """Count the connection as one request; True when limits apply (the count then covers utterance 1)."""
    if access is None or access.authenticator is None:
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
def _synthesis_request(websocket: WebSocket, msg: StartMessage) -> SynthesisRequest:
    state = websocket.app.state
    settings, runtime = state.settings, state.runtime
    if not runtime.ready:
        raise ApiError(
            "MODEL_NOT_LOADED", f"The model is not ready yet (state: {runtime.state.value}); retry shortly."
        )
    from core.voices import UnknownVoiceError

    try:
        voice = runtime.voices.resolve(msg.speaker or msg.voice or runtime.voices.default_voice_id)
    except UnknownVoiceError as exc:
        raise ApiError("INVALID_SPEAKER", str(exc), param="speaker") from exc
    sampling = SamplingOptions(
        temperature=msg.temperature if msg.temperature is not None else settings.default_temperature,
        top_k=msg.top_k if msg.top_k is not None else settings.default_top_k,
        top_p=msg.top_p if msg.top_p is not None else settings.default_top_p,
        max_tokens=msg.max_tokens if msg.max_tokens is not None else settings.default_max_tokens,
        repetition_penalty=(
            msg.repetition_penalty
            if msg.repetition_penalty is not None
            else settings.default_repetition_penalty
        ),
        seed=msg.seed,
    )
    rate = msg.output_rate()
    return SynthesisRequest(
        request_id="",
        text="",
        voice=voice,
        sampling=sampling,
        audio_format=msg.format,
        sample_rate=rate,
        want_sr=rate > 16000,
        stream=True,
        normalize=msg.normalize,
        chunking=True,
    )


async def _dispatch(websocket: WebSocket, session: WsSession, raw: str) -> None:
    kind, msg = parse_message(raw)
    if kind in ("start", "oneshot"):
        assert isinstance(msg, StartMessage)
        await session.start(_synthesis_request(websocket, msg), text=msg.text, end=kind == "oneshot")
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


async def _read_loop(websocket: WebSocket, session: WsSession, outbox: Outbox, idle_s: float) -> str:
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
            await _dispatch(websocket, session, text)
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
    settings = state.settings
    access: AccessServices | None = getattr(state, "access", None)
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
        await _serve_connection(websocket, state, settings, access, key, counted, connection_id)
    finally:
        left = open_per_key.get(key.key_id, 1) - 1
        if left > 0:
            open_per_key[key.key_id] = left
        else:
            open_per_key.pop(key.key_id, None)


async def _serve_connection(websocket: WebSocket, state: Any, settings: Any, access: AccessServices | None,
                            key: ApiKeyRecord, counted: bool, connection_id: str) -> None:
    await websocket.accept(
        headers=[
            (b"x-request-id", connection_id.encode()),
            (b"x-model-version", str(state.runtime.model_version).encode()),
        ]
    )
    outbox = Outbox(
        websocket, max_items=settings.stream_queue_chunks, send_timeout_s=settings.send_stall_timeout_s
    )
    session = WsSession(
        state.runtime,
        outbox,
        AccessGate(access, key, connection_counted=counted,
                   client_request_id=websocket.scope.get("state", {}).get("client_request_id")),
        connection_id=connection_id,
        max_text_chars=settings.max_text_chars,
        format_error=lambda code, message, param: error_envelope(code, message, param=param),
    )
    idle_s = float(getattr(settings, "ws_idle_timeout_s", 60.0))
    writer = outbox.start()
    reader = asyncio.create_task(_read_loop(websocket, session, outbox, idle_s), name="ws-reader")
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
