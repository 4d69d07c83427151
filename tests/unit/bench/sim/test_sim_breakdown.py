"""The H200 cost model's per-length prenet share, and `python -m bench sim load --breakdown`'s ledger: every device second
lands in one term, first windows are told from steady ones, and the spans are the ones documented (virtual clock;
no wall timings)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.sim.breakdown import (
    NEED_COLUMNS,
    TERMS,
    Ledger,
    codec_parts,
    format_table,
    most_playing,
    need_cells,
    playing_need,
)
from bench.sim.run import SimConfig, simulate
from bench.standin.cost_model import CostModel, EngineStep
from services.device.calls import Call
from services.device.telemetry import SchedulerStats
from services.device.windows import DecodeWindow

ROOT = Path(__file__).resolve().parents[4]
BASE = {
    "name": "t",
    "llm_step_ms": {"fixed": 3.0, "per_row": 0.02},
    "llm_prefill_ms": {"fixed": 3.0, "per_token": 0.004},
    "decode_ms": {"fixed": 1.8, "per_token": 0.01775, "prenet_share": {"48": 0.30, "96": 0.19, "192": 0.11}},
    "sr_ms": {"fixed": 1.6, "per_input_sample": 8.6e-5},
    "host_ms": {"per_audio_second": 1.5},
}


def _window(keep_start: int, keep_end: int) -> DecodeWindow:
    return DecodeWindow(np.ones(16, np.int32), None, keep_start, keep_end)


def _model(**decode: object) -> CostModel:
    data = json.loads(json.dumps(BASE))
    data["decode_ms"].update(decode)
    return CostModel.from_dict(data)


def test_the_prenet_share_is_interpolated_by_prenet_length_and_held_beyond_the_ends() -> None:
    model = _model()
    assert model.prenet_share(48) == pytest.approx(0.30)
    assert model.prenet_share(72) == pytest.approx(0.245)  # halfway between 48 and 96
    assert model.prenet_share(192) == pytest.approx(0.11)
    assert model.prenet_share(16) == pytest.approx(0.30)
    assert model.prenet_share(400) == pytest.approx(0.11)
    assert _model(prenet_share=0.05).prenet_share(48) == pytest.approx(0.05)


def test_a_decode_call_pays_the_share_at_its_prenet_length() -> None:
    model = _model()
    window = DecodeWindow(np.arange(40, dtype=np.int32), None, 8, 32)
    call = Call("decode", (window,), 32, 1, spans=((0, 32),), margin=8)  # the prenet reads 32 + 2 x 8 = 48
    share = 0.30
    expected = (1.8 + 0.01775 * (share * 48 + (1 - share) * 32)) / 1000
    assert model.call_seconds(call) == pytest.approx(expected)


@pytest.mark.parametrize(
    "share, message",
    [
        ({}, "at least one"),
        ({"0": 0.1}, "positive"),
        ({"48": 1.5}, r"\[0, 1\]"),
        ("x", "number"),
        (-0.1, r"\[0"),
    ],
)
def test_a_bad_prenet_share_is_refused_with_the_field_named(share: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        _model(prenet_share=share)
    assert "decode_ms.prenet_share" in str(info.value)


def test_the_h200_file_holds_the_measured_fits() -> None:
    model = CostModel.load(ROOT / "bench" / "cost_models" / "h200-graphs.json")
    assert (model.decode.fixed, model.decode.per_unit) == (1.8, 0.01775)
    assert (model.sr.fixed, model.sr.per_unit) == (1.6, 8.6e-5)
    assert [model.prenet_share(n) for n in (48, 96, 192)] == pytest.approx([0.30, 0.19, 0.11])
    assert model.llm_step.per_unit == 0.02


def test_the_ledger_splits_a_step_into_prefill_and_steps_and_a_call_by_its_first_rows() -> None:
    ledger = Ledger(_model())
    ledger.observe("llm", 0.0, 0.010, EngineStep(rows=4, newcomers=2, prefill_seconds=0.004))
    first, steady = _window(0, 8), _window(4, 12)
    ledger.mark_first(first)
    ledger.observe("decode", 0.010, 0.014, Call("decode", (first, steady), 16, 2))
    ledger.note_host(0.0, 0.002)
    rows = {r["term"]: r for r in ledger.span_table(0.0, 0.020, stream_seconds=0.04)}
    assert rows["prefill"]["device_s"] == pytest.approx(0.004)
    assert rows["llm steps"]["device_s"] == pytest.approx(0.006)
    assert rows["llm steps"]["rows_per_call"] == 4
    assert rows["first windows"]["device_s"] == pytest.approx(0.002)
    assert rows["steady windows"]["device_s"] == pytest.approx(0.002)
    assert rows["first windows"]["rows_per_call"] == 2  # the call's rows, not the term's
    assert rows["host (API CPU)"]["device_s"] == pytest.approx(0.002)
    assert rows["device idle"]["device_s"] == pytest.approx(0.006)
    # A span cuts a use in proportion
    half = {r["term"]: r for r in ledger.span_table(0.0, 0.007, stream_seconds=0.0)}
    assert half["llm steps"]["device_s"] == pytest.approx(0.003)
    assert "| term |" in format_table(list(rows.values()), ("term", "device_s"))


def test_a_simulated_burst_accounts_every_device_second_in_one_term() -> None:
    report = simulate(
        SimConfig(CostModel.from_dict(BASE), 12, sample_rate=48_000, arrive_within_s=0.5, audio_seconds=2.0)
    )
    run = report["breakdown"]["run"]
    terms = {r["term"]: r for r in run["terms"]}
    assert set(TERMS) <= set(terms)  # 48 kHz: every term has work
    device = sum(terms[t]["device_s"] for t in TERMS)
    assert device == pytest.approx(sum(report["gpu_busy_seconds"].values()), abs=0.005)
    # each admitted stream's first decode window, and its first AP-BWE window, counted once
    assert terms["first windows"]["calls"] <= report["streams_admitted"]
    onboarding = report["breakdown"]["onboarding"]
    assert onboarding["to_s"] <= run["to_s"]
    assert onboarding["admission"]["decisions"] == report["streams_requested"]
    # what the admitted streams need while all of them play: the engine at real time, the codec at the run's rate
    need = report["breakdown"]["playing_need"]
    assert (
        need["streams"] == report["streams_admitted"]
    )  # 2 s each, all started within 0.5 s: all play together
    codec_s = sum(terms[t]["device_s"] for t in TERMS[2:])
    assert need["codec_s_per_s"] == pytest.approx(
        need["streams"] * codec_s / 24.0, rel=0.2
    )  # ~2 s of audio each
    assert need["device_s_per_s"] == pytest.approx(need["engine_s_per_s"] + need["codec_s_per_s"], abs=0.002)


def test_the_codec_s_seconds_per_audio_second_split_into_the_audio_s_own_and_what_the_calls_add() -> None:
    stats = SchedulerStats(
        kept_tokens=500,  # 10 s of audio
        rows_by_kind={"decode": 5, "sr": 10},
        valid_work_by_kind={"decode": 650, "sr": 200_000},
    )
    terms = [
        {"term": "steady windows", "device_s": 0.02, "fixed_s": 0.009},
        {"term": "AP-BWE steady", "device_s": 0.05, "fixed_s": 0.016},
        {"term": "llm steps", "device_s": 9.0, "fixed_s": 5.0},  # not the codec's
    ]
    parts = codec_parts(CostModel.from_dict(BASE), terms, stats)
    assert parts == {
        "audio_s": 10.0,
        "total_ms": 7.0,  # 0.07 s over 10 s
        "own_ms": 2.26,  # 50 tokens at 0.01775 ms and 16,000 samples at 8.6e-5 ms a second
        "fixed_ms": 2.5,
        "bicodec_beyond_ms": 0.21,  # 0.011 s past the fixed parts, 0.008875 of it the kept tokens'
        "apbwe_beyond_ms": 2.02,
        "window_tokens_per_kept": 1.3,
        "kept_tokens_per_decode_row": 100.0,
        "apbwe_samples_per_audio_s": 20_000,
        "apbwe_padding": 0.98,  # 0.034 s for rows whose own samples cost 0.0172
    }
    # Background jobs' calls are in the terms and not in the kept tokens: no split rather than a wrong one.
    stats.background_calls = 1
    assert codec_parts(CostModel.from_dict(BASE), terms, stats) is None


@pytest.mark.parametrize("sample_rate", [16_000, 48_000])
def test_a_simulated_run_s_codec_parts_add_up_to_its_codec_seconds(sample_rate: int) -> None:
    report = simulate(
        SimConfig(
            CostModel.from_dict(BASE), 12, sample_rate=sample_rate, arrive_within_s=0.5, audio_seconds=2.0
        )
    )
    parts = report["breakdown"]["codec_parts"]
    codec_s = sum(r["device_s"] for r in report["breakdown"]["run"]["terms"] if r["term"] in TERMS[2:])
    assert parts["total_ms"] == pytest.approx(1000 * codec_s / parts["audio_s"], abs=0.02)
    beyond = [parts["bicodec_beyond_ms"], parts["apbwe_beyond_ms"] or 0.0]
    assert parts["own_ms"] + parts["fixed_ms"] + sum(beyond) == pytest.approx(parts["total_ms"], abs=0.03)
    assert parts["window_tokens_per_kept"] >= 1.0 and min(beyond) >= 0.0
    if sample_rate == 16_000:
        assert parts["own_ms"] == 0.89 and parts["apbwe_beyond_ms"] is None
    else:
        assert parts["own_ms"] == 2.26 and parts["apbwe_samples_per_audio_s"] >= 16_000


def test_the_playing_need_is_the_engine_at_real_time_and_the_codec_at_its_rate() -> None:
    model = CostModel.from_dict(BASE)  # a step of 3 ms + 0.02 ms per row
    need = playing_need(model, 100, codec_seconds=2.0, audio_seconds=1000.0)
    assert need["engine_s_per_s"] == pytest.approx(50 * (3.0 + 0.02 * 100) / 1000)  # 50 steps a second: 0.25
    assert need["codec_ms_per_audio_s"] == pytest.approx(2.0)
    assert need["codec_s_per_s"] == pytest.approx(0.2)  # 100 streams at 2 ms per audio second
    assert need["device_s_per_s"] == pytest.approx(0.45)
    assert playing_need(model, 0, 0.0, 0.0)["device_s_per_s"] is None  # nothing admitted: no rate


def test_the_most_playing_at_once_counts_overlaps_and_not_streams_that_ended() -> None:
    assert most_playing([]) == 0
    assert most_playing([(0.0, 10.0), (1.0, 11.0), (2.0, 12.0)]) == 3  # a burst: all together
    assert (
        most_playing([(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]) == 1
    )  # one after another (an end before a start)
    assert most_playing([(0.0, 10.0), (5.0, 15.0), (12.0, 20.0)]) == 2


def test_need_cells_give_each_figure_over_seeds() -> None:
    model = CostModel.from_dict(BASE)
    needs = [playing_need(model, 100, 2.0, 1000.0), playing_need(model, 120, 2.0, 1000.0)]
    cells = need_cells(needs)
    assert len(cells) == len(NEED_COLUMNS)
    assert cells[0] == "100-120"  # the most playing at once
    assert cells[3] == "2.00"  # the same codec rate on both seeds: one value
    assert need_cells([playing_need(model, 0, 0.0, 0.0)])[2] == ""  # no rate: blank
