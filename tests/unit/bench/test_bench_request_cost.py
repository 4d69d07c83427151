"""bench/bench_request_cost.py: the fit that splits a server's CPU into per-request and per-audio-second parts."""

from __future__ import annotations

import pytest

from bench.bench_request_cost import fit


def _row(text: str, requests: int, audio_s: float, wall_s: float, idle: float) -> dict[str, float | str]:
    cpu = 0.004 * requests + 0.0015 * audio_s + idle * wall_s  # 4 ms a request, 1.5 ms an audio second
    return {"text": text, "requests": requests, "audio_s": audio_s, "wall_s": wall_s, "cpu_s": cpu}


def test_the_fit_recovers_the_per_request_and_per_audio_second_costs_less_the_idle_burn() -> None:
    rows = [
        _row("short", 128, 190.0, 2.3, 0.05),
        _row("long", 128, 1460.0, 17.8, 0.05),
        _row("short", 64, 95.0, 1.2, 0.05),
    ]
    result = fit(rows, 0.05, "cpu_s")
    assert result is not None
    assert result["per_request_ms"] == pytest.approx(4.0)
    assert result["per_audio_s_ms"] == pytest.approx(1.5)
    assert result["residual_rms_ms_per_request"] == pytest.approx(0.0, abs=1e-9)


def test_one_kind_of_request_cannot_split_the_two() -> None:
    assert fit([_row("short", 128, 190.0, 2.3, 0.0), _row("short", 64, 95.0, 1.2, 0.0)], 0.0, "cpu_s") is None
