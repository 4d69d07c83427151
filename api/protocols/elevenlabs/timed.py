"""ElevenLabs' answers with timestamps (`.../with-timestamps`, `.../stream/with-timestamps`) over our timestamps
machinery (`api.timed_delivery`): `audio_base64`, `alignment` (the text as sent) and `normalized_alignment` (the
words the model spoke), each `{characters, character_start_times_seconds, character_end_times_seconds}`, times in
seconds from the start of the request's audio. Streamed: one JSON object per line per audio piece (a long piece
over several lines of `LINE_AUDIO_BYTES` at most); timings settled by the aligner ride on the next audio line, or
go at once on a line with empty `audio_base64` when their audio was already sent (timing never holds audio, issue
39); both alignments always together (`wire.event_spans`), `null` on lines with none. A last line with empty audio
carries whatever is left. The text-to-dialogue routes add `voice_segments` (`voice_segments.py`): all of them on a
complete answer, and on a streamed one each segment on the line whose alignment ends it (`[]` on the others)."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from api.delivery import Delivery, Framing, TimedAnswer
from api.protocols.elevenlabs.responses import event_spans, last_characters
from api.protocols.elevenlabs.voice_segments import VoiceSegments
from api.timed_delivery import complete_json
from services.pipeline.timestamps import TimestampsEvent


def alignment(spans: list[tuple[str, float, float]]) -> dict[str, list[Any]] | None:
    if not spans:
        return None
    return {
        "characters": [s[0] for s in spans],
        "character_start_times_seconds": [s[1] for s in spans],
        "character_end_times_seconds": [s[2] for s in spans],
    }


async def complete(delivery: Delivery, segments: VoiceSegments | None = None) -> dict[str, Any]:
    out = await complete_json("character", None)(delivery)
    answer = {
        "audio_base64": out["audio"],
        **{
            name: alignment([(c["text"], c["start"], c["end"]) for c in out[key]])
            for name, key in (("alignment", "characters"), ("normalized_alignment", "normalized_characters"))
        },
    }
    if segments is not None:
        answer["voice_segments"] = [
            *segments.feed([(c["text"], c["start"], c["end"]) for c in out["characters"]]),
            *segments.finish(),
        ]
    return answer


def dialogue_complete(inputs: Sequence[tuple[str, str]]) -> TimedAnswer:
    """`complete` with the dialogue's `voice_segments`; `inputs`: (voice id, text) per input."""
    return functools.partial(complete, segments=VoiceSegments(inputs))


def dialogue_framing(inputs: Sequence[tuple[str, str]]) -> Framing:
    """FRAMING with the dialogue's `voice_segments` on every line."""
    return FRAMING[0], functools.partial(_lines, segments=VoiceSegments(inputs))


# Audio bytes on one line at most: 128 KiB of base64, far under what clients read as one line (Pipecat's reader
# stops at 512 KiB and loses the rest of the turn). A multiple of 6 keeps 16-bit samples whole and base64 unpadded.
LINE_AUDIO_BYTES = 6 * 16384


async def _lines(
    items: AsyncIterator[Any], delivery: Delivery, segments: VoiceSegments | None = None
) -> AsyncIterator[bytes]:
    pending: list[tuple[list[Any], list[Any]]] = []
    sent = 0.0  # seconds of audio on lines already written
    rate = delivery.job.request.sample_rate

    def line(audio: bytes, upto: float | None) -> bytes:
        nonlocal pending
        take = (
            len(pending)
            if upto is None
            else next((i for i, (w, _) in enumerate(pending) if w[0][1] >= upto), len(pending))
        )
        events, pending = pending[:take], pending[take:]
        written = [c for w, _ in events for c in w]
        body: dict[str, Any] = {
            "audio_base64": base64.b64encode(audio).decode("ascii"),
            "alignment": alignment(written),
            "normalized_alignment": alignment([c for _, n in events for c in n]),
        }
        if segments is not None:
            body["voice_segments"] = segments.feed(written) + (segments.finish() if upto is None else [])
        return (json.dumps(body, ensure_ascii=False) + "\n").encode()

    before = ("", "")  # the last characters sent (event_spans puts a space between words written apart)
    async for item in items:
        if isinstance(item, TimestampsEvent):
            written, spoken = event_spans(item, before)
            if written:
                before = last_characters((written, spoken), before)
                pending.append((written, spoken))
                if written[0][1] < sent:  # its audio is out already: now, on a line of its own
                    yield line(b"", sent)
            continue
        sent = delivery.job.stats.sent_samples / rate
        for start in range(0, max(len(item), 1), LINE_AUDIO_BYTES):
            yield line(item[start : start + LINE_AUDIO_BYTES], sent)  # the first line takes the timings
    if pending or (segments is not None and segments.unfinished):
        yield line(b"", None)
    if delivery.final_status != "completed":
        code = delivery.job.error.code if delivery.job.error else "STREAMING_ERROR"
        yield (json.dumps({"error": {"code": code, "message": "The stream ended early."}}) + "\n").encode()


FRAMING: Framing = ("application/x-ndjson", _lines)
