"""The metrics push client (services/deployment/metrics_push.py) in-process: its settings, and that an unreachable
gateway (a closed port) is counted, logged once a minute and never raises.

Pushing to a small recording HTTP server is in tests/integration/test_metrics_push_server.py; the real Pushgateway
and Prometheus in tests/integration/test_fleet_metrics.py.
"""

from __future__ import annotations

import logging
import socket
import time

import pytest
from prometheus_client import CollectorRegistry, Counter

from services.deployment.metrics_push import MetricsPusher, PushTarget
from shared import metrics
from shared.settings import Settings


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def target(url: str, **kwargs: object) -> PushTarget:
    values: dict = {"job": "veena3-tts", "instance": "ta-01", "interval_s": 0.05, "linger_s": 0.0} | kwargs
    return PushTarget(url=url, **values)


def registry_with(value: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("demo_requests", "Requests.", registry=registry).inc(value)
    return registry


def failures(operation: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            f"{metrics.PREFIX}_metrics_push_failures_total", {"operation": operation}
        )
        or 0.0
    )


# ------------------------------------------------------------------------------------------------ settings


def test_off_unless_a_url_is_set() -> None:
    assert PushTarget.from_settings(Settings()) is None
    assert MetricsPusher.from_settings(Settings(metrics_push_url="  ")) is None


def test_instance_is_the_override_then_the_modal_task_id_then_host_and_pid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    url = "http://gw:9091"
    monkeypatch.setenv("MODAL_TASK_ID", "ta-01ABC")
    assert PushTarget.from_settings(Settings(metrics_push_url=url)).instance == "ta-01ABC"
    assert (
        PushTarget.from_settings(Settings(metrics_push_url=url, metrics_push_instance="box-7")).instance
        == "box-7"
    )
    monkeypatch.delenv("MODAL_TASK_ID")
    assert (
        PushTarget.from_settings(Settings(metrics_push_url=url)).instance
        == f"{os.uname().nodename}-{os.getpid()}"
    )


def test_credentials_leave_the_url_and_a_bad_url_is_refused_without_echoing_it() -> None:
    t = PushTarget.from_settings(
        Settings(
            metrics_push_url="https://pusher:s%40cret@gw.example.com:9443/prefix/",
            metrics_push_job="tts-staging",
            metrics_push_interval_s=2,
            metrics_push_linger_s=1,
        )
    )
    assert (t.url, t.username, t.password) == ("https://gw.example.com:9443/prefix", "pusher", "s@cret")
    assert (t.job, t.interval_s, t.linger_s) == ("tts-staging", 2.0, 1.0)
    with pytest.raises(ValueError) as refused:
        PushTarget.from_settings(Settings(metrics_push_url="gw.example.com:9091?token=hunter2"))
    assert "hunter2" not in str(refused.value)


# ------------------------------------------------------------------------------------------------ pushing


def test_an_unreachable_gateway_is_counted_logged_once_a_minute_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    pusher = MetricsPusher(
        target(f"http://127.0.0.1:{closed_port()}"), registry=registry_with(1), clock=lambda: now[0]
    )
    pushes, deletes = failures("push"), failures("delete")
    with caplog.at_level(logging.WARNING, logger="services.deployment.metrics_push"):
        started = time.monotonic()
        assert pusher.push() is False
        assert pusher.push() is False
        now[0] += 61.0
        assert pusher.push() is False
        pusher.close()  # final push and delete fail too; close still returns
    assert time.monotonic() - started < 5.0  # refused at once: no linger after a failed final push
    assert failures("push") - pushes == 4 and failures("delete") - deletes == 1
    assert [r.getMessage() for r in caplog.records].count("metrics push failed") == 2
