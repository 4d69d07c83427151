"""Stop work nobody waits for: `until_client_leaves` runs a step of a request (a reference encode, which may wait for
the encoder and then run for seconds) as a task and cancels it when the HTTP client hangs up, so the encoder slot
it holds or waits for goes to the next caller at once (services/voice_library/references.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

from services.errors import ServiceError

T = TypeVar("T")


async def wait_for_disconnect(receive: Any) -> None:
    """Return when the client hangs up (the request body has already been read, so nothing else arrives)."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return


def client_gone() -> ServiceError:
    # Nobody reads this answer; 499 (the client closed the request) is what the access log shows.
    return ServiceError(
        "CLIENT_CLOSED_REQUEST", "The client closed the connection before the answer was ready."
    )


async def until_client_leaves(receive: Any, work: Awaitable[T]) -> T:
    """`work`'s result, or ServiceError CLIENT_CLOSED_REQUEST after cancelling it when the client hangs up first."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():  # the client left, or this request itself was cancelled
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    if task.cancelled():
        raise client_gone()
    return task.result()
