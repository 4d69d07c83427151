"""Wyoming's shape of a streaming session's events (`services.sessions.wire.SessionWire`), and the writer that puts
them on the TCP connection as Wyoming events.

An utterance's audio goes out as `audio-start`, `audio-chunk`s (16-bit mono PCM) and `audio-stop`; a streamed one
(`synthesize-start` ... `synthesize-stop`) then also says `synthesize-stopped`. A refusal or failure is an `error`
event (text and code); the request it ended gets its `synthesize-stopped` when it was streamed, and then the
connection closes, as Home Assistant waits for the end of the audio or of the connection, not for errors.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.tts import SynthesizeStopped

from services.sessions.utterance import Utterance
from services.sessions.wire import Payload

SAMPLE_WIDTH = 2  # bytes: the `pcm` format is 16-bit little-endian
CHANNELS = 1
# Not a Wyoming event: the writer closes the connection when it reaches this item (after what was queued before it).
CLOSE: dict[str, Any] = {"type": "close-connection"}


def event_payload(event: Event) -> dict[str, Any]:
    """A Wyoming event as the outbox carries it (payload-less events only: audio travels as bytes)."""
    return {"type": event.type, "data": event.data or {}}


def error_payload(code: str, message: str) -> dict[str, Any]:
    return event_payload(Error(text=message, code=code).event())


STOPPED = event_payload(SynthesizeStopped().event())


class WyomingWire:
    """The session's events as Wyoming events. `streamed`: the ids of utterances that came from a
    `synthesize-start` (they owe `synthesize-stopped` after their audio); `refused`: those an error was about."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.streamed: set[str] = set()
        self.refused: set[str] = set()  # utterances an error was about (the handler then ends the request)

    def started(self, u: Utterance) -> list[Payload]:
        return [event_payload(AudioStart(rate=self.rate, width=SAMPLE_WIDTH, channels=CHANNELS).event())]

    def audio(self, u: Utterance, data: bytes) -> list[Payload]:
        return [data]

    def timings(self, u: Utterance, event: Any) -> list[Payload]:
        return []

    def progress(self, u: Utterance) -> list[Payload]:
        return []

    def done(self, u: Utterance) -> list[Payload]:
        stop = event_payload(AudioStop().event())
        return [stop, STOPPED] if u.id in self.streamed else [stop]

    def ended(self, u: Utterance) -> list[Payload]:
        return [STOPPED, CLOSE] if u.id in self.streamed else [CLOSE]

    def error(
        self, code: str, message: str, param: str | None, u: Utterance | None, context_id: str | None
    ) -> Payload:
        if u is not None:
            self.refused.add(u.id)
        return error_payload(code, message)

    def flushed(self, u: Utterance) -> list[Payload]:
        return []

    def cancelled(self, u: Utterance | None) -> list[Payload]:
        return []

    def pong(self, message_id: Any) -> list[Payload]:
        return []


class EventTooLarge(Exception):
    """A client event longer than the connection accepts."""


async def read_event(reader: asyncio.StreamReader, max_bytes: int) -> Event | None:
    """The next client event (None: the client closed its side, or sent something that is no event), refusing one
    whose data or payload is longer than `max_bytes` before reading it: wyoming's own reader takes any length a
    client names, and this port may be open to a whole home network."""
    try:
        line = await reader.readline()  # at most the reader's limit (64 KiB), else ValueError
        if not line:
            return None
        header = json.loads(line)
        data_length = int(header.get("data_length") or 0)
        payload_length = int(header.get("payload_length") or 0)
        if data_length > max_bytes or payload_length > max_bytes:
            raise EventTooLarge
        data = header.get("data") or {}
        if data_length > 0:
            data.update(json.loads(await reader.readexactly(data_length)))
        payload = await reader.readexactly(payload_length) if payload_length > 0 else None
        return Event(type=header["type"], data=data, payload=payload)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class EventWriter:
    """The outbox's transport (`services.sessions.ws_outbox.Transport`): audio bytes become `audio-chunk`s, the
    other items the events they describe; CLOSE closes the connection."""

    def __init__(self, writer: asyncio.StreamWriter, rate: int) -> None:
        self.writer = writer
        self.rate = rate

    async def send_bytes(self, data: bytes) -> None:
        chunk = AudioChunk(rate=self.rate, width=SAMPLE_WIDTH, channels=CHANNELS, audio=data)
        await async_write_event(chunk.event(), self.writer)

    async def send_text(self, data: str) -> None:
        await self.send_item(json.loads(data))

    async def send_item(self, item: dict[str, Any]) -> None:
        if item == CLOSE:
            self.writer.close()
            return
        await async_write_event(Event(type=item["type"], data=item["data"]), self.writer)
