"""ElevenLabs' WebSocket routes: `GET /v1/text-to-speech/{voice_id}/multi-stream-input` (up to 5 contexts on one
socket) and `.../stream-input` (one context), over the shared session core (services/sessions/) and connection
driver (api/ws_connection.py). What each message means is in the README's ElevenLabs section."""

from __future__ import annotations

import asyncio
import json
import logging

from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketState

from api.deps import Services, services_of
from api.errors import ApiError
from api.protocols.common import open_session, synthesis_request
from api.protocols.elevenlabs.errors import socket_refusal
from api.protocols.elevenlabs.requests import (
    MAX_CONTEXTS,
    ClientMessage,
    ConnectionParams,
    OutputFormat,
    VoiceSettings,
    parse_client_message,
)
from api.protocols.elevenlabs.responses import ElevenLabsWire
from api.socket_guard import SocketGuard, SocketSlot, too_big
from api.ws_connection import CLOSE_NORMAL, CLOSE_POLICY, ContextError, admitted, close_quietly, serve_session
from processing.lexicon import DictionaryLocator
from services.access import ApiKeyRecord
from services.pipeline.synthesis import SynthesisRequest
from services.sessions.ws_outbox import Outbox
from services.sessions.ws_session import WsSession

logger = logging.getLogger("api.dialects.elevenlabs")  # the name logs have always carried
router = APIRouter(tags=["elevenlabs"])


async def _refuse(websocket: WebSocket, err: ApiError) -> None:
    """ElevenLabs answers a bad connection in-band: one error message, then close 1008 (policy)."""
    if websocket.client_state == WebSocketState.CONNECTING:
        await websocket.accept()
    await websocket.send_text(socket_refusal(err, CLOSE_POLICY))
    await close_quietly(websocket, CLOSE_POLICY, err.code)


