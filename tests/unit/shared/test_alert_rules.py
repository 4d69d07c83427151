"""Alert rules and the Grafana dashboard only query series the service really exports, and promtool accepts them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shared.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"
METRIC_RE = re.compile(r"\bveena3_tts_[a-z0-9_]+")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus)"
)

# Series names as Prometheus sees them: counters gain _total, histograms expose _bucket/_sum/_count.
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
    "summary": ("_sum", "_count"),
    "info": ("_info",),
}


def exported_series() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def alert_rules() -> list[dict]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[str]:
    def walk(panels: list[dict]) -> list[str]:
        out: list[str] = []
        for panel in panels:
            out += [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
            out += walk(panel.get("panels", []))
        return out

    return walk(dashboard()["panels"])


def test_registry_names_used_by_dashboards_exist() -> None:
    names = exported_series()
    for known in ("veena3_tts_requests_total", "veena3_tts_ttfb_seconds_bucket", "veena3_tts_model_loaded"):
        assert known in names


def test_every_alert_queries_exported_metrics() -> None:
    names = exported_series()
    rules = alert_rules()
    assert rules
    for rule in rules:
        used = set(METRIC_RE.findall(rule["expr"]))
        assert used, f"{rule['alert']} uses none of our metrics"
        assert used <= names, f"{rule['alert']} uses unknown series {sorted(used - names)}"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]


def test_alerts_cover_the_runbook_conditions() -> None:
    by_name = {rule["alert"]: rule for rule in alert_rules()}
    covered = {m for rule in by_name.values() for m in METRIC_RE.findall(rule["expr"])}
    for metric in (
        "veena3_tts_frames_dropped_total",
        "veena3_tts_stream_queue_fill_ratio",
        "veena3_tts_ttfb_seconds_bucket",
        "veena3_tts_requests_failed_total",
        "veena3_tts_model_loaded",
        "veena3_tts_chunk_jitter_seconds_bucket",
        "veena3_tts_pipeline_losses_total",
        "veena3_tts_request_log_dropped_total",
        "veena3_tts_rate_limit_shared_backend_up",
    ):
        assert metric in covered, metric
    queue = by_name["TTSStreamQueueNearFull"]
    assert "> 0.8" in queue["expr"] and queue["for"] == "30s"
    assert "for" not in by_name["TTSFramesDropped"]  # any dropped frame alerts at once


@needs_promtool
def test_promtool_checks_rules() -> None:
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_rule_unit_tests_pass() -> None:
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(ALERT_TESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ALERT_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_is_grafana_json_with_one_datasource_variable() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    # Import placeholders (`__inputs`, `${DS_...}`) are filled only by Grafana's Import dialog, never when a
    # dashboard is provisioned from a file: the dashboard names its datasource through a variable instead.
    assert "__inputs" not in board and "${DS_" not in DASHBOARD.read_text()
    assert board["uid"] and board["title"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


def test_the_provisioned_dashboard_resolves_its_datasource() -> None:
    """Read the files as Grafana's provisioning does at start: the datasources under provisioning/datasources, the
    dashboard providers under provisioning/dashboards and the dashboard files in a provider's path (where compose
    mounts dashboard.json); every datasource reference must then resolve to a provisioned datasource."""
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    datasources = {}
    for path in sorted((provisioning / "datasources").glob("*.y*ml")):
        config = yaml.safe_load(path.read_text())
        assert config["apiVersion"] == 1, path
        for source in config["datasources"]:
            assert source.get("uid"), f"{path.name}: {source['name']} has no uid for dashboards to name"
            datasources[source["uid"]] = source["type"]
    compose = yaml.safe_load((ROOT / "deploy" / "docker" / "compose.yaml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["../grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = [
        provider
        for path in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for provider in yaml.safe_load(path.read_text())["providers"]
    ]
    served = [target for target in mounts.values() if target.endswith(".json")]
    assert served and all(
        any(target.startswith(p["options"]["path"].rstrip("/") + "/") for p in providers) for target in served
    ), "the dashboard is mounted where no provider reads"

    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}

    def resolved(reference: dict) -> str:
        uid = reference["uid"]
        if uid.startswith("${"):
            variable = variables[uid[2:-1]]
            assert variable["type"] == "datasource" and variable["query"] == reference["type"]
            uid = variable["current"]["value"]
        assert datasources.get(uid) == reference["type"], f"{reference} names no provisioned datasource"
        return uid

    references = [v["datasource"] for v in variables.values() if "datasource" in v]
    for panel in board["panels"]:
        if panel["type"] != "row":
            references += [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
    assert len(references) > 30
    assert {resolved(r) for r in references} == {"spark-tts-prometheus"}


def test_dashboard_queries_exported_metrics() -> None:
    names = exported_series()
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    used = {m for expr in exprs for m in METRIC_RE.findall(expr)}
    assert used <= names, f"dashboard uses unknown series {sorted(used - names)}"
    for metric in (
        "veena3_tts_ttfb_seconds_bucket",
        "veena3_tts_rtf_bucket",
        "veena3_tts_active_streams",
        "veena3_tts_requests_total",
        "veena3_tts_requests_failed_total",
        "veena3_tts_frames_dropped_total",
        "veena3_tts_pipeline_losses_total",
        "veena3_tts_stream_queue_fill_ratio",
        "veena3_tts_chunk_jitter_seconds_bucket",
        "veena3_tts_llm_tokens_generated_total",
        "veena3_tts_sr_ready",
        "veena3_tts_request_log_dropped_total",
        "veena3_tts_rate_limit_rejections_total",
    ):
        assert metric in used, metric


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses expressions only inside rule files: wrap each query as a recording rule.
    rules = [
        {
            "record": f"dashboard:q{i}",
            "expr": expr.replace("$__rate_interval", "5m")
            .replace("$instance", ".*")
            .replace("$job", "veena3-tts"),
        }
        for i, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def dashboard_expr(title: str, job: str, ref: str = "A") -> str:
    """A panel's query with Grafana's variables filled in: one job (the source), every instance."""
    panel = next(p for p in dashboard()["panels"] if p.get("title") == title)
    expr = next(t["expr"] for t in panel["targets"] if t["refId"] == ref)
    return expr.replace("$__rate_interval", "5m").replace("$instance", ".*").replace("$job", job)


@needs_promtool
def test_dashboard_gauges_leave_out_push_groups_that_stopped_updating(tmp_path: Path) -> None:
    # Two pushed containers; ta-killed stops pushing at 1m (SIGKILL: its group stays on the gateway with its last
    # values). A host scraped directly (job spark-tts) has no push_time_seconds and is never filtered.
    series = {
        'push_time_seconds{job="veena3-tts", instance="ta-live"}': "0+60x6",
        'push_time_seconds{job="veena3-tts", instance="ta-killed"}': "0 60 60 60 60 60 60",
        'veena3_tts_active_streams{job="veena3-tts", instance="ta-live"}': "2x6",
        'veena3_tts_active_streams{job="veena3-tts", instance="ta-killed"}': "3x6",
        'veena3_tts_active_streams{job="spark-tts", instance="tts:8000"}': "5x6",
        'veena3_tts_model_loaded{job="veena3-tts", instance="ta-live"}': "1x6",
        'veena3_tts_model_loaded{job="veena3-tts", instance="ta-killed"}': "1x6",
        'veena3_tts_model_loaded{job="spark-tts", instance="tts:8000"}': "1x6",
    }
    cases = [  # (panel, job, eval time, value)
        ("Active streams", "veena3-tts", "2m", 5),
        ("Active streams", "veena3-tts", "4m", 2),
        ("Active streams", "spark-tts", "4m", 5),
        ("Containers reporting", "veena3-tts", "2m", 2),
        ("Containers reporting", "veena3-tts", "4m", 1),
        ("Containers reporting", "spark-tts", "4m", 1),
        ("Stale push groups", "veena3-tts", "2m", 0),
        ("Stale push groups", "veena3-tts", "4m", 1),
        ("Stale push groups", "spark-tts", "4m", 0),
    ]
    tests = [
        {
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "promql_expr_test": [
                {
                    "expr": dashboard_expr(title, job),
                    "eval_time": at,
                    "exp_samples": [{"labels": "{}", "value": value}],
                }
                for title, job, at, value in cases
            ],
        }
    ]
    path = tmp_path / "dashboard_test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": tests}))
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
