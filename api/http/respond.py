"""Every HTTP synthesis route's answer, whatever its protocol: `respond` opens the job accounted through the entrance
(services/access/entrance.py) and delivers it streamed, as SSE or complete; `ERROR_RESPONSES` is the refusals'
table the routes document."""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response

from api.client_gone import until_client_leaves
from api.delivery import Delivery, Framing, TimedAnswer
from api.timed_delivery import complete_json
from services.access import AccessGrant
from services.access.entrance import AccountedSpeech, Arrival, open_accounted
from services.pipeline.speech import SpeechRequest, SpeechService

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid request (error envelope)"},
    401: {"description": "Missing or invalid API key"},
    403: {"description": "Key suspended or out of credits"},
    404: {"description": "No such custom voice for this key"},
    413: {"description": "Text or body too long"},
    429: {"description": "Rate or concurrency limit (Retry-After set)"},
    503: {"description": "Model not loaded or GPU fault"},
    504: {"description": "Generation timed out"},
}

NORMALIZED_HEADER_MAX_CHARS = (
    2000  # of the normalised text, before percent-encoding (headers stay < 8 KB or so)
)


def normalized_text_headers(text: str) -> dict[str, str]:
    """`X-Normalized-Text`: the normalised text, percent-encoded (UTF-8), cut at NORMALIZED_HEADER_MAX_CHARS
    characters with `X-Normalized-Text-Truncated: true`. POST /v1/tts/normalize returns it whole."""
    shown = text[:NORMALIZED_HEADER_MAX_CHARS]
    headers = {"X-Normalized-Text": quote(shown, safe="")}
    if len(shown) < len(text):
        headers["X-Normalized-Text-Truncated"] = "true"
    return headers


def arrival_of(request: Request) -> Arrival:
    """An HTTP request's arrival: its id and accept time (api/middleware.py); a hang-up while a per-request
    reference is encoded frees its encoder slot."""
    state = request.scope["state"]
    return Arrival(
        state["request_id"], "http", state.get("received_at"), partial(until_client_leaves, request.receive)
    )


def response_headers(accounted: AccountedSpeech) -> dict[str, str]:
    """What every HTTP answer says about its job: format, rate, chunking, the voice, any wake, the grant's limits."""
    job, asked = accounted.job, accounted.job.request
    return {
        "X-Model-Version": job.resources.model_version,
        "X-Format": asked.audio_format,
        "X-Sample-Rate": str(asked.sample_rate),
        "X-Stream": "true" if asked.stream else "false",
        "X-Text-Chunked": "true" if accounted.plan.chunked else "false",
        "X-Chunking-Enabled": "true" if asked.chunking else "false",
        **(normalized_text_headers(accounted.plan.text) if asked.normalize_verbose else {}),
        "X-SR-Applied": "true" if job.sr_applied else "false",
        "X-Voice": accounted.voice.id,
        # Only the requests that waited for the device to wake from idle sleep (TTS_IDLE_SLEEP_S): how long.
        **({"X-Wake-Ms": str(round(wake))} if (wake := accounted.opened.wake_ms) is not None else {}),
        **accounted.grant.headers,
    }


async def respond(
    request: Request,
    speech: SpeechRequest,
    service: SpeechService,
    grant: AccessGrant,
    *,
    sse: bool = False,
    captions: str | None = None,
    timed: TimedAnswer | None = None,
    framing: Framing | None = None,
    how_to_stream: str | None = None,
) -> Response:
    """Open the job accounted (services/access/entrance.py) and answer: streamed, SSE or complete.
    `timed` / `framing`: a dialect's own shape of a complete answer with timestamps / of a streamed one.
    `how_to_stream`: how this route's client asks for a stream; given, a complete answer longer than
    TTS_MAX_UNSTREAMED_CHARS is refused, naming it."""
    buffered = not (speech.stream or sse)
    accounted = await open_accounted(
        service, speech, grant, arrival_of(request), buffered=buffered, how_to_stream=how_to_stream
    )
    delivery, asked = Delivery.of(accounted, service, response_headers(accounted)), accounted.job.request
    if asked.stream or sse:
        return await delivery.streaming_response(request.receive, sse=sse, framing=framing)
    if timed is None and asked.timestamps:
        timed = complete_json(asked.timestamps, captions)
    return await delivery.complete_response(request.receive, timed=timed)
