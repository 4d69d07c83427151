"""Fleet-correct metrics: two servers push to a real Pushgateway, a real Prometheus scrapes it with the
repository's `honor_labels` job and also scrapes both servers' /metrics directly (the ground truth). The dashboard's
own queries (requests/s, TTFB p95, error ratio, gauges) give the same answers through either path, and the sums equal
the requests sent. Then one server gets SIGTERM: its group leaves the gateway, instant gauge sums drop it, and
queries over a window that covers its life still count every request it served, its last ones included.

Rates: Prometheus extrapolates rate() from the first and last sample in the window; the two paths are scraped at
different phases, so their sampled spans differ by up to two scrape intervals (1 s each). Rate-based values are
therefore compared with a relative tolerance of 2.5 s / (window - 2.5 s); raw counters, histogram buckets and
gauges are compared exactly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.conftest import RunningServer, start_server
from tests.integration.prometheus_stack import (
    Daemon,
    query,
    start_prometheus,
    start_pushgateway,
    values_by,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
JOB = "veena3-tts"  # TTS_METRICS_PUSH_JOB's default: the dashboard's Source for the push path
DIRECT = "direct"  # the scrape job of the servers' own /metrics
INSTANCES = ("ta-fleet-a", "ta-fleet-b")  # as MODAL_TASK_ID: what a Modal container pushes under
MIN_WINDOW_S = 50  # longer windows shrink the rate-extrapolation difference between the paths
OK = {"text": "Hello there.", "speaker": "default", "seed": 1}
# With TTS_MAX_MODEL_LEN=256 this prompt leaves the model fewer steps than the 32 global tokens it must produce:
# synthesis starts, then fails with 500 GENERATION_FAILED, counted in veena3_tts_requests_failed_total.
FAILING = {"text": ("word " * 44)[:218].strip() + ".", "speaker": "default", "seed": 1, "chunking": False}


@dataclass
class Sent:
    """What the test sent to one server: requests by (stream, format), failures, TTFB observations by stream."""

    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    failed: int = 0
    ttfb: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.requests.values())


def send(server: RunningServer, sent: Sent, *, streams: int = 0, pcm: int = 0, fails: int = 0) -> None:
    with httpx.Client(base_url=server.base_url, timeout=120) as client:
        for body, count, key in (
            (OK | {"stream": True}, streams, ("true", "wav")),
            (OK | {"format": "pcm"}, pcm, ("false", "pcm")),
            (FAILING, fails, ("false", "wav")),
        ):
            for _ in range(count):
                response = client.post("/v1/tts/generate", json=body)
                if body is FAILING:
                    assert response.status_code == 500, response.text
                    assert response.json()["error"]["code"] == "GENERATION_FAILED"
                    sent.failed += 1
                else:
                    assert response.status_code == 200, response.text
                    sent.ttfb[key[0]] = sent.ttfb.get(key[0], 0) + 1
                sent.requests[key] = sent.requests.get(key, 0) + 1


def dashboard_expr(title: str, ref: str, job: str, window_s: int) -> str:
    """A panel's query as Grafana sends it: the job (Source) picked, every instance, a fixed rate window."""
    board = json.loads((ROOT / "deploy" / "grafana" / "dashboard.json").read_text())
    panel = next(p for p in board["panels"] if p.get("title") == title)
    expr = next(t["expr"] for t in panel["targets"] if t["refId"] == ref)
    return expr.replace("$__rate_interval", f"{window_s}s").replace("$instance", ".*").replace("$job", job)