class _Connection:
    """One socket's dialect state: the voice, the output format, and how client messages map to the session."""

    def __init__(
        self,
        services: Services,
        session: WsSession,
        key: ApiKeyRecord,
        voice_id: str,
        params: ConnectionParams,
        output: OutputFormat,
        *,
        multi: bool,
        websocket: WebSocket | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.services, self.session, self.key = services, session, key
        self.voice_id, self.params, self.output, self.multi = voice_id, params, output, multi
        self.unflushed: set[str | None] = set()  # contexts with text sent since their last flush
        self.websocket, self.outbox = websocket, outbox
        self.closing: asyncio.Task[None] | None = (
            None  # stream-input: closes the socket after the final message
        )
        # The latest `pronunciation_dictionary_locators` sent: the dictionaries of the contexts opened from then on.
        self.dictionaries: tuple[DictionaryLocator, ...] = ()

    async def synthesis_request(
        self, settings: VoiceSettings | None = None, *, admit: bool = True
    ) -> SynthesisRequest:
        """A context's request; its first message's `voice_settings` give the speed and the voice attributes."""
        speed = settings.speed if settings else None
        return await synthesis_request(
            self.services,
            self.key,
            voice=self.voice_id,
            audio_format=self.output.audio_format,
            sample_rate=self.output.sample_rate,
            normalize=self.params.normalize,
            speed=speed,
            voice_attributes=settings.voice_attributes() if settings else None,
            voice_field="voice_id",
            timestamps="character",  # every audio message carries its alignment
            admit=admit,
            dictionaries=self.dictionaries if admit else (),
        )

    async def handle(self, raw: str) -> str | None:
        msg = parse_client_message(raw)
        if msg.close_socket:  # cancels every context at once (LiveKit interrupts this way)
            await self.session.cancel(every=True, quiet=True)
            return "close"
        cid = msg.context_id if self.multi else None
        try:
            if (
                cid not in self.session.refused
            ):  # a refused context's error and isFinal went out: the rest is dropped
                await self._context_message(msg, cid)
        except ApiError as err:
            raise ContextError(
                err.code, err.message, context_id=cid, param=err.param, closes=msg.close_context
            ) from None
        if msg.close_context:  # the client ended the context (refused or not): its id may open a new one
            self.session.refused.forget(cid)
        return None

    async def _context_message(self, msg: ClientMessage, cid: str | None) -> None:
        session, text = self.session, msg.text
        if msg.pronunciation_dictionary_locators is not None:
            self.dictionaries = msg.locators()
        u = session.utterance(cid)
        if msg.close_context and msg.immediate:
            await session.cancel(context_id=cid, every=False)
            return
        if msg.close_context and not (text or msg.flush) and cid in self.unflushed and u is not None:
            # Closed with text sent since the last flush: LiveKit's stream closed before its input ended (a
            # barge-in). A context that is to be finished is flushed first (Pipecat, LiveKit's normal end).
            self.unflushed.discard(cid)
            await session.cancel(context_id=cid, every=False, reason="abandoned")
            return
        if text == "" and not msg.flush and not msg.close_context:
            if not self.multi and u is not None:
                await session.end(context_id=cid)  # stream-input: "" ends the input
                self._close_after_final()
            return  # multi-stream-input: a keep-alive, which ends nothing
        if u is None and text:
            if session.unfinished(cid) is not None:
                raise ApiError(
                    "VALIDATION_ERROR",
                    f"Context '{cid}' was closed; open a new context_id.",
                    param="context_id",
                )
            await session.supersede(cid)  # the reply this turn interrupts stops before admission counts it
            u = await session.start(await self.synthesis_request(msg.voice_settings), context_id=cid)
            if u is None:
                return  # refused (a sixth context): the session answered
            u.read_ssml(self.params.enable_ssml_parsing)
        if u is None:
            if msg.close_context:
                if session.unfinished(cid) is not None:
                    # Closed already and still generating: Pipecat closes an interrupted context again at a
                    # barge-in (its end-of-turn close went out earlier), so the rest of the reply is unwanted.
                    await session.cancel(context_id=cid, every=False, reason="interrupted")
                return  # never opened, or finished (ElevenLabs ignores it too)
            if msg.flush:
                raise ApiError("VALIDATION_ERROR", f"No open context '{cid}'.", param="context_id")
            return
        if text and (text.strip() or u.characters):  # the opener " " carries no speech
            await session.text(text, context_id=cid)
            if cid in session.refused:  # the text was refused (credits): the error and isFinal ended it
                return
            self.unflushed.add(cid)
            if self.params.auto_mode and text.strip():
                # auto_mode: each message is a complete sentence or phrase (ElevenLabs' documentation), spoken at
                # once. Only a flush or close the client sent marks the context finished (`unflushed`).
                await session.flush(context_id=cid, quiet=True)
        if msg.flush or msg.try_trigger_generation or msg.close_context:
            self.unflushed.discard(cid)
        if msg.flush or msg.try_trigger_generation:
            await session.flush(context_id=cid, quiet=True)
        if msg.close_context:
            await session.end(context_id=cid)  # finish what was sent, then isFinal
            if not self.multi:
                self._close_after_final()

    def _close_after_final(self) -> None:
        """stream-input speaks one text: once its isFinal is out, the socket closes (1000), as ElevenLabs does."""
        if self.closing is None and self.websocket is not None and self.outbox is not None:
            self.closing = asyncio.create_task(self._close_when_done(), name="stream-input-close")

    async def _close_when_done(self) -> None:
        assert self.websocket is not None and self.outbox is not None
        await self.session.finished(None)
        await self.outbox.drain(timeout_s=5.0)
        await close_quietly(self.websocket, CLOSE_NORMAL, "done")


async def _serve(websocket: WebSocket, voice_id: str, *, multi: bool) -> None:
    services = services_of(websocket)
    try:
        params = ConnectionParams.model_validate(dict(websocket.query_params.items()))
        output = params.output()
    except ValidationError as exc:
        invalid = exc.errors()[0]
        field = ".".join(str(p) for p in invalid.get("loc", ()))
        await _refuse(
            websocket, ApiError("VALIDATION_ERROR", f"Invalid '{field}': {invalid.get('msg')}", param=field)
        )
        return
    except ApiError as err:
        await _refuse(websocket, err)
        return
    guard = SocketGuard.of(websocket)
    try:  # a place under the per-address caps before anything is read (a key in the first message comes later)
        slot = guard.enter(websocket)
    except ApiError as err:
        await _refuse(websocket, err)
        return
    with slot:
        first = None
        if services.access.authenticator is not None and not _key_sent(websocket, params):
            # Older clients' key is in the first message: it must come within the auth deadline.
            first = await _first_message(
                websocket,
                guard.auth_wait_s(float(params.inactivity_timeout)),
                services.settings.websocket.ws_max_message_bytes,
            )
            if first is None:
                return
        await _serve_admitted(websocket, services, voice_id, params, output, slot, first, multi=multi)


async def _serve_admitted(
    websocket: WebSocket,
    services: Services,
    voice_id: str,
    params: ConnectionParams,
    output: OutputFormat,
    slot: SocketSlot,
    first: str | None,
    *,
    multi: bool,
) -> None:
    query_key = params.xi_api_key or (_message_key(first) if first is not None else None)
    async with admitted(websocket, services, query_key=query_key, refuse=_refuse, slot=slot) as admission:
        if admission is None:
            return
        session, outbox = await open_session(
            websocket,
            services,
            admission,
            ElevenLabsWire(absolute_times=params.sync_alignment),
            max_contexts=MAX_CONTEXTS if multi else 4,
            multi=multi,
            dialect="elevenlabs",
        )
        key = admission.key
        conn = _Connection(
            services, session, key, voice_id, params, output, multi=multi, websocket=websocket, outbox=outbox
        )
        try:  # an unknown voice is refused before any text: error, then close 1008 (no stream starts: not admitted)
            await conn.synthesis_request(None, admit=False)
        except ApiError as err:
            await websocket.send_text(socket_refusal(err, CLOSE_POLICY))
            await close_quietly(websocket, CLOSE_POLICY, err.code)
            return
        await serve_session(
            websocket,
            session,
            outbox,
            idle_s=float(params.inactivity_timeout),
            handle=conn.handle,
            dialect="elevenlabs",
            first=first,
        )


def _key_sent(websocket: WebSocket, params: ConnectionParams) -> bool:
    headers = websocket.headers
    return bool(
        params.xi_api_key
        or headers.get("authorization")
        or headers.get("x-api-key")
        or headers.get("xi-api-key")
    )


async def _first_message(websocket: WebSocket, timeout_s: float, max_chars: int) -> str | None:
    """No key in the headers or query: accept and read the first message (older clients send `xi_api_key` in
    it). None when the client left, sent nothing within `timeout_s` or sent too much to parse before a key (it
    was told why)."""
    await websocket.accept()
    try:
        message = await asyncio.wait_for(websocket.receive(), timeout=timeout_s)
    except TimeoutError:
        await _refuse(
            websocket,
            ApiError(
                "INVALID_API_KEY",
                f"The API key did not come within {timeout_s:g} s of "
                "connecting; "
                "send it in the xi-api-key header, the xi_api_key query parameter or "
                "the first message.",
            ),
        )
        return None
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text") or ""
    refusal = too_big(len(text), max_chars)
    if refusal is not None:
        await _refuse(websocket, refusal)
        return None
    return text


def _message_key(raw: str) -> str | None:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # ValueError: malformed, or an integer over Python's digit limit
        return None
    key = data.get("xi_api_key") if isinstance(data, dict) else None
    return key if isinstance(key, str) and key else None


@router.websocket("/v1/text-to-speech/{voice_id}/multi-stream-input")
async def multi_stream_input(websocket: WebSocket, voice_id: str) -> None:
    await _serve(websocket, voice_id, multi=True)


@router.websocket("/v1/text-to-speech/{voice_id}/stream-input")
async def stream_input(websocket: WebSocket, voice_id: str) -> None:
    await _serve(websocket, voice_id, multi=False)
