"""The four answers of ElevenLabs' speech routes, one table for text-to-speech and text-to-dialogue alike: a file
(`""`), chunked audio (`/stream`), base64 with character timings (`/with-timestamps`) and JSON lines of them
(`/stream/with-timestamps`). Each family's handlers are generated from it (`routes.py`, `dialogue.py`), so they differ
only in these flags."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Response

from api.protocols.elevenlabs import timed


@dataclass(frozen=True)
class Variant:
    suffix: str  # after the family's path
    stream: bool
    timed: bool
    summary: str  # what the answer is, after the family's noun

    @property
    def name(self) -> str:
        """A Python name for the handler (`stream_with_timestamps`); "" for the file."""
        return self.suffix.strip("/").replace("/", "_").replace("-", "_")

    def answer(self, segments: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
        """`respond`'s keyword arguments: how timings are shaped (a dialogue's with its `segments`: (voice id, text)
        per input, for `voice_segments`)."""
        if not self.timed:
            return {}
        if self.stream:
            return {"framing": timed.FRAMING if segments is None else timed.dialogue_framing(segments)}
        return {"timed": timed.complete if segments is None else timed.dialogue_complete(segments)}


VARIANTS = (
    Variant("", stream=False, timed=False, summary="as a file"),
    Variant("/stream", stream=True, timed=False, summary="streamed"),
    Variant("/with-timestamps", stream=False, timed=True, summary="as base64 with character timings"),
    Variant(
        "/stream/with-timestamps",
        stream=True,
        timed=True,
        summary="streamed as JSON lines with character timings",
    ),
)
DEFAULT_OUTPUT_FORMAT = "mp3_44100_128"  # ElevenLabs' default


def add_variant_routes(
    router: APIRouter,
    path: str,
    handler_for: Callable[[Variant], Callable[..., Awaitable[Response]]],
    *,
    family: str,
    noun: str,
    responses: dict[int | str, dict[str, Any]],
) -> None:
    """One POST route per answer under `path`, each with the handler `handler_for` makes for it."""
    for variant in VARIANTS:
        router.add_api_route(
            f"{path}{variant.suffix}",
            handler_for(variant),
            methods=["POST"],
            responses=responses,
            summary=f"ElevenLabs: {noun} {variant.summary}",
            name="_".join(filter(None, (family, variant.name))),
        )
