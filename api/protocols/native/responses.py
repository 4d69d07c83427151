"""Our WebSocket's outgoing events (README, WebSocket section): `NativeWire`, the `SessionWire` of
`/v1/tts/ws` (services/sessions/wire.py says what each event is)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from services.sessions.utterance import Utterance
from services.sessions.wire import Payload

ErrorFormatter = Callable[[str, str, "str | None"], dict[str, Any]]  # (code, message, param) -> envelope


def plain_error(code: str, message: str, param: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "param": param, "code": code}}


class NativeWire:
    """Our protocol: `started`, binary audio frames, `progress`, `done` with the HTTP headers' figures, `error`
    with the HTTP envelope, `flushed`, `cancelled`, `pong`."""

    def __init__(self, format_error: ErrorFormatter = plain_error) -> None:
        self.format_error = format_error

    def started(self, u: Utterance) -> list[Payload]:
        return [self._started(u)]

    def audio(self, u: Utterance, data: bytes) -> list[Payload]:
        return [data]

    def timings(self, u: Utterance, event: Any) -> list[Payload]:
        return [{"type": "timestamps", "utterance_id": u.id, **event.to_json(u.request.timestamps)}]

    def progress(self, u: Utterance) -> list[Payload]:
        return [self._progress(u)]

    def done(self, u: Utterance) -> list[Payload]:
        return [{"type": "done", **self._summary(u)}]

    def ended(self, u: Utterance) -> list[Payload]:
        return []

    def error(
        self, code: str, message: str, param: str | None, u: Utterance | None, context_id: str | None
    ) -> Payload:
        return {
            "type": "error",
            **self.format_error(code, message, param),
            "utterance_id": u.id if u else None,
        }

    def flushed(self, u: Utterance) -> list[Payload]:
        return [
            {
                "type": "flushed",
                "utterance_id": u.id,
                "text_chunks": u.text_chunks,
                "characters": u.characters,
            }
        ]

    def cancelled(self, u: Utterance | None) -> list[Payload]:
        return [self._cancelled(u) if u is not None else {"type": "cancelled", "utterance_id": None}]

    def pong(self, message_id: Any) -> list[Payload]:
        reply: dict[str, Any] = {"type": "pong", "server_time": round(time.time(), 3)}
        if message_id is not None:
            reply["id"] = message_id
        return [reply]

    def _started(self, u: Utterance) -> dict[str, Any]:
        r = u.request
        return {
            "type": "started",
            "utterance_id": u.id,
            "request_id": u.id,
            "voice": r.voice.id,
            "format": r.audio_format,
            "sample_rate": r.sample_rate,
            "content_type": u.job.content_type,
            "sr_applied": u.job.sr_applied,
            "model_version": u.model_version,
            **self._normalized(u),
        }

    def _normalized(self, u: Utterance) -> dict[str, Any]:
        """With `normalize_verbose`: what the model is asked to speak (so far, in `started`; all of it in `done`)."""
        if not u.request.normalize_verbose:
            return {}
        return {"normalized_text": " ".join(u.job.plan.chunks)}

    def _progress(self, u: Utterance) -> dict[str, Any]:
        return {
            "type": "progress",
            "utterance_id": u.id,
            "chunks": u.chunks,
            "audio_bytes": u.audio_bytes,
            "audio_seconds": round(u.audio_seconds, 3),
        }

    def _cancelled(self, u: Utterance) -> dict[str, Any]:
        return {
            "type": "cancelled",
            "utterance_id": u.id,
            "request_id": u.id,
            "audio_bytes": u.sent_bytes,
            "chunks": u.sent_chunks,
        }

    def _summary(self, u: Utterance) -> dict[str, Any]:
        """The same figures the HTTP response headers carry, plus counts."""
        ttfb = u.ttfb_ms
        rtf = u.report.rtf if u.report is not None else None
        return {
            "utterance_id": u.id,
            "request_id": u.id,
            "audio_seconds": round(u.audio_seconds, 3),
            "audio_bytes": u.audio_bytes,
            "chunks": u.chunks,
            "ttfb_ms": None if ttfb is None else round(ttfb, 1),
            "rtf": None if rtf is None else round(rtf, 4),
            "text_chunked": u.text_chunks > 1,
            "text_chunks": u.text_chunks,
            "characters": u.characters,
            "sr_applied": u.job.sr_applied,
            "model_version": u.model_version,
            "format": u.request.audio_format,
            "sample_rate": u.request.sample_rate,
            "chunks_retried": u.job.stats.chunks_retried,  # generation guards (README, "Generation guards")
            "chunks_cut": u.job.stats.chunks_cut,
            **self._normalized(u),
        }
