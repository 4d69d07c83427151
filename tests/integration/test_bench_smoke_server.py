"""The benches that start servers run end to end: the service bench and the TTFA bench against their bench servers,
and the bench harness's server launcher. The in-process bench checks are in tests/unit/bench/test_bench_smoke.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.bench_service import main as bench_service_main

pytestmark = pytest.mark.integration


@pytest.mark.e2e
def test_service_bench_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "service.json"
    bench_service_main([
        "--quick", "--concurrency", "2", "--sample-rates", "16000", "--variants", "baseline",
        "--min-streams", "2", "--text", "Hello there.", "--rate", "400", "--no-plots", "--out", str(out),
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert "| variant | out Hz |" in printed and "Total wall time" in printed
    result = json.loads(out.read_text())
    (level,) = result["levels"]
    assert level["streams"] == 2 and level["failed"] == 0
    assert level["ttfb_p50_s"] > 0 and level["audio_s"] > 0
    assert level["service_added_p50_s"] is not None  # engine records were joined to the client's streams
    assert level["cpu_s_per_audio_s"] is not None and level["stages"]["decode"]["calls"] > 0


@pytest.mark.e2e
def test_ttfa_bench_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.bench_ttfa import main as bench_ttfa_main

    out = tmp_path / "ttfa.json"
    bench_ttfa_main([
        "--quick", "--rates", "400", "--concurrency", "1,2", "--schedules", "exact,balanced",
        "--voices", "fixed,style,style-pinned", "--free-voices", "fixed", "--before-voices", "fixed",
        "--streams", "1", "--min-streams", "2", "--repeats", "1", "--text", "Hello there.",
        "--snr-config", "demo", "--snr-tokens", "60", "--snr-seeds", "1", "--no-plot", "--out", str(out),
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert "| tok/s | codec | voice |" in printed and "Total wall time" in printed
    result = json.loads(out.read_text())
    rows = {
        (r["codec"], r["voice"], r["variant"], r["schedule"], r["concurrency"]): r for r in result["rows"]
    }
    assert len(rows) == 2 * 2 * (
        4 + 2
    )  # schedules x levels x (demo: 3 voices + fixed before; free: now, before)
    assert all(r["failed"] == 0 and r["ttfa_p50_s"] > 0 for r in rows.values())
    # Steps before audio come from the server: a style voice first generates 39 ids (acoustic + global block).
    fixed, style = rows["demo", "fixed", "now", "balanced", 1], rows["demo", "style", "now", "balanced", 1]
    assert fixed["preamble_ids"] == 0 and style["preamble_ids"] == 39
    assert fixed["steps_before_audio"] >= 16 and style["steps_before_audio"] >= 39 + 16
    assert rows["demo", "style-pinned", "now", "balanced", 1]["preamble_ids"] == 0  # pinned at start
    assert fixed["server_ttfa_p50_s"] is not None and fixed["ideal_ttfa_s"] == pytest.approx(15 / 400)
    summary = {(s["codec"], s["voice"], s["variant"], s["schedule"]): s for s in result["summary"]}
    assert summary["free", "fixed", "now", "exact"]["first_second_snr_db"] > 40
    gc_ms = result["env"][
        "forced_full_gc_ms"
    ]  # the start-up heap frozen after warm-up: a full collection is short
    assert gc_ms["now"] < gc_ms["before"]


def test_a_bench_server_names_the_shell_settings_it_leaves_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from bench.harness import start_server

    monkeypatch.setenv("TTS_SHELL_ONLY", "1")
    monkeypatch.setenv("TTS_PASSED", "1")
    argv = [sys.executable, "-c", "import os, sys; sys.exit('TTS_SHELL_ONLY' in os.environ)"]
    with pytest.raises(RuntimeError, match="server exited with code"):
        start_server(lambda port: argv, {"TTS_PASSED": "2"}, tmp_path / "server.log", ready_s=10)
    err = capsys.readouterr().err
    assert "TTS_SHELL_ONLY" in err and "TTS_PASSED" not in err
