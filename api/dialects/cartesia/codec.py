"""Cartesia's server events over the session core. Every event has both a `type` (Pipecat switches on it) and the
keys LiveKit looks for (`data`, then `done`, then `word_timestamps`), and always a `context_id` (Pipecat indexes
it). `timestamps` events go before the audio they describe, in seconds from the start of the context."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from api.errors import ERROR_CODES
from services.sessions.codec import Payload
from services.sessions.utterance import Utterance


class CartesiaCodec:
    def started(self, u: Utterance) -> list[Payload]:
        return []

    def audio(self, u: Utterance, data: bytes) -> list[Payload]:
        if u.codec_state.get("f32"):  # pcm_f32le from our s16le
            data = (np.frombuffer(data, "<i2").astype("<f4") / 32768.0).astype("<f4").tobytes()
        return [{"type": "chunk", "data": base64.b64encode(data).decode("ascii"), "done": False,
                 "status_code": 206, "step_time": 0.0, "context_id": u.context_id}]

    def timings(self, u: Utterance, event: Any) -> list[Payload]:
        if not u.codec_state.get("timestamps") or not event.words:
            return []
        words = event.words
        return [{"type": "timestamps", "done": False, "status_code": 206, "context_id": u.context_id,
                 "word_timestamps": {"words": [w.text for w in words], "start": [w.start for w in words],
                                     "end": [w.end for w in words]}}]

    def progress(self, u: Utterance) -> list[Payload]:
        return []

    def done(self, u: Utterance) -> list[Payload]:
        return [{"type": "done", "done": True, "status_code": 200, "context_id": u.context_id}]

    def ended(self, u: Utterance) -> list[Payload]:
        return []  # the error already says done

    def error(self, code: str, message: str, param: str | None, u: Utterance | None,
              context_id: str | None) -> Payload:
        cid = u.context_id if u is not None else context_id
        return {"type": "error", "done": True, "status_code": ERROR_CODES.get(code, (500, ""))[0], "error": message,
                "code": code, "context_id": cid}

    def flushed(self, u: Utterance) -> list[Payload]:
        count = u.codec_state["flushes"] = u.codec_state.get("flushes", 0) + 1
        return [{"type": "flush_done", "flush_done": True, "flush_id": count, "done": False, "status_code": 206,
                 "context_id": u.context_id}]

    def cancelled(self, u: Utterance | None) -> list[Payload]:
        return []

    def pong(self, message_id: Any) -> list[Payload]:
        return []
