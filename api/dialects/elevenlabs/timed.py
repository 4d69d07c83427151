"""ElevenLabs' answers with timestamps (`.../with-timestamps`, `.../stream/with-timestamps`) over our timestamps
machinery (`api.timed_delivery`): `audio_base64`, `alignment` (the text as sent) and `normalized_alignment` (the
words the model spoke), each `{characters, character_start_times_seconds, character_end_times_seconds}`, times in
seconds from the start of the request's audio. Streamed: one JSON object per line per audio piece; the first piece
after a text chunk's timings carries that chunk's characters, the others `null` alignments."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

from api.delivery import Delivery, Framing
from api.timed_delivery import complete_json
from services.pipeline.timestamps import TimestampsEvent


def alignment(spans: list[tuple[str, float, float]]) -> dict[str, list] | None:
    if not spans:
        return None
    return {"characters": [s[0] for s in spans], "character_start_times_seconds": [s[1] for s in spans],
            "character_end_times_seconds": [s[2] for s in spans]}


async def complete(delivery: Delivery) -> dict[str, Any]:
    out = await complete_json("character", None)(delivery)
    return {"audio_base64": out["audio"],
            **{name: alignment([(c["text"], c["start"], c["end"]) for c in out[key]])
               for name, key in (("alignment", "characters"), ("normalized_alignment", "normalized_characters"))}}


async def _lines(items: AsyncIterator[Any], delivery: Delivery) -> AsyncIterator[bytes]:
    pending: dict[str, list[tuple[str, float, float]]] = {"alignment": [], "normalized_alignment": []}
    seen = {"alignment": False, "normalized_alignment": False}
    async for item in items:
        if isinstance(item, TimestampsEvent):
            for key, chars in (("alignment", item.characters), ("normalized_alignment", item.normalized_characters)):
                if seen[key] and chars and chars[0].text != " ":  # the chunks' words stay apart
                    pending[key].append((" ", chars[0].start, chars[0].start))
                pending[key].extend((c.text, c.start, c.end) for c in chars)
                seen[key] = seen[key] or bool(chars)
            continue
        line = {"audio_base64": base64.b64encode(item).decode("ascii"),
                **{key: alignment(spans) for key, spans in pending.items()}}
        pending = {key: [] for key in pending}
        yield (json.dumps(line, ensure_ascii=False) + "\n").encode()
    if delivery.final_status != "completed":
        code = delivery.job.error.code if delivery.job.error else "STREAMING_ERROR"
        yield (json.dumps({"error": {"code": code, "message": "The stream ended early."}}) + "\n").encode()


FRAMING: Framing = ("application/x-ndjson", _lines)
