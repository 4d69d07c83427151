"""Self-hosted weights download (core.weights) in-process: full digests, bad files set aside (never deleted), a
directory holding another checkpoint refused. Downloads from a real HTTP server on loopback (partial downloads
resumed, the command line) are in tests/integration/test_weights_server.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from core import weights
from core.weights import ExpectedFile, WeightsError


def test_every_published_digest_is_full_and_the_llm_digest_is_the_corrected_one() -> None:
    files = {f.path: f for f in weights.SPARK_FILES + weights.WAV2VEC2_FILES}
    assert files["LLM/model.safetensors"].sha256 == (
        "54825baf0a2f6076eb3c78fa1d22a95aee225f59070a8b295f8169db860eb109"
    )
    assert files["BiCodec/model.safetensors"].sha256 == (
        "e9940cd48d4446e4340ced82d234bf5618350dd9f5db900ebe47a4fdb03867ec"
    )
    assert files["config.yaml"].sha256 == "49a07abffcdfb5358e91eda83b1f4f8068f54b0a4e1ef1ef6ac22d9a312a7ae3"
    with pytest.raises(ValueError, match="full 64 hex"):
        ExpectedFile("x", 1, "97432243")


def test_a_mismatch_keeps_the_file_aside_and_names_both_digests(tmp_path: Path) -> None:
    data = b"not the released weights"
    (tmp_path / "LLM").mkdir()
    (tmp_path / "LLM" / "model.safetensors").write_bytes(data)
    expected = ExpectedFile("LLM/model.safetensors", len(data), "a" * 64)
    (report,) = weights.verify_tree(tmp_path, [expected])
    found = hashlib.sha256(data).hexdigest()
    assert report.status == "SHA256 MISMATCH" and not report.ok
    assert report.moved_to == f"LLM/model.safetensors.rejected-{found[:12]}"
    assert (tmp_path / report.moved_to).read_bytes() == data  # kept, byte for byte
    assert not (tmp_path / "LLM" / "model.safetensors").exists()  # out of the loader's way
    text = weights.format_reports([report])
    assert f"expected {'a' * 64}" in text and f"found {found}" in text and report.moved_to in text


def test_download_refuses_a_directory_holding_a_finetune_or_another_revision(tmp_path: Path) -> None:
    finetune = tmp_path / "ft"
    finetune.mkdir()
    (finetune / "model.safetensors").write_bytes(b"my fine-tune")
    with pytest.raises(WeightsError, match="already holds a checkpoint.*model.safetensors"):
        weights.download_spark(finetune, base_url="http://127.0.0.1:9", log=lambda m: None)
    assert (finetune / "model.safetensors").read_bytes() == b"my fine-tune"
    assert not (finetune / weights.STAMP).exists()
    other = tmp_path / "other"
    weights.write_stamp(other, weights.SPARK_REPO, "0" * 40)
    with pytest.raises(WeightsError, match="refusing to write"):
        weights.download_spark(other, base_url="http://127.0.0.1:9", log=lambda m: None)


def test_an_unreachable_hub_fails_in_one_line_with_the_way_out(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:  # a loopback port nothing listens on: the connection is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{port}",
        "PYTHONPATH": str(Path(weights.__file__).parents[1]),
    }
    env.pop("TTS_WEIGHTS_BASE_URL", None)
    env.pop("TTS_WEIGHTS_MANIFEST", None)
    done = subprocess.run(
        [sys.executable, "-m", "core.weights", str(tmp_path / "model")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"127.0.0.1:{port}" in lines[0]
    assert "HF_ENDPOINT" in lines[0] and "mirror" in lines[0] and "--verify-only" in lines[0]