def pushgateway_job(gateway: Daemon) -> dict:
    """The repository's scrape job for the gateway (deploy/prometheus/prometheus.yml), aimed at the test gateway."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "pushgateway")
    assert job["honor_labels"] is True
    return job | {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "static_configs": [{"targets": [gateway.url.removeprefix("http://")]}],
    }


def groups(gateway: Daemon) -> set[str]:
    body = httpx.get(f"{gateway.url}/api/v1/metrics", timeout=10).json()
    return {g["labels"]["instance"] for g in body["data"] if g["labels"].get("job") == JOB}


@dataclass
class Fleet:
    gateway: Daemon
    prometheus: Daemon
    servers: dict[str, RunningServer]


@pytest.fixture
def fleet(demo_model_dir: Path, tmp_path: Path) -> Iterator[Fleet]:
    gateway = start_pushgateway(tmp_path)
    servers: dict[str, RunningServer] = {}
    prometheus: Daemon | None = None
    try:
        for instance in INSTANCES:
            servers[instance] = start_server(
                demo_model_dir,
                tmp_path / f"{instance}.log",
                {
                    "TTS_METRICS_PUSH_URL": gateway.url,
                    "TTS_METRICS_PUSH_INTERVAL_S": "0.5",
                    "TTS_METRICS_PUSH_LINGER_S": "3",  # three scrapes of the gateway see the final push
                    "MODAL_TASK_ID": instance,
                    "TTS_MAX_MODEL_LEN": "256",
                    "TTS_REQUEST_LOG_SPOOL_DIR": "",
                },
            )
        direct = {
            "job_name": DIRECT,
            "static_configs": [{"targets": [s.base_url.removeprefix("http://") for s in servers.values()]}],
        }
        prometheus = start_prometheus(tmp_path, [pushgateway_job(gateway), direct])
        yield Fleet(gateway, prometheus, servers)
    finally:
        for server in servers.values():
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait(timeout=30)
        if prometheus is not None:
            prometheus.stop()
        gateway.stop()


def test_pushed_and_scraped_metrics_agree_and_a_stopped_container_leaves(fleet: Fleet) -> None:
    prom = fleet.prometheus
    a, b = (fleet.servers[i] for i in INSTANCES)
    sent = {i: Sent() for i in INSTANCES}
    started_at = time.time()

    def total(job: str, metric: str = "veena3_tts_requests_total") -> float | None:
        values = values_by(query(prom, f'sum({metric}{{job="{job}"}})'))
        return values.get("")

    def both_paths_show(expected_requests: int, expected_failed: int) -> object:
        seen = [(total(j), total(j, "veena3_tts_requests_failed_total")) for j in (JOB, DIRECT)]
        return True if all(s == (expected_requests, expected_failed) for s in seen) else seen

    # Warm-up: every labelled series exists before the measured window (a new series' first value is no increase).
    for server, instance in ((a, INSTANCES[0]), (b, INSTANCES[1])):
        send(server, sent[instance], streams=1, pcm=1, fails=1)
    wait_until(lambda: both_paths_show(6, 2), "warm-up counts in Prometheus through both paths")
    time.sleep(1.5)
    t0 = time.time()
    before = {i: Sent(dict(s.requests), s.failed, dict(s.ttfb)) for i, s in sent.items()}
    # A scraped sample is stamped when the scrape starts but holds what the server had when it answered (later, on a
    # busy machine): keep the traffic well clear of the window's start so its first samples are the warm-up values.
    time.sleep(2.5)

    # Known traffic: A 4 streamed + 3 pcm + 2 failing; B 2 + 2 + 1.
    send(a, sent[INSTANCES[0]], streams=4, pcm=3, fails=2)
    send(b, sent[INSTANCES[1]], streams=2, pcm=2, fails=1)
    all_requests = sum(s.total for s in sent.values())
    all_failed = sum(s.failed for s in sent.values())
    assert (all_requests, all_failed) == (20, 5)
    wait_until(lambda: both_paths_show(all_requests, all_failed), "measured counts through both paths")
    time.sleep(2.0)
    t1 = max(time.time(), t0 + MIN_WINDOW_S)
    time.sleep(max(0.0, t1 - time.time()) + 1.0)  # t1 is in the past for every query below
    window = math.ceil(t1 - t0)
    tolerance = 2.5 / (window - 2.5)
    measured = all_requests - sum(s.total for s in before.values())
    measured_failed = all_failed - sum(s.failed for s in before.values())

    # Sums of the raw series: exact, and equal to what was sent, through both paths.
    for job in (JOB, DIRECT):
        assert values_by(query(prom, f'sum(veena3_tts_requests_total{{job="{job}"}})', t1)) == {
            "": all_requests
        }
        assert len(query(prom, f'sum by (instance) (veena3_tts_requests_total{{job="{job}"}})', t1)) == 2
    # Same buckets, same counts. The label text differs: the gateway re-renders le="1.0" as le="1" (Prometheus 2 keeps
    # both spellings as written), so never mix the two paths in one `sum by (le)`: the dashboard's Source picks one.
    buckets = {
        job: {
            (r["metric"]["stream"], float(r["metric"]["le"])): float(r["value"][1])
            for r in query(prom, f'sum by (le, stream) (veena3_tts_ttfb_seconds_bucket{{job="{job}"}})', t1)
        }
        for job in (JOB, DIRECT)
    }
    assert buckets[JOB] == buckets[DIRECT] and len(buckets[JOB]) == 2 * 17
    ttfb_sums = [
        values_by(query(prom, f'sum(veena3_tts_ttfb_seconds_sum{{job="{job}"}})', t1))
        for job in (JOB, DIRECT)
    ]
    assert ttfb_sums[0] == ttfb_sums[1]
    observed = {
        stream: float(sum(s.ttfb.get(stream, 0) for s in sent.values())) for stream in ("true", "false")
    }
    for job in (JOB, DIRECT):  # one TTFB observation per successful request
        assert (
            values_by(
                query(prom, f'sum by (stream) (veena3_tts_ttfb_seconds_count{{job="{job}"}})', t1), "stream"
            )
            == observed
        )
    per_instance = values_by(query(prom, f'veena3_tts_requests_failed_total{{job="{JOB}"}}', t1), "instance")
    assert per_instance == {i: float(sent[i].failed) for i in INSTANCES}

    # The dashboard's queries: the push path answers what direct scraping answers.
    def dashboard(title: str, ref: str, job: str, label: str | None = None) -> dict[str, float]:
        return values_by(query(prom, dashboard_expr(title, ref, job, window), t1), label)

    rps = {job: dashboard("Requests/s by format", "A", job, "format") for job in (JOB, DIRECT)}
    assert rps[JOB].keys() == rps[DIRECT].keys() == {"wav", "pcm"}
    for fmt in rps[JOB]:
        assert rps[JOB][fmt] == pytest.approx(rps[DIRECT][fmt], rel=tolerance)
    # ... and requests/s over the window is the measured traffic.
    assert sum(rps[JOB].values()) * window == pytest.approx(measured, rel=tolerance)

    p95 = {job: dashboard("TTFB p50 / p95 / p99", "B", job, "stream") for job in (JOB, DIRECT)}
    assert p95[JOB].keys() == p95[DIRECT].keys() == {"true", "false"}
    for stream in p95[JOB]:
        assert 0 < p95[JOB][stream] == pytest.approx(p95[DIRECT][stream], rel=tolerance)

    ratio = {job: dashboard("Error ratio", "A", job)[""] for job in (JOB, DIRECT)}
    assert ratio[JOB] == pytest.approx(ratio[DIRECT], rel=tolerance)
    assert ratio[JOB] == pytest.approx(measured_failed / measured, rel=2 * tolerance)

    for job in (JOB, DIRECT):  # per-container state: both containers are up and idle
        assert dashboard("Model loaded", "A", job) == {"": 1.0}
        assert dashboard("Active streams", "A", job) == {"": 0.0}
        assert dashboard("Containers reporting", "A", job) == {"": 2.0}

    # SIGTERM to B right after its last requests, before any scrape could have seen them: its final push (held on
    # the gateway for TTS_METRICS_PUSH_LINGER_S) carries them, then its group is deleted.
    assert groups(fleet.gateway) == set(INSTANCES)
    send(b, sent[INSTANCES[1]], streams=2, fails=1)
    b.process.terminate()
    b.process.wait(timeout=90)  # uvicorn re-raises SIGTERM after a clean shutdown: the code is 0 or -15
    assert "Application shutdown complete" in b.log_text(), b.log_text()[-3000:]
    assert groups(fleet.gateway) == {INSTANCES[0]}

    # Instant gauge sums leave B out (its series went stale when the gateway stopped serving them)...
    for job in (JOB, DIRECT):  # the direct path: B's target is down, its series stale too
        wait_until(
            lambda job=job: (
                values_by(query(prom, f'sum(veena3_tts_model_loaded{{job="{job}"}})')) == {"": 1.0}
            ),
            f"B's gauges gone from instant queries ({job})",
        )
    assert values_by(query(prom, dashboard_expr("Containers reporting", "A", JOB, window))) == {"": 1.0}
    assert values_by(query(prom, f'sum(veena3_tts_demo_model{{job="{JOB}"}})')) == {"": 1.0}

    # ... while range queries over its lifetime keep every request it served, the last three included.
    time.sleep(1.0)
    lifetime = math.ceil(time.time() - started_at) + 5
    served = values_by(
        query(
            prom, f'sum by (instance) (max_over_time(veena3_tts_requests_total{{job="{JOB}"}}[{lifetime}s]))'
        ),
        "instance",
    )
    assert served == {i: float(sent[i].total) for i in INSTANCES}
    failed = values_by(
        query(prom, f'sum(max_over_time(veena3_tts_requests_failed_total{{job="{JOB}"}}[{lifetime}s]))')
    )
    assert failed == {"": float(sum(s.failed for s in sent.values()))}
    since_t0 = math.ceil(time.time() - t0)
    rps_after = values_by(query(prom, dashboard_expr("Requests/s by format", "A", JOB, since_t0)), "format")
    counted = sum(rps_after.values()) * since_t0
    assert counted == pytest.approx(
        sum(s.total for s in sent.values()) - sum(s.total for s in before.values()),
        rel=2.5 / (since_t0 - 2.5),
    )
