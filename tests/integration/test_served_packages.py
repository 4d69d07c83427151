"""The GPU kit's package record is what the service loads now: bench/gpu/record_packages.py serves one request of
each kind on a real server (the paced app, demo checkpoint, warm-up on) and compares the distributions it loaded with
the committed bench/gpu/served_packages.json; one loaded but missing there (it would not be carried to the GPU) fails
with the command that rerecords it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_every_package_the_service_loads_is_in_the_committed_record() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_")}
    done = subprocess.run(
        [sys.executable, "bench/gpu/record_packages.py", "--check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "covers all" in done.stdout
