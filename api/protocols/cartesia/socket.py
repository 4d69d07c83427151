"""Cartesia's WebSocket route `GET /tts/websocket` over the shared session core. A `context_id` is one
continuation chain: its first message sets voice, output format and timestamps; `continue: false` ends its input;
`{"context_id", "cancel": true}` stops it. Text without a sentence end is spoken `max_buffer_delay_ms` (default
3000) after its first piece, without a flush (the timer is the session core's: `Utterance.buffer_delay_s`). An idle
socket lives `IDLE_TIMEOUT_S` (Cartesia's 5 minutes).
Auth: `X-API-Key` or `Authorization: Bearer` headers, or `?api_key=`; `Cartesia-Version` (header or
`cartesia_version` query) is accepted."""

from __future__ import annotations

import json

from fastapi import APIRouter, WebSocket

from api.deps import Services, services_of
from api.errors import ApiError
from api.protocols.cartesia.requests import (
    DEFAULT_MAX_BUFFER_DELAY_MS,
    IDLE_TIMEOUT_S,
    MAX_CONTEXTS,
    ClientMessage,
    parse_client_message,
)
from api.protocols.cartesia.responses import CartesiaWire, chunk_event, done_event
from api.protocols.common import open_session, synthesis_request
from api.ws_connection import CLOSE_POLICY, ContextError, admitted, close_quietly, serve_session
from services.access import ApiKeyRecord
from services.sessions.ws_session import WsSession

router = APIRouter(tags=["cartesia"])


async def _refuse(websocket: WebSocket, err: ApiError) -> None:
    await websocket.accept()
    await websocket.send_text(json.dumps(CartesiaWire().error(err.code, err.message, err.param, None, None)))
    await close_quietly(websocket, CLOSE_POLICY, err.code)


class _Connection:
    def __init__(self, services: Services, session: WsSession, key: ApiKeyRecord) -> None:
        self.services, self.session, self.key = services, session, key

    async def handle(self, raw: str) -> str | None:
        msg = parse_client_message(raw)
        cid = msg.context_id
        closes = msg.cancel or not msg.continue_
        try:
            if cid not in self.session.refused:  # a refused context's error went out: the rest is dropped
                await self._message(msg, cid)
            elif closes and not msg.cancel:
                # The context's final message is answered with `done` (a client that ends contexts on `done` alone
                # waits for it; LiveKit raised at the error already). Before it, a chunk with no audio in it: Pipecat counts a context that ends without an audio frame as a
                # silent turn (an error of its own beside the refusal's, and three in a row disable the service),
                # and an empty frame plays nothing; LiveKit skips empty `data` and ends at its `done`.
                await self.session.outbox.reply({**chunk_event(b"", cid), "done": True})
                await self.session.outbox.reply(done_event(cid))
        except ApiError as err:
            raise ContextError(
                err.code, err.message, context_id=cid, param=err.param, closes=closes
            ) from None
        if closes:  # the client ended the context (refused or not): its id may open a new one
            self.session.refused.forget(cid)
        return None

    async def _message(self, msg: ClientMessage, cid: str | None) -> None:
        session = self.session
        if msg.cancel:
            await session.cancel(context_id=cid, every=False, quiet=True)
            return
        u = session.utterance(cid)
        if u is None:
            if session.unfinished(cid) is not None:
                raise ApiError(
                    "VALIDATION_ERROR",
                    f"Context '{cid}' has ended its input; use a new context_id.",
                    param="context_id",
                )
            if msg.voice is None:
                raise ApiError(
                    "VALIDATION_ERROR",
                    'The first message of a context needs \'voice\' ({"mode": "id", "id": ...}).',
                    param="voice",
                )
            output = msg.output_format
            if output is None:
                raise ApiError(
                    "VALIDATION_ERROR",
                    "The first message of a context needs 'output_format'.",
                    param="output_format",
                )
            await session.supersede(cid)  # the reply this turn interrupts stops before admission counts it
            request = await synthesis_request(
                self.services,
                self.key,
                voice=msg.voice.id,
                voice_attributes=msg.voice.attributes(),
                audio_format=output.audio_format,
                sample_rate=output.rate,
                speed=msg.wanted_speed(),
                voice_field="voice.id",
                timestamps="word" if msg.add_timestamps else None,
            )
            u = await session.start(request, context_id=cid)
            if u is None:
                return  # refused (too many contexts): the session answered
            u.wire_state.update(
                f32=output.encoding == "pcm_f32le",
                timestamps=msg.add_timestamps,
                normalized=msg.use_normalized_timestamps,
            )
            u.buffer_delay_s = DEFAULT_MAX_BUFFER_DELAY_MS / 1000
            # Cartesia reads its tags (`<break time="1s"/>`, `<spell>`) in every transcript: so does the SSML reader
            # (processing/ssml.py), with break silence per key per minute.
            u.read_ssml(True)
        if msg.max_buffer_delay_ms is not None:  # the latest message's value holds for the context
            u.buffer_delay_s = msg.max_buffer_delay_ms / 1000
        if msg.transcript:
            await session.text(msg.transcript, context_id=cid)
            if (
                cid in session.refused
            ):  # the text was refused (credits): the error ended it, nothing more to answer
                return
        if msg.flush:
            await session.flush(context_id=cid)
        elif msg.max_buffer_delay_ms == 0 and msg.continue_:
            await session.flush(context_id=cid, quiet=True)  # "generate what you have now"
        if not msg.continue_:
            await session.end(context_id=cid)


@router.websocket("/tts/websocket")
async def tts_websocket(websocket: WebSocket) -> None:
    services = services_of(websocket)
    async with admitted(
        websocket, services, query_key=websocket.query_params.get("api_key"), refuse=_refuse
    ) as admission:
        if admission is None:
            return
        session, outbox = await open_session(
            websocket, services, admission, CartesiaWire(), max_contexts=MAX_CONTEXTS, dialect="cartesia"
        )
        conn = _Connection(services, session, admission.key)
        await serve_session(
            websocket, session, outbox, idle_s=IDLE_TIMEOUT_S, handle=conn.handle, dialect="cartesia"
        )
