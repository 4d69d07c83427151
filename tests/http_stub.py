"""Local HTTP servers for tests: one answers JSON from a handler function (a stand-in for a hosted HTTP API such as
Supabase's PostgREST, so the real client library talks to it as it would to the service), one serves static files
(a page on another origin than the API, for the browser tests)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

# (method, path, query, lower-cased headers, JSON body or None) -> (status, JSON payload or None)
Handle = Callable[[str, str, dict[str, list[str]], dict[str, str], object], tuple[int, object]]


@contextmanager
def json_server(handle: Handle) -> Iterator[str]:
    """Serve `handle` on a free loopback port; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            parsed = urlparse(self.path)
            status, payload = handle(
                self.command,
                parsed.path,
                parse_qs(parsed.query),
                {k.lower(): v for k, v in self.headers.items()},
                json.loads(raw) if raw else None,
            )
            out = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_DELETE = do_PATCH = _handle

        def log_message(self, *args: object) -> None:
            pass

    with _serving(Handler) as base_url:
        yield base_url


@contextmanager
def static_server(directory: Path) -> Iterator[str]:
    """Serve the files under `directory` (ES modules as JavaScript) on a free loopback port; yields the base URL."""

    class Handler(SimpleHTTPRequestHandler):
        extensions_map = {
            **SimpleHTTPRequestHandler.extensions_map,
            ".mjs": "text/javascript",
            ".js": "text/javascript",
        }

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

    with _serving(Handler) as base_url:
        yield base_url


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
