"""ElevenLabs' server messages over the session core: audio as base64 JSON with `alignment` and
`normalizedAlignment`, `isFinal` per context, errors as `{"error", "contextId"}`.

Alignment times. Pipecat reads each message's times as relative to a running clock that it advances by the end of
the message's last character; LiveKit (which asks for `sync_alignment=true`) reads them as seconds from the start
of the context. So without `sync_alignment` every alignment is relative to the end of the previous alignment sent
and its last character is stretched to the end of the message's audio (the two clocks then agree); with it, times
are from the start of the context. Characters go with the audio message in which they start.
"""

from __future__ import annotations

import base64
from typing import Any

from services.sessions.codec import Payload
from services.sessions.utterance import Utterance

Span = tuple[str, float, float]  # one character, start and end in seconds from the start of the context


class ElevenLabsCodec:
    def __init__(self, *, absolute_times: bool) -> None:
        self.absolute_times = absolute_times

    # ------------------------------------------------------------------ events
    def started(self, u: Utterance) -> list[Payload]:
        return []

    def audio(self, u: Utterance, data: bytes) -> list[Payload]:
        start, end = u.last_audio_span
        message = self._ids(u) | {"audio": base64.b64encode(data).decode("ascii"), "isFinal": None}
        origin = u.codec_state.get("base", 0.0)
        message["alignment"] = self._alignment(u, "chars", end)
        message["normalizedAlignment"] = self._alignment(u, "normalized", end)
        if message["alignment"] is not None:  # where Pipecat's clock now stands (a span may end past the audio)
            last = message["alignment"]
            u.codec_state["base"] = origin + (last["charStartTimesMs"][-1] + last["charDurationsMs"][-1]) / 1000
        return [message]

    def timings(self, u: Utterance, event: Any) -> list[Payload]:
        """Spans of the text chunk whose audio follows (services.pipeline.timestamps.TimestampsEvent)."""
        for key, spans in (("chars", event.characters), ("normalized", event.normalized_characters)):
            pending: list[Span] = u.codec_state.setdefault(key, [])
            if u.codec_state.get(f"{key}_any") and spans and spans[0].text != " ":
                pending.append((" ", spans[0].start, spans[0].start))  # the chunks' words stay apart
            pending.extend((c.text, c.start, c.end) for c in spans)
            u.codec_state[f"{key}_any"] = u.codec_state.get(f"{key}_any") or bool(spans)
        return []

    def progress(self, u: Utterance) -> list[Payload]:
        return []

    def done(self, u: Utterance) -> list[Payload]:
        out: list[Payload] = []
        end = u.last_audio_span[1]
        if u.codec_state.get("chars_any"):  # what is left, and a space so the last word completes
            for key in ("chars", "normalized"):
                u.codec_state.setdefault(key, []).append((" ", end, end))
            out.append(self._ids(u) | {"audio": "", "isFinal": None,
                                       "alignment": self._alignment(u, "chars", end, everything=True),
                                       "normalizedAlignment": self._alignment(u, "normalized", end,
                                                                              everything=True)})
        return [*out, *self.ended(u)]

    def ended(self, u: Utterance) -> list[Payload]:
        return self.context_ended(u.context_id)

    def context_ended(self, context_id: str | None) -> list[Payload]:
        """isFinal: Pipecat ends the turn on it (it ignores errors), LiveKit releases the context."""
        return [{"contextId": context_id, "context_id": context_id, "isFinal": True}]

    def error(self, code: str, message: str, param: str | None, u: Utterance | None,
              context_id: str | None) -> Payload:
        cid = u.context_id if u is not None else context_id
        return {"error": code.lower(), "message": message, "code": code, "contextId": cid, "context_id": cid}

    def flushed(self, u: Utterance) -> list[Payload]:
        return []

    def cancelled(self, u: Utterance | None) -> list[Payload]:
        return [] if u is None else self.ended(u)

    def pong(self, message_id: Any) -> list[Payload]:
        return []

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _ids(u: Utterance) -> dict[str, Any]:
        return {"contextId": u.context_id, "context_id": u.context_id}  # Pipecat reads the first, LiveKit both

    def _alignment(self, u: Utterance, key: str, end: float, *, everything: bool = False) -> dict[str, Any] | None:
        pending: list[Span] = u.codec_state.get(key, [])
        take = len(pending) if everything else next((i for i, s in enumerate(pending) if s[1] >= end),
                                                    len(pending))
        if take == 0:
            return None
        spans, u.codec_state[key] = pending[:take], pending[take:]
        origin = 0.0 if self.absolute_times else u.codec_state.get("base", 0.0)
        starts = [max(0, round((s[1] - origin) * 1000)) for s in spans]
        ends = [max(starts[i], round((s[2] - origin) * 1000)) for i, s in enumerate(spans)]
        if not self.absolute_times:
            ends[-1] = max(ends[-1], round((end - origin) * 1000))  # the span reaches the end of this audio
        return {"chars": [s[0] for s in spans], "charStartTimesMs": starts,
                "charDurationsMs": [e - s for s, e in zip(starts, ends, strict=True)]}
