"""Self-hosted weights download (core.weights) from a loopback 'hub' (a real HTTP server with Range support):
partial downloads resumed, verified files skipped, the command line reporting a bad file. The digests and the
refusals are in tests/unit/core/test_weights.py."""

from __future__ import annotations

import hashlib
import http.server
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import weights
from core.weights import ExpectedFile
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.integration


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files under `directory` with `Range: bytes=N-` support, counting requests and ranges."""

    log: list[str] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        start = int(match.group(1)) if match else 0
        type(self).log.append(f"{self.path} {start}")
        if start >= len(data) and match:
            self.send_error(416)
            return
        self.send_response(206 if match else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback 'hub' serving <repo>/resolve/<revision>/<path> from a directory."""
    root = tmp_path / "hub"
    root.mkdir()
    RangeHandler.log = []
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: RangeHandler(*a, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()


def publish(hub_root: Path, repo: str, revision: str, files: dict[str, bytes]) -> tuple[ExpectedFile, ...]:
    for rel, data in files.items():
        path = hub_root / repo / "resolve" / revision / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return tuple(
        ExpectedFile(rel, len(data), hashlib.sha256(data).hexdigest()) for rel, data in files.items()
    )


def test_download_resumes_a_partial_file_and_skips_verified_ones(hub, tmp_path: Path, monkeypatch) -> None:
    base, hub_root = hub
    big = bytes(range(256)) * 4000
    files = publish(
        hub_root, weights.SPARK_REPO, "rev1", {"config.yaml": b"sample_rate: 16000\n", "LLM/w.bin": big}
    )
    monkeypatch.setattr(weights, "SPARK_FILES", files)
    target = tmp_path / "model"
    (target / "LLM").mkdir(parents=True)
    (target / "LLM" / "w.bin.part").write_bytes(big[:1000])  # an interrupted earlier run
    reports = weights.download_spark(
        target, revision="rev1", include_wav2vec2=False, base_url=base, log=lambda m: None
    )
    assert [r.status for r in reports] == ["verified", "verified"]
    assert (target / "LLM" / "w.bin").read_bytes() == big
    assert f"/{weights.SPARK_REPO}/resolve/rev1/LLM/w.bin 1000" in RangeHandler.log  # resumed, not restarted
    RangeHandler.log.clear()
    weights.download_spark(target, revision="rev1", include_wav2vec2=False, base_url=base, log=lambda m: None)
    assert RangeHandler.log == []  # everything verified: nothing fetched again


def test_the_command_line_downloads_and_reports_a_bad_file(hub, tmp_path: Path) -> None:
    base, hub_root = hub
    publish(
        hub_root,
        weights.APBWE_REPO,
        weights.APBWE_REVISION,
        {f"{weights.APBWE_SUBDIR}/config.json": b"{}", f"{weights.APBWE_SUBDIR}/g_16kto48k": b"gen"},
    )
    done = subprocess.run(
        [sys.executable, "-m", "core.weights", "--sr", str(tmp_path / "sr"), "--base-url", base],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # The served files are not the released ones: both fail, both are kept aside, exit status 1.
    assert done.returncode == 1, done.stderr
    assert "SIZE MISMATCH" in done.stdout and "set aside, not deleted" in done.stderr
    kept = sorted(p.name for p in (tmp_path / "sr").iterdir())
    assert any(n.startswith("g_16kto48k.rejected-") for n in kept) and "g_16kto48k" not in kept
