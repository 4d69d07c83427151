"""Running the kit in the lent GPU image recreated on this CPU (the `image_python` fixture, tests/integration/conftest.py),
shared by the test files that do (test_gpu_image_venv.py: the service steps; test_gpu_image_steps.py: the one call's
other steps and the next call's). Two files, so the test workers run them side by side."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_kit(
    python: Path, script: str, *args: str, timeout_s: float, **env: str
) -> subprocess.CompletedProcess:
    """A kit script run as on the lent machine: from the checkout, with none of this shell's service settings."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith("TTS_") and k not in ("OUT", "PYTHONPATH")
    }
    return subprocess.run(
        [str(python), script, *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def run_acceptance(python: Path, results: Path, steps: str, **env: str) -> subprocess.CompletedProcess:
    args = ["--quick", "--device", "cpu", "--steps", steps, "--results", str(results), "--out", str(results)]
    return run_kit(python, "bench/gpu/acceptance.py", *args, timeout_s=900, **env)
