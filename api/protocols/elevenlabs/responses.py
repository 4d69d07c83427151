"""ElevenLabs' server messages over the session core: audio as base64 JSON with `alignment` and
`normalizedAlignment`, `isFinal` per context, errors as `{"error", "contextId"}`.

Alignment times. Pipecat reads each message's times as relative to a running clock that it advances by the end of
the message's last character; LiveKit (which asks for `sync_alignment=true`) reads them as seconds from the start
of the context. So without `sync_alignment` every alignment is relative to the end of the previous alignment sent
(the wire format keeps the same clock); with it, times are from the start of the context.

Timing never holds audio: words arrive from the aligner while their audio plays. A timing event rides
on the next audio message when that audio holds its first character's start; when its audio was already sent it
goes at once in a message with empty `audio` (both clients skip empty audio and read its alignment). Both fields
always travel together and cover the same time (an event holds whole written groups with their spoken words), and
the last character of both is stretched to the same end so the relative clocks of either field agree.

Characters. Joined over a context, `alignment` is the text as sent with its words apart: one space where the text
had whitespace, none between Han characters, nothing added at the end. Where a client's messages are sentences
sent with nothing between them ("Okay, Bravo here." then "This reply…", Pipecat) the sentences were cut there and
spoken as separate words, so the alignment has a space there too ("here. This"): both clients find words by
spaces, and the sentence the client sent was apart in meaning. A space between two events leads the later one, so a
client completes an event's last word when the next event (or the end of the context) comes.
"""

from __future__ import annotations

import base64
from typing import Any

from core.align.types import spaced
from services.sessions.utterance import Utterance
from services.sessions.wire import Payload

Span = tuple[str, float, float]  # one character, start and end in seconds from the start of the context
Timed = tuple[list[Span], list[Span]]  # one event's characters: as sent, as spoken


def event_spans(event: Any, before: tuple[str, str] = ("", "")) -> Timed:
    """A TimestampsEvent's characters (as sent, as spoken); neither side empty. `before`: the last character each
    side of the stream sent so far ("" at its start): a space leads the event where the words are written apart."""
    sides = []
    for chars, last in zip((event.characters, event.normalized_characters), before, strict=True):
        spans = [(c.text, c.start, c.end) for c in chars]
        if spans and spaced(last, spans[0][0]):
            spans.insert(0, (" ", spans[0][1], spans[0][1]))
        sides.append(spans)
    written, spoken = sides
    if not written and spoken:
        written = [(" ", spoken[0][1], spoken[0][1])]
    if not spoken and written:
        spoken = [(" ", written[0][1], written[0][1])]
    return written, spoken


def last_characters(timed: Timed, before: tuple[str, str]) -> tuple[str, str]:
    """`before` for the event after `timed` (a side that is only a space keeps the character before it)."""
    written, spoken = timed
    return tuple(
        side[-1][0] if side and side[-1][0].strip() else last  # type: ignore[return-value]
        for side, last in ((written, before[0]), (spoken, before[1]))
    )


class ElevenLabsWire:
    def __init__(self, *, absolute_times: bool) -> None:
        self.absolute_times = absolute_times

    # ------------------------------------------------------------------ events
    def started(self, u: Utterance) -> list[Payload]:
        return []

    def audio(self, u: Utterance, data: bytes) -> list[Payload]:
        end = u.last_audio_span[1]
        message = self._ids(u) | {"audio": base64.b64encode(data).decode("ascii"), "isFinal": None}
        return [message | self._take(u, end)]

    def timings(self, u: Utterance, event: Any) -> list[Payload]:
        """Spans the aligner settled: with the next audio message, or now when their audio has already gone."""
        before = u.wire_state.get("last", ("", ""))
        written, spoken = event_spans(event, before)
        if not written:
            return []
        u.wire_state["last"] = last_characters((written, spoken), before)
        u.wire_state.setdefault("pending", []).append((written, spoken))
        sent = u.last_audio_span[1]
        if written[0][1] >= sent:
            return []
        return [self._ids(u) | {"audio": "", "isFinal": None} | self._take(u, sent)]

    def progress(self, u: Utterance) -> list[Payload]:
        return []

    def done(self, u: Utterance) -> list[Payload]:
        out: list[Payload] = []
        end = u.last_audio_span[1]
        if u.wire_state.get("pending"):  # what is left (the last character ends with the audio)
            out.append(
                self._ids(u) | {"audio": "", "isFinal": None} | self._take(u, end, everything=True, until=end)
            )
        return [*out, *self.ended(u)]

    def ended(self, u: Utterance) -> list[Payload]:
        return self.context_ended(u.context_id)

    def context_ended(self, context_id: str | None) -> list[Payload]:
        """isFinal: Pipecat ends the turn on it (it ignores errors), LiveKit releases the context."""
        return [{"contextId": context_id, "context_id": context_id, "isFinal": True}]

    def error(
        self, code: str, message: str, param: str | None, u: Utterance | None, context_id: str | None
    ) -> Payload:
        cid = u.context_id if u is not None else context_id
        # LiveKit raises (and logs) `error` alone, Pipecat nothing: the reason travels in it beside the code.
        reason = f"{code.lower()}: {message}"
        return {"error": reason, "message": message, "code": code, "contextId": cid, "context_id": cid}

    def flushed(self, u: Utterance) -> list[Payload]:
        return []

    def cancelled(self, u: Utterance | None) -> list[Payload]:
        return [] if u is None else self.ended(u)

    def pong(self, message_id: Any) -> list[Payload]:
        return []

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _ids(u: Utterance) -> dict[str, Any]:
        return {
            "contextId": u.context_id,
            "context_id": u.context_id,
        }  # Pipecat reads the first, LiveKit both

    def _take(
        self, u: Utterance, end: float, *, everything: bool = False, until: float = 0.0
    ) -> dict[str, Any]:
        """`alignment` and `normalizedAlignment` of the pending events whose first character starts before `end`
        (all with `everything`): both dicts, or both None. Their last characters end at `until` or later."""
        pending: list[Timed] = u.wire_state.get("pending", [])
        take = (
            len(pending)
            if everything
            else next((i for i, (w, _) in enumerate(pending) if w[0][1] >= end), len(pending))
        )
        if take == 0:
            return {"alignment": None, "normalizedAlignment": None}
        events, u.wire_state["pending"] = pending[:take], pending[take:]
        written = [c for w, _ in events for c in w]
        spoken = [c for _, s in events for c in s]
        origin = 0.0 if self.absolute_times else u.wire_state.get("base", 0.0)
        stop = max(written[-1][2], spoken[-1][2], until)
        stop_ms = max(0, round((stop - origin) * 1000))
        if (
            not self.absolute_times
        ):  # Pipecat's clock moves by the last end of whichever field it reads: the same
            u.wire_state["base"] = origin + stop_ms / 1000
        return {
            "alignment": _fields(written, origin, stop_ms),
            "normalizedAlignment": _fields(spoken, origin, stop_ms),
        }


def _fields(spans: list[Span], origin: float, stop_ms: int) -> dict[str, Any]:
    starts = [max(0, round((s[1] - origin) * 1000)) for s in spans]
    ends = [max(starts[i], round((s[2] - origin) * 1000)) for i, s in enumerate(spans)]
    ends[-1] = max(ends[-1], stop_ms)
    starts = [min(st, stop_ms) for st in starts]
    return {
        "chars": [s[0] for s in spans],
        "charStartTimesMs": starts,
        "charDurationsMs": [e - st for st, e in zip(starts, ends, strict=True)],
    }
