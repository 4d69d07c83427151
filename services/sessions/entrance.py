"""The one way a socket transport opens a streaming session, as HTTP opens `SpeechService.open`.

Every socket front end (our WebSocket, the ElevenLabs and Cartesia dialects, the Wyoming server) only parses and
writes its own wire format; what a session is made of (the outbox, the access gate, the session with continuity's
hook) and how a context's settings become a `SynthesisRequest` (ready and admitted, the voice, the key's
pronunciation dictionaries) are decided here, once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

from services.access import AccessGate, AccessServices, ApiKeyRecord
from services.pipeline.segment_voices import SpeakingVoices
from services.pipeline.speech import SpeechRequest, SpeechService, stretch_for
from services.pipeline.synthesis import SynthesisRequest
from services.sessions.wire import SessionWire
from services.sessions.ws_outbox import Outbox
from services.sessions.ws_outbox import Transport as Sink
from services.sessions.ws_session import MAX_QUEUED_UTTERANCES, WsSession
from services.usage.accounting import Transport


@dataclass(frozen=True)
class SessionShape:
    """How one transport's sessions behave: its dialect and wire format, and how its contexts run."""

    wire: SessionWire  # the transport's events on its wire (api/protocols/*/responses.py)
    dialect: str = "native"
    transport: Transport = "websocket"  # what the request log records as carrying the utterances
    serial: bool = True  # contexts one after another; False: side by side
    max_open: int = 1
    max_unfinished: int = MAX_QUEUED_UTTERANCES
    supersede_after_s: float | None = None  # a new context stops earlier ones silent this long (None: never)


@dataclass(frozen=True)
class SocketCaller:
    """Who opened the connection: the key it was admitted with, and how the request log names it."""

    key: ApiKeyRecord
    connection_id: str
    counted: bool = False  # the connection holds one of the key's concurrency places
    client_request_id: str | None = None


class SessionEntrance:
    """Opens sessions and plans their contexts for every socket transport."""

    def __init__(self, speech: SpeechService, access: AccessServices) -> None:
        self.speech = speech
        self.access = access
        self.settings = speech.settings

    def open(self, sink: Sink, caller: SocketCaller, shape: SessionShape) -> WsSession:
        """A session writing to `sink` (a WebSocket, or a transport's own writer) through one bounded outbox."""
        stream = self.settings.stream
        outbox = Outbox(
            sink, max_items=stream.stream_queue_chunks, send_timeout_s=stream.send_stall_timeout_s
        )
        gate = AccessGate(
            self.access,
            caller.key,
            connection_counted=caller.counted,
            client_request_id=caller.client_request_id,
        )
        continuity = self.speech.continuity  # remembers each context's job (stitching, keep a voice)
        return WsSession(
            self.speech.models,
            outbox,
            gate,
            connection_id=caller.connection_id,
            max_text_chars=self.settings.limits.max_text_chars,
            wire=shape.wire,
            serial=shape.serial,
            max_open=shape.max_open,
            max_unfinished=shape.max_unfinished,
            on_job=None if continuity is None else partial(continuity.track, key_id=caller.key.key_id),
            supersede_after_s=shape.supersede_after_s,
            dialect=shape.dialect,
            transport=shape.transport,
        )

    async def context(
        self, speech: SpeechRequest, key_id: str | None, *, admit: bool = True
    ) -> SynthesisRequest:
        """A context's settings as HTTP's request would have them (its text arrives later): the server ready and
        the stream admitted, the voice resolved (this key's custom voices included), the key's pronunciation
        dictionaries read. Raises ServiceError with the public code. `admit=False`: a check at connect that starts
        no stream, so admission neither counts nor refuses it."""
        await self.speech.check_available(
            admit=admit, key_id=key_id, super_resolved=speech.wants_bandwidth_extension
        )
        voice = await self.speech.voice(speech, key_id)
        voices = SpeakingVoices(voice, time_stretch=stretch_for(speech, voice))
        if speech.dictionaries:
            speech = replace(speech, lexicon=await self.speech.lexicon(speech, key_id))
        return self.speech.synthesis_request(speech, voices, request_id="", key_id=key_id)
