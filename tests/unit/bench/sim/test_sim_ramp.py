"""bench/sim/ramp.py: the engine rate a chunk schedule needs, and what streams at that rate cost the device."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.sim.ramp import MODEL, CodecFloor, codec_floor, dry_seconds, needed_rate, peak_share
from bench.sim.windows import PlannedDecode, plan_decode
from bench.standin.cost_model import CostModel
from core.streaming import StreamingConfig


def _window(ready_at: int, sent: int) -> PlannedDecode:
    return PlannedDecode(ready_at, 0, ready_at, 0, sent, False, sent)


def test_a_listener_runs_dry_only_when_a_window_is_ready_after_the_audio_before_it_ends() -> None:
    # 25 tokens out at 49 made, the next 50 at 99: at real time the second is ready 1.0 s after the first, when
    # 0.5 s of audio and a 0.1 s prebuffer have played, so the listener waits 0.4 s; at 2x, 0.5 s later: in time.
    windows = [_window(49, 25), _window(99, 50)]
    assert dry_seconds(windows, 1.0, 0.1) == pytest.approx(0.4)
    assert dry_seconds(windows, 2.0, 0.1) == 0.0


def test_the_rate_a_schedule_needs_follows_its_growth() -> None:
    base = StreamingConfig()
    rates = [needed_rate(replace(base, growth=g).for_latency("exact"), 0.1) for g in (1.0, 1.1, 1.5, 2.0)]
    assert rates == sorted(rates)
    assert rates[0] <= 1.0  # chunks that never grow need only real time
    assert rates[2] >= 1.4  # the served growth needs about its own factor
    served = replace(base, growth=1.5).for_latency("exact")
    rate = needed_rate(served, 0.1)
    for length in (400, 500, 600):
        windows = plan_decode(served, length)
        assert dry_seconds(windows, rate, 0.1) == 0.0
    assert any(dry_seconds(plan_decode(served, n), rate * 0.95, 0.1) > 0 for n in (400, 500, 600))


def test_a_longer_prebuffer_needs_less_rate() -> None:
    balanced = StreamingConfig(growth=1.5).for_latency("balanced")
    assert needed_rate(balanced, 0.5) < needed_rate(balanced, 0.1)


def test_the_engine_in_lockstep_costs_its_steps_and_the_codec_its_audio() -> None:
    model = CostModel.load(MODEL)
    share = peak_share(model, 250, 1.0, CodecFloor(decode_ms=2.0, sr_ms=0.0))
    # 50 steps a second of 3 ms + 0.02 ms x 250 rows; 250 audio seconds a second at 2 ms each
    assert share["engine"] == pytest.approx(50 * (3.0 + 0.02 * 250) / 1000)
    assert share["bicodec"] == pytest.approx(0.5)
    assert share["total"] == pytest.approx(share["engine"] + share["bicodec"])


def test_the_codec_floor_sits_between_the_kept_tokens_and_the_whole_windows() -> None:
    model = CostModel.load(MODEL)
    config = StreamingConfig(growth=1.5).for_latency("exact")
    floor = codec_floor(model, config, 16_000)
    assert floor.sr_ms == 0.0
    windows = plan_decode(config, 500)
    whole = sum(w.length for w in windows) * model.decode.per_unit / 10.0
    assert 50 * model.decode.per_unit * (1 - 0.3) < floor.decode_ms < whole
    assert codec_floor(model, config, 48_000).sr_ms > 0.0


def test_the_simulated_check_runs_a_burst_on_the_schedule_it_names() -> None:
    from bench.sim.ramp import simulate_case

    row = simulate_case((str(MODEL), (12, 16_000, "exact", 1.1), 0))
    assert (row["streams"], row["latency"], row["growth"], row["seed"]) == (12, "exact", 1.1, 0)
    assert row["underrunning"] == 0 and row["ttfa_ms_p95"] > 0
