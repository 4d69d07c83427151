"""One launch command (api/launch.py) for scripts/serve and both Docker images, so their uvicorn flags cannot drift."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
from uvicorn.main import main as uvicorn_command

from api.launch import uvicorn_arguments
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "deploy" / "docker"


def parsed(arguments: list[str]) -> dict[str, object]:
    """What uvicorn's own command line makes of the arguments (its parameters by name)."""
    with click.Context(uvicorn_command) as context:
        return dict(uvicorn_command.make_context("uvicorn", list(arguments), parent=context).params)


def test_the_flags_are_what_uvicorn_parses_with_the_settings_that_choose_them() -> None:
    params = parsed(uvicorn_arguments(Settings(host="127.0.0.2", port=8123, ws_max_message_bytes=5000)))
    assert params["app"] == "api:create_app" and params["factory"] is True
    assert (params["host"], params["port"]) == ("127.0.0.2", 8123)
    assert params["ws_max_size"] == 5000 and params["ws_per_message_deflate"] is False
    assert params["ws_ping_timeout"] == 300  # pooled sockets are not read between turns
    assert params["http"] == "api.http_protocol:HeadDeadline"
    assert (params["timeout_keep_alive"], params["limit_concurrency"]) == (5, 4096)
    assert params["access_log"] is False and params["timeout_graceful_shutdown"] == 10
    assert parsed(uvicorn_arguments(Settings(ws_deflate=True)))["ws_per_message_deflate"] is True


def test_extra_arguments_come_after_and_win() -> None:
    params = parsed([*uvicorn_arguments(Settings()), "--port", "9001", "--log-level", "debug"])
    assert params["port"] == 9001 and params["log_level"] == "debug"


def test_scripts_serve_and_both_images_start_the_one_launch_command() -> None:
    serve = (ROOT / "scripts" / "serve").read_text()
    execs = re.findall(r"^exec .*$", serve, flags=re.MULTILINE)
    assert execs == ['exec "$PY" -m api.launch "$@"']
    for name, word in (("Dockerfile", "ENTRYPOINT"), ("Dockerfile.cpu", "CMD")):
        line = next(x for x in (DOCKER / name).read_text().splitlines() if x.startswith(word + " "))
        assert json.loads(line.split(" ", 1)[1])[1:] == ["-m", "api.launch"], name
    # No other uvicorn command line is written by hand in what ships.
    for path in [ROOT / "scripts" / "serve", *DOCKER.iterdir()]:
        assert "-m uvicorn" not in path.read_text() and '"uvicorn"' not in path.read_text(), path
