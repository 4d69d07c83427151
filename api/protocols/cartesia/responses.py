"""Cartesia's server events over the session core. Every event has both a `type` (Pipecat switches on it) and the
keys LiveKit looks for (`data`, then `done`, then `word_timestamps`), and always a `context_id` (Pipecat indexes
it). `timestamps` events carry words as the aligner settles them, in seconds from the start of the context: after the
audio that holds them (timing never holds audio), each before its word has finished playing."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from api.errors import ERROR_CODES
from api.protocols.cartesia.errors import error_code
from api.protocols.http_errors import status_title
from services.sessions.utterance import Utterance
from services.sessions.wire import Payload

Event = dict[str, Any]  # one Cartesia server event (JSON); every one of them is an object


def f32(data: bytes) -> bytes:
    """pcm_f32le from our s16le."""
    return (np.frombuffer(data, "<i2").astype("<f4") / 32768.0).astype("<f4").tobytes()


def chunk_event(data: bytes, context_id: str | None) -> Event:
    return {
        "type": "chunk",
        "data": base64.b64encode(data).decode("ascii"),
        "done": False,
        "status_code": 206,
        "step_time": 0.0,
        "context_id": context_id,
    }


# A word ending a sentence carries the space after it. LiveKit's client finds each word in the sentences it sent
# ("now. " with its trailing space) and keeps the space after a sentence's last word only when its next sentence was
# sent already; words settled sooner than that ("now." before "This …" went out) read "now.This" in its transcript.
SENTENCE_ENDS = ".!?"


def word_text(text: str) -> str:
    return f"{text} " if text[-1:] in SENTENCE_ENDS else text


def timestamps_event(words: Any, context_id: str | None, *, spaced: bool = False) -> Event:
    """`words`: WordSpan items, seconds from the start of the context; `spaced`: sentence ends carry their space (the
    socket, where LiveKit assembles its transcript from them)."""
    return {
        "type": "timestamps",
        "done": False,
        "status_code": 206,
        "context_id": context_id,
        "word_timestamps": {
            "words": [word_text(w.text) if spaced else w.text for w in words],
            "start": [w.start for w in words],
            "end": [w.end for w in words],
        },
    }


def done_event(context_id: str | None) -> Event:
    return {"type": "done", "done": True, "status_code": 200, "context_id": context_id}


def error_event(code: str, message: str, context_id: str | None) -> Event:
    """Cartesia's documented fields (`error_code`, `title`, `message`) and the older `error` string; `code` is ours.
    `done` is false, unlike Cartesia's: LiveKit's plugin reads `done` before `type`, so an error saying done ended its
    turn as one with no audio and the reason was lost; Pipecat and Cartesia's SDK end the context on `type` alone."""
    status = ERROR_CODES.get(code, (500, ""))[0]
    return {
        "type": "error",
        "done": False,
        "status_code": status,
        "error_code": error_code(code),
        "title": status_title(status),
        "message": message,
        "error": message,
        "code": code,
        "context_id": context_id,
    }


class CartesiaWire:
    def started(self, u: Utterance) -> list[Payload]:
        return []

    def audio(self, u: Utterance, data: bytes) -> list[Payload]:
        return [chunk_event(f32(data) if u.wire_state.get("f32") else data, u.context_id)]

    def timings(self, u: Utterance, event: Any) -> list[Payload]:
        words = event.normalized if u.wire_state.get("normalized") else event.words
        if not u.wire_state.get("timestamps") or not words:
            return []
        return [timestamps_event(words, u.context_id, spaced=True)]

    def progress(self, u: Utterance) -> list[Payload]:
        return []

    def done(self, u: Utterance) -> list[Payload]:
        return [done_event(u.context_id)]

    def ended(self, u: Utterance) -> list[Payload]:
        return []  # every client of this wire ends a context at its `error` (by `type`)

    def error(
        self, code: str, message: str, param: str | None, u: Utterance | None, context_id: str | None
    ) -> Payload:
        return error_event(code, message, u.context_id if u is not None else context_id)

    def flushed(self, u: Utterance) -> list[Payload]:
        count = u.wire_state["flushes"] = u.wire_state.get("flushes", 0) + 1
        return [
            {
                "type": "flush_done",
                "flush_done": True,
                "flush_id": count,
                "done": False,
                "status_code": 206,
                "context_id": u.context_id,
            }
        ]

    def cancelled(self, u: Utterance | None) -> list[Payload]:
        return []

    def pong(self, message_id: Any) -> list[Payload]:
        return []
