"""`python -m api.protocols.wyoming`: the Wyoming server on its own (no HTTP port), on the same app state as the service:
the model, keys, limits, credits and request log of `api.create_app`, with TTS_WYOMING_ENABLED taken as set."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from api.app import create_app
from shared.settings import get_settings


async def serve() -> None:
    settings = get_settings().model_copy(update={"wyoming_enabled": True})
    app = create_app(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with app.router.lifespan_context(app):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve())
