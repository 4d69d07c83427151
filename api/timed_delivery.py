"""Answers that carry timestamps beside the audio (`timestamps: "word" | "character"`).

- complete (`stream: false`, through `Delivery.complete_response(timed=...)`): one JSON object: `audio` (base64 of the
  whole file), `words`, `normalized_words` (+ `characters`, `normalized_characters` for "character"), `captions`
  when `captions` asks for SRT / WebVTT, and `timestamps_status`: "ok", or "fallback" with `timestamps_fallbacks`
  (what failed: the words are then spread by a simpler method, never missing) - also in `X-Timestamps-Status`.
  Captions that fail to build are `null` with `captions_error`; the audio is delivered either way.
- streamed (`stream: true`): JSON lines (`application/x-ndjson`): `{"type": "audio", "audio": base64}` pieces as
  they are made, with `{"type": "timestamps", ...}` lines between them as the aligner settles words (each while its
  word is still playing: timing never holds audio), then `{"type": "done"}` (+ the fallback fields when any) or
  `{"type": "error", ...}`. JSON lines rather than SSE: the same shape as ElevenLabs' `/stream/with-timestamps`, one
  object per line for curl and any HTTP client, no event framing needed; OpenAI's SSE route gets an SSE event.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from api.captions import to_srt, to_vtt
from services.errors import SynthesisError
from services.pipeline.optional_steps import compute_optional
from services.pipeline.timestamps import TimestampsEvent
from shared import metrics

logger = logging.getLogger("api.timed_delivery")

# `delivery` below is api.delivery.Delivery (not imported: that module imports this one).


def event_json(event: TimestampsEvent, kind: str) -> dict[str, Any]:
    return {"type": "timestamps", **event.to_json(kind)}  # type: ignore[arg-type]


def complete_json(kind: str, captions: str | None) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    """The builder of a complete answer with timestamps, for `Delivery.complete_response(timed=...)` (which
    watches for a hang-up, reports and turns failures into the error envelope)."""

    async def build(delivery: Any) -> dict[str, Any]:
        return await _complete_json(delivery, kind, captions)

    return build


async def _complete_json(delivery: Any, kind: str, captions: str | None) -> dict[str, Any]:
    """Run the job to the end; the whole file and every span in one object."""
    audio = bytearray()
    events: list[TimestampsEvent] = []
    async for item in delivery.job.stream_events():
        if isinstance(item, TimestampsEvent):
            events.append(item)
            continue
        delivery.accounting.first_audio()
        audio += item
        if delivery.max_buffered_bytes and len(audio) > delivery.max_buffered_bytes:
            raise SynthesisError(
                "PAYLOAD_TOO_LARGE",
                f"The audio exceeds {delivery.max_buffered_bytes // 2**20} MiB, the most a "
                "complete answer holds; send stream=true for long audio.",
                "stream",
            )
    words = [w for e in events for w in e.words]
    merged = TimestampsEvent(tuple(words), tuple(w for e in events for w in e.normalized))
    out = {
        "audio": base64.b64encode(bytes(audio)).decode("ascii"),
        "content_type": delivery.job.content_type,
        "audio_seconds": round(delivery.audio_seconds, 3),
        **merged.to_json(kind),  # type: ignore[arg-type]
        **status_fields(delivery.job),
    }
    if captions in (
        "srt",
        "vtt",
    ):  # optional: a failure leaves `captions` null and says so, the audio is kept
        out["captions"] = compute_optional(
            "captions",
            lambda: (to_srt if captions == "srt" else to_vtt)(words),
            delivery.job.request.request_id,
        )
        if out["captions"] is None:
            metrics.TIMING_FAILURES.labels("captions").inc()
            out["captions_error"] = (
                "Captions could not be made for this audio; the words' timestamps are complete."
            )
    return out


def status_fields(job: Any) -> dict[str, Any]:
    """`timestamps_status` ("ok" | "fallback") and, on fallback, what failed."""
    track = getattr(job, "timestamps", None)
    if track is None or not track.fallbacks:
        return {"timestamps_status": "ok"}
    return {"timestamps_status": "fallback", "timestamps_fallbacks": list(track.fallbacks)}


async def json_lines(
    items: AsyncIterator[bytes | TimestampsEvent], kind: str, delivery: Any
) -> AsyncIterator[bytes]:
    async for item in items:
        if isinstance(item, TimestampsEvent):
            line = event_json(item, kind)
        else:
            line = {"type": "audio", "audio": base64.b64encode(item).decode("ascii")}
        yield (json.dumps(line, ensure_ascii=False) + "\n").encode()
    if delivery.final_status == "completed":
        status = status_fields(delivery.job)
        done = {"type": "done"} if status["timestamps_status"] == "ok" else {"type": "done", **status}
        yield (json.dumps(done) + "\n").encode()
    else:
        code = delivery.job.error.code if delivery.job.error else "STREAMING_ERROR"
        yield (
            json.dumps({"type": "error", "error": {"code": code, "message": "The stream ended early."}})
            + "\n"
        ).encode()
