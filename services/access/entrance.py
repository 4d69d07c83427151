"""The one way an HTTP request or a job's chapter opens synthesis, as sockets open services/sessions/entrance.py.

`open_accounted` opens the speech with the grant paying for it (`SpeechService.open`), gives the grant back when
that is refused (nothing ran: the slot and any reservation return), and returns the job already accounted: one
`RequestAccounting` attached to the grant, so that the request's end settles the grant whatever the deliverer does
(a response, a chapter's file). The grant travels with the job (`AccountedSpeech.grant`), as the permit travels with
the stream it pays for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.access.grant import AccessGrant
from services.usage.accounting import RequestAccounting, Transport

if TYPE_CHECKING:
    from core.voices import Voice
    from services.pipeline.speech import OpenedSpeech, SpeechRequest, SpeechService
    from services.pipeline.synthesis import SynthesisJob
    from services.pipeline.text_plan import TextPlan

logger = logging.getLogger("services.access.entrance")

# Runs the opening and gives up when nobody waits for it any more (an HTTP client that hung up).
Watch = Callable[["Awaitable[OpenedSpeech]"], "Awaitable[OpenedSpeech]"]


@dataclass(frozen=True)
class Arrival:
    """How a request came in: its id, its transport, when it was accepted (perf_counter; None: when it opens) and
    how its opening stops when nobody waits any more (`watch`)."""

    request_id: str
    transport: Transport
    clock_origin: float | None = None
    watch: Watch | None = None


@dataclass(frozen=True)
class AccountedSpeech:
    """A planned, paid-for, accounted job not yet running, with the grant that pays for it."""

    opened: OpenedSpeech
    accounting: RequestAccounting
    grant: AccessGrant

    @property
    def job(self) -> SynthesisJob:
        return self.opened.job

    @property
    def plan(self) -> TextPlan:
        return self.opened.plan

    @property
    def voice(self) -> Voice:
        return self.opened.voice


async def open_accounted(
    service: SpeechService,
    speech: SpeechRequest,
    grant: AccessGrant,
    arrival: Arrival,
    *,
    buffered: bool = False,
    how_to_stream: str | None = None,
    first: Callable[[], Awaitable[None]] | None = None,
    **fields: Any,
) -> AccountedSpeech:
    """Open `speech` paid by `grant` and account for it from the arrival's clock origin. The arrival's `watch` runs
    only an opening that encodes a per-request reference (seconds, holding an encoder slot): a client that leaves
    frees it; a plain opening runs without (a task per request costs first audio). `fields`: extra fields of the
    request's first log line (a job's id and chapter). `first`: the caller's own checks, run before the opening and
    refused as it is (a voice design's room in the library)."""
    origin = time.perf_counter() if arrival.clock_origin is None else arrival.clock_origin
    watch = arrival.watch if speech.reference_audio is not None else None
    try:
        if first is not None:
            await first()
        opening = service.open(
            speech, grant, request_id=arrival.request_id, buffered=buffered, how_to_stream=how_to_stream
        )
        opened = await (opening if watch is None else watch(opening))
    except BaseException:
        await grant.abandon()  # refused before any audio work: give back the slot and the credits
        raise
    accounting = RequestAccounting(
        opened.job, transport=arrival.transport, clock_origin=origin, settle=grant.settle, begin=grant.begin
    )
    grant.attach(accounting)
    accounting.started(text_length=len(speech.text), key_id=grant.key_id, **fields)
    if speech.normalize_verbose:
        # Opted in by the client: the only place the service logs (normalised) request text.
        logger.debug(
            "normalized_text",
            extra={
                "event": "normalized_text",
                "normalized": opened.plan.text,
                "text_chunks": len(opened.plan.chunks),
            },
        )
    return AccountedSpeech(opened, accounting, grant)
