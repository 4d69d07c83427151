"""The metrics push client (services/deployment/metrics_push.py) against a small recording HTTP server on loopback:
the group's URL, basic auth, the thread and the shutdown sequence. The settings and an unreachable gateway are in
tests/unit/services/deployment/test_metrics_push.py; the real Pushgateway and Prometheus in tests/integration/test_fleet_metrics.py.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.deployment.metrics_push import MetricsPusher, PushTarget
from shared.settings import Settings
from tests.unit.services.deployment.test_metrics_push import registry_with, target

pytestmark = pytest.mark.integration


class Recorder(ThreadingHTTPServer):
    """Answers every PUT/DELETE with 200 and records (method, path, Authorization, body)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None, bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.server.calls.append((self.command, self.path, self.headers.get("Authorization"), body))
                self.send_response(200)
                self.end_headers()

            do_PUT = do_DELETE = _record

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def gateway() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_push_puts_the_registry_under_the_group_and_close_pushes_then_deletes_once(gateway: Recorder) -> None:
    pusher = MetricsPusher(target(gateway.url, linger_s=0.2), registry=registry_with(3))
    assert pusher.push()
    method, path, auth, body = gateway.calls[-1]
    assert (method, path, auth) == ("PUT", "/metrics/job/veena3-tts/instance/ta-01", None)
    assert b"demo_requests_total 3.0" in body

    gateway.calls.clear()
    started = time.monotonic()
    pusher.close()
    assert time.monotonic() - started >= 0.2  # the final push lingered for a scrape before the delete
    assert [c[:2] for c in gateway.calls] == [
        ("PUT", "/metrics/job/veena3-tts/instance/ta-01"),
        ("DELETE", "/metrics/job/veena3-tts/instance/ta-01"),
    ]
    pusher.close()  # the lifespan and Modal's exit both close: the second does nothing
    assert len(gateway.calls) == 2


def test_basic_auth_from_the_url(gateway: Recorder) -> None:
    url = gateway.url.replace("http://", "http://pusher:s%40cret@")
    pusher = MetricsPusher(
        PushTarget.from_settings(Settings(metrics_push_url=url, metrics_push_instance="x")),
        registry=registry_with(1),
    )
    assert pusher.push() and pusher.delete()
    expected = "Basic " + base64.b64encode(b"pusher:s@cret").decode()
    assert [(c[0], c[2]) for c in gateway.calls] == [("PUT", expected), ("DELETE", expected)]


def test_the_thread_pushes_on_its_interval_until_closed(gateway: Recorder) -> None:
    pusher = MetricsPusher(target(gateway.url, interval_s=0.05), registry=registry_with(1))
    pusher.start()
    deadline = time.monotonic() + 10
    while sum(c[0] == "PUT" for c in gateway.calls) < 3:
        assert time.monotonic() < deadline, gateway.calls
        time.sleep(0.02)
    pusher.close()
    assert gateway.calls[-1][0] == "DELETE"
    settled = len(gateway.calls)
    time.sleep(0.2)
    assert len(gateway.calls) == settled  # nothing pushes after close
