"""app.py's weights fetch from a URL, served by a real HTTP server on loopback. The rest of the Modal wiring is in
tests/unit/test_modal_app.py."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

import app as modal_app

pytestmark = pytest.mark.integration


def test_fetch_copies_a_container_path_and_downloads_a_url(tmp_path: Path) -> None:
    source = tmp_path / "upload" / "g_16kto48k"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"weights")
    modal_app.fetch_to(str(source), tmp_path / "sr" / "g_16kto48k")
    assert (tmp_path / "sr" / "g_16kto48k").read_bytes() == b"weights"
    with pytest.raises(FileNotFoundError, match="modal volume put"):
        modal_app.fetch_to(str(tmp_path / "nope"), tmp_path / "sr" / "x")
    with pytest.raises(ValueError, match="expected an http"):
        modal_app.fetch_to("ftp://example.invalid/x", tmp_path / "sr" / "x")

    handler = type("H", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(source.parent))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/g_16kto48k"
        modal_app.fetch_to(url, tmp_path / "dl" / "g_16kto48k")
    finally:
        server.shutdown()
    assert (tmp_path / "dl" / "g_16kto48k").read_bytes() == b"weights"
    assert [p.name for p in (tmp_path / "dl").iterdir()] == ["g_16kto48k"]  # no temp file left behind
