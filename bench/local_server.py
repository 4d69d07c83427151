"""Start the service as a child process on a free local port and wait until it is ready (benchmarks that drive a
real server over HTTP). The child gets this environment without any TTS_* variable, plus what the caller names, so
a developer's shell settings never leak into a measurement; the ones left out are named on stderr, so a variant set
in the shell is not mistaken for one measured."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(argv: Callable[[int], list[str]], env: dict[str, str], log: Path,
                 ready_s: float = 300.0) -> tuple[subprocess.Popen, str]:
    """Run `argv(port)` from the repository root with its output in `log`; return it and its base URL once
    /v1/tts/ready answers 200. Raises with the log's tail when it exits or is not ready within `ready_s`."""
    port = free_port()
    # The bench's own settings only: a TTS_ variable of the caller's shell would change what is measured unseen.
    dropped = sorted(k for k in os.environ if k.startswith("TTS_") and k not in env)
    if dropped:
        print(f"start_server: not passed to the server (the bench sets its own TTS_ settings): {', '.join(dropped)}",
              file=sys.stderr)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_")}
    child_env.update(env)
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv(port), cwd=ROOT, env=child_env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{url}/v1/tts/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"server not ready:\n{log.read_text(errors='replace')[-3000:]}")
