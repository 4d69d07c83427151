"""Optional steps never fail finished work: remembering a continuation tail, captions, a job's on-complete hooks.

Each runs after (or beside) audio that exists already; when one fails, the request still completes. The failure is
logged (its class only: a message may echo user text) and counted in
`veena3_tts_optional_step_failures_total{step}`. Cancellation is not a failure and goes through.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from shared import metrics

logger = logging.getLogger("services.pipeline.optional_steps")

Step = Literal["continuity", "captions", "on_complete", "timestamps"]
T = TypeVar("T")


def note_failure(step: Step, exc: BaseException, request_id: str | None = None) -> None:
    """Log and count one optional step's failure."""
    metrics.OPTIONAL_STEP_FAILURES.labels(step).inc()
    logger.warning(
        "optional step failed; the request completes without it",
        exc_info=exc,
        extra={
            "event": "optional_step_failed",
            "step": step,
            "request_id": request_id,
            "error": type(exc).__name__,
        },
    )


async def run_optional(
    step: Step, call: Callable[[], Awaitable[None]], request_id: str | None = None
) -> bool:
    """Await `call()`; True when it finished, False when it raised (noted, never re-raised)."""
    try:
        await call()
    except Exception as exc:  # noqa: BLE001 - an optional step must not fail the request whose audio exists
        note_failure(step, exc, request_id)
        return False
    return True


def compute_optional(step: Step, call: Callable[[], T], request_id: str | None = None) -> T | None:
    """`call()`'s value, or None when it raised (noted, never re-raised)."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - as above
        note_failure(step, exc, request_id)
        return None
