"""The GPU kit's packages (bench/gpu/wheels.py): what it carries comes from the recorded serving run
(bench/gpu/served_packages.json, written by bench/gpu/record_packages.py), minus the lent image's packages, whose
list must stay the device tool's KINDS.md list. The recording itself runs in
tests/integration/test_served_packages.py; the image recreated here in tests/integration/test_gpu_image_venv.py."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bench.gpu import image_venv, record_packages, wheels

ROOT = Path(__file__).resolve().parents[4]
KINDS = Path("device") / "KINDS.md"


def kinds_md() -> Path | None:
    """The device tool's KINDS.md: $KINDS_MD, else a `.library/device/KINDS.md` beside a folder above the checkout
    (where the workplace keeps it); None where neither is readable (CI)."""
    if os.environ.get("KINDS_MD"):
        return Path(os.environ["KINDS_MD"])
    for parent in ROOT.parents:
        candidate = parent / ".library" / KINDS
        if candidate.is_file():
            return candidate
    return None


def test_the_image_list_is_the_device_tools_list() -> None:
    path = kinds_md()
    if path is None or not path.is_file():
        pytest.skip("the device tool's KINDS.md is not readable here (CI): nothing to compare with")
    text = path.read_text()
    match = re.search(r"## Python packages already there.*?Packages: (.*?)\.\s*$", text, re.S | re.M)
    assert match, f"{path} has no 'Packages:' line under 'Python packages already there'"
    listed = {name.strip() for name in match.group(1).split(",")}
    assert set(wheels.GPU_IMAGE) == listed, (
        f"wheels.GPU_IMAGE differs from {path}: only in KINDS.md {sorted(listed - wheels.GPU_IMAGE)}, only in "
        f"wheels.py {sorted(wheels.GPU_IMAGE - listed)} (bench/gpu/README.md says how to refresh)"
    )


def test_the_carried_list_is_the_recorded_run_minus_the_image() -> None:
    served = wheels.served()
    carried = set(wheels.carried(served))
    # What a start-up import list missed (the H200's warm-up failure), and what only requests load.
    assert {
        "rjieba",
        "websockets",
        "wyoming",
        "pypdfium2",
        "python-docx",
        "fastapi",
        "uvicorn",
        "av",
        "soxr",
    } <= carried
    assert not carried & {"torch", "numpy", "transformers", "httpx", "prometheus-client", "pyyaml"}
    assert carried == set(served) - wheels.GPU_IMAGE - {d for d in served if d.startswith("nvidia-")}
    assert {spec.split("==")[0] for spec in wheels.needed()} == carried


def test_the_record_says_which_requests_it_ran() -> None:
    import json

    record = json.loads(wheels.RECORD.read_text())
    requests = set(record["requests"])
    for kind in (
        "48 kHz wav",
        "timestamps zh",
        "cloned voice",
        "socket wyoming",
        "socket elevenlabs 16000 Hz",
    ):
        assert kind in requests
    assert {f"format {fmt}" for fmt in ("wav", "mp3", "opus", "flac", "aac", "pcm")} <= requests
    assert any(r.startswith("job") for r in requests)


def test_a_loaded_package_missing_from_the_record_is_what_matters() -> None:
    recorded = {"rjieba": ["rjieba"], "fastapi": ["fastapi"]}
    committed = {"fastapi": ["fastapi"], "watchfiles": ["watchfiles"]}
    assert record_packages.compare(recorded, committed) == (["rjieba"], ["watchfiles"])


def test_the_image_venv_holds_the_images_share_with_what_it_needs_and_exactly_the_carried_list() -> None:
    specs = image_venv.specs()
    names = [spec.split("==")[0] for spec in specs]
    assert len(names) == len(set(names))
    image = {n for n in names if n in wheels.GPU_IMAGE}
    assert {"torch", "numpy", "transformers"} <= image
    assert (
        "huggingface-hub" in image and "tokenizers" in image
    )  # transformers' own requirements, from the image
    assert set(names) - image == set(wheels.carried(wheels.served()))
