"""The one launch command: `python -m api.launch [UVICORN OPTIONS...]`.

scripts/serve and both Docker images start the server through this module, so the uvicorn flags they run with are
written once and cannot drift apart (an image once closed idle sockets after uvicorn's 20 s ping timeout while
scripts/serve waited 300 s). Extra arguments go to uvicorn after these flags; for a flag given twice the later wins.

The flags, and why (docs/operate/runbook.md, section 11):
- `--http api.http_protocol:HeadDeadline`: a deadline and a size cap on each request head (slow-header clients).
- `--ws-max-size` = TTS_WS_MAX_MESSAGE_BYTES: uvicorn refuses a larger message before the app parses it.
- `--ws-per-message-deflate` = TTS_WS_DEFLATE (off by default): compressing base64 audio costs event-loop time.
- `--ws-ping-timeout 300`: a pooled socket its client does not read between turns (LiveKit's Cartesia pool) answers
  no ping, and the dialects keep idle sockets 5 minutes.
- `--timeout-keep-alive 5`, `--limit-concurrency 4096`: idle keep-alive connections closed soon; a ceiling on open
  connections (503 past it).
- `--timeout-graceful-shutdown 10`, `--no-access-log` (the app writes one line per request itself).

Modal serves the same app through `@modal.asgi_app` (app.py); Modal's own edge terminates connections there, so these
process flags do not apply to it.
"""

from __future__ import annotations

import sys

from shared.settings import Settings, get_settings

APP_FACTORY = "api:create_app"
WS_PING_TIMEOUT_S = 300
KEEP_ALIVE_S = 5
CONNECTION_CEILING = 4096
GRACEFUL_SHUTDOWN_S = 10


def uvicorn_arguments(settings: Settings) -> list[str]:
    """The server's command-line flags for uvicorn, from the settings that choose them."""
    return [
        "--factory",
        APP_FACTORY,
        "--host",
        settings.deployment.host,
        "--port",
        str(settings.deployment.port),
        "--no-access-log",
        "--timeout-graceful-shutdown",
        str(GRACEFUL_SHUTDOWN_S),
        "--http",
        "api.http_protocol:HeadDeadline",
        "--ws-max-size",
        str(settings.websocket.ws_max_message_bytes),
        "--ws-per-message-deflate",
        "true" if settings.websocket.ws_deflate else "false",
        "--ws-ping-timeout",
        str(WS_PING_TIMEOUT_S),
        "--timeout-keep-alive",
        str(KEEP_ALIVE_S),
        "--limit-concurrency",
        str(CONNECTION_CEILING),
    ]


def main(argv: list[str] | None = None) -> None:
    """Run uvicorn's own command line with the service's flags, then any extra arguments."""
    from uvicorn.main import main as uvicorn_command

    extra = sys.argv[1:] if argv is None else argv
    uvicorn_command.main(args=[*uvicorn_arguments(get_settings()), *extra], prog_name="uvicorn")


if __name__ == "__main__":
    main()
