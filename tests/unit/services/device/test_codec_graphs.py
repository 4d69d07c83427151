"""The codec's CUDA graph capture, planned on a CPU: the order (expected use), the start-up budget, failures, and
which calls replay a graph. Capture itself needs CUDA: here a fake capture advances a fake clock."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.device import DecodeWindow, SchedulerPolicy, SRWindow
from services.device.calls import Call
from services.device.graphs import (
    CapturedGraph,
    CodecGraphs,
    GraphKey,
    GraphPlan,
    capture_within,
    predict_capture_s,
)
from shared import metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class AffineCost:
    """Seconds to capture a key: fixed + per unit of work, per kind (what a capture costs: launches, then runs)."""

    fixed: dict[str, float]
    per_work: dict[str, float]

    def __call__(self, key: GraphKey) -> float:
        return self.fixed[key.kind] + self.per_work[key.kind] * key.work


def fake_capture(clock: FakeClock, cost: Any, fail: frozenset[GraphKey] = frozenset()) -> Any:
    def capture(key: GraphKey) -> CapturedGraph:
        clock.now += cost(key)
        if key in fail:
            raise RuntimeError(f"capture of {key} failed")
        return CapturedGraph(
            key,
            "fp32",
            graph=None,
            inputs=(),
            output=None,
            capture_s=cost(key),  # type: ignore[arg-type]
            pool_bytes=2**20,
            allocated_bytes=0,
        )

    return capture


def dec(length: int, rows: int) -> GraphKey:
    return GraphKey("decode", length, rows)


# ---------------------------------------------------------------------------------------------- the order


def test_the_default_plan_captures_the_fewest_rows_first_decode_before_sr_shortest_first() -> None:
    order = GraphPlan.from_policy(SchedulerPolicy()).ordered()
    assert len(order) == 207
    assert [(k.rows, k.kind, k.length) for k in order] == sorted(
        [(k.rows, k.kind, k.length) for k in order], key=lambda t: (t[0], t[1] != "decode", t[2])
    )
    one_row = order[:22]  # every length bucket of both kinds at one row comes before any two-row shape
    assert {k.rows for k in one_row} == {1} and [k.kind for k in one_row] == ["decode"] * 15 + ["sr"] * 7
    assert order[0] == dec(16, 1) and order[22] == dec(16, 2)
    assert order[-3:] == [dec(32, 64), GraphKey("sr", 2_240, 64), GraphKey("sr", 3_520, 64)]


# ---------------------------------------------------------------------------------------------- the estimate


def test_the_estimate_is_the_latest_capture_of_the_kind_scaled_up_by_work_never_down() -> None:
    assert predict_capture_s(dec(16, 1), []) is None
    assert (
        predict_capture_s(GraphKey("sr", 3_520, 1), [(dec(16, 1), 0.1)]) is None
    )  # another kind says nothing
    done = [(dec(16, 1), 0.1), (GraphKey("sr", 3_520, 1), 5.0), (dec(32, 1), 0.2)]
    assert predict_capture_s(dec(64, 1), done) == pytest.approx(0.4)  # twice the work of the latest decode
    assert predict_capture_s(dec(16, 2), done) == pytest.approx(0.2)  # the same work: the latest as it is
    assert predict_capture_s(dec(16, 1), done) == pytest.approx(0.2)  # smaller: not scaled down
    assert predict_capture_s(GraphKey("sr", 3_520, 2), done) == pytest.approx(10.0)


# ---------------------------------------------------------------------------------------------- the budget


def test_no_budget_captures_every_shape_in_order() -> None:
    clock, order = FakeClock(), GraphPlan.from_policy(SchedulerPolicy()).ordered()
    seen: list[GraphKey] = []
    report = capture_within(
        order, lambda k: (seen.append(k), setattr(clock, "now", clock.now + 1.0)), budget_s=0, clock=clock
    )
    assert seen == order and report.captured == tuple(order)
    assert report.left == () and report.failed == () and report.stopped is None and report.first_eager is None
    assert report.seconds == pytest.approx(207.0) and report.planned == 207


def test_capture_stops_before_the_graph_that_would_overrun_the_budget() -> None:
    clock = FakeClock()
    order = [dec(16, 1), dec(24, 1), dec(32, 1), dec(48, 1), dec(64, 1)]  # 1.0, 1.5, 2.0, 3.0, 4.0 s
    report = capture_within(order, fake_capture(clock, lambda k: k.length / 16), budget_s=5.0, clock=clock)
    # 1 + 1.5 + 2 = 4.5 s spent; the next is predicted at 2 x 48/32 = 3 s: 7.5 > 5, so it is left, and those after it.
    assert report.captured == tuple(order[:3]) and report.left == tuple(order[3:])
    assert report.stopped == "budget" and report.first_eager == dec(48, 1)
    assert report.seconds == pytest.approx(4.5)


def test_the_first_capture_of_a_kind_runs_while_budget_is_left() -> None:
    """Nothing predicts it: it runs if any time is left, once the budget is spent nothing runs."""
    clock = FakeClock()
    order = [dec(16, 1), GraphKey("sr", 3_520, 1), GraphKey("sr", 4_800, 1)]
    cost = AffineCost({"decode": 1.0, "sr": 3.0}, {"decode": 0.0, "sr": 0.0})
    report = capture_within(order, fake_capture(clock, cost), budget_s=2.0, clock=clock)
    assert report.captured == tuple(order[:2]) and report.left == (
        order[2],
    )  # the first SR overran: 4 s of 2
    clock = FakeClock()
    report = capture_within(order, fake_capture(clock, cost), budget_s=1.0, clock=clock)
    assert report.captured == (order[0],) and report.left == tuple(order[1:])


def test_a_failed_capture_is_skipped_and_the_others_serve() -> None:
    clock, order = FakeClock(), [dec(16, 1), dec(24, 1), dec(32, 1), dec(40, 1)]
    report = capture_within(
        order, fake_capture(clock, lambda k: 1.0, fail=frozenset({dec(24, 1)})), clock=clock
    )
    assert report.captured == (dec(16, 1), dec(32, 1), dec(40, 1)) and report.failed == (dec(24, 1),)
    assert report.stopped is None and report.first_eager == dec(24, 1)


def test_two_failures_in_a_row_stop_the_capture() -> None:
    clock, order = FakeClock(), [dec(16, 1), dec(24, 1), dec(32, 1), dec(40, 1)]
    broken = frozenset({dec(24, 1), dec(32, 1), dec(40, 1)})  # e.g. the device ran out of memory
    report = capture_within(order, fake_capture(clock, lambda k: 1.0, fail=broken), clock=clock)
    assert report.captured == (dec(16, 1),) and report.failed == (dec(24, 1), dec(32, 1))
    assert report.left == (dec(40, 1),) and report.stopped == "failures"


def test_a_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="budget_s"):
        capture_within([dec(16, 1)], lambda k: None, budget_s=-1)


policies = st.builds(
    SchedulerPolicy,
    decode_buckets=st.lists(st.integers(1, 300), min_size=1, max_size=8, unique=True).map(
        lambda v: tuple(sorted(v))
    ),
    sr_buckets=st.lists(st.integers(1, 20_000), min_size=1, max_size=4, unique=True).map(
        lambda v: tuple(sorted(v))
    ),
    batch_sizes=st.lists(st.integers(1, 64), min_size=1, max_size=8, unique=True).map(
        lambda v: tuple(sorted(v))
    ),
    max_call_decode_tokens=st.integers(1, 8_192),
    max_call_sr_samples=st.integers(1, 262_144),
)
costs = st.builds(
    AffineCost,
    st.fixed_dictionaries({"decode": st.floats(0, 2), "sr": st.floats(0, 2)}),
    st.fixed_dictionaries({"decode": st.floats(0, 1e-3), "sr": st.floats(0, 1e-5)}),
)


@settings(max_examples=150, deadline=None)
@given(policy=policies, cost=costs, budget=st.floats(0, 100), more=st.floats(0, 100))
def test_the_budget_is_kept_and_a_larger_one_captures_a_longer_prefix(policy, cost, budget, more) -> None:
    order = GraphPlan.from_policy(policy).ordered()

    def run(budget_s: float) -> tuple[Any, list[tuple[GraphKey, float]]]:
        clock, ends = FakeClock(), []
        capture = fake_capture(clock, cost)

        def timed(key: GraphKey) -> None:
            capture(key)
            ends.append((key, clock.now - 100.0))

        return capture_within(order, timed, budget_s=budget_s, clock=clock), ends

    report, ends = run(budget)
    n = len(report.captured)
    assert report.captured == tuple(order[:n]) and report.left == tuple(order[n:]) and report.failed == ()
    if budget == 0:
        assert n == len(order)
    else:
        # Costs are affine in work with nonnegative terms, so the estimate bounds each capture after the first of its
        # kind: only such a first capture (nothing to go by) may end past the budget.
        first_of_kind = {next((k for k in order if k.kind == kind), None) for kind in ("decode", "sr")}
        assert all(end <= budget + 1e-9 for key, end in ends if key not in first_of_kind)
        assert n == len(order) or report.stopped == "budget"
        larger, _ = run(budget + more)
        assert len(larger.captured) >= n


# ---------------------------------------------------------------------------------------------- serving


class FakeDecoder:
    device = "cuda"  # only named: nothing runs on it here
    d_vector_dim = 4


def _call(kind: str, length: int, rows: int, *, exact: bool = False) -> Call:
    w: Any = (
        DecodeWindow(np.zeros(8, np.int32), None, 0, 8)
        if kind == "decode"
        else SRWindow(np.zeros(3_000, np.float32), 0, 10)
    )
    margin = SchedulerPolicy().prenet_margin if kind == "decode" else 0
    return Call(kind, (w,), None if exact else length, rows, margin=margin)  # type: ignore[arg-type]


def _calls(path: str) -> float:
    return metrics.REGISTRY.get_sample_value("veena3_tts_codec_calls_total", {"path": path}) or 0.0


def test_uncaptured_shapes_run_eager_and_are_counted_apart() -> None:
    policy = SchedulerPolicy(decode_buckets=(16, 32), sr_buckets=(3_520,), batch_sizes=(1, 2, 4))
    graphs = CodecGraphs(FakeDecoder(), None, GraphPlan.from_policy(policy))
    clock = FakeClock()
    captured = graphs.capture_all(
        budget_s=3.5, clock=clock, capture=fake_capture(clock, lambda k: k.work / 16)
    )
    assert [g.key for g in captured] == [dec(16, 1), dec(32, 1)]  # SR skipped: no SR model
    assert graphs.status() == {
        "planned": 6,
        "captured": 2,
        "failed": 0,
        "seconds": 3.0,
        "budget_s": 3.5,
        "stopped": "budget",
        "first_eager": {"kind": "decode", "length": 16, "rows": 2},
        "precision": {"decode": "tf32", "sr": "fp32"},
        "reserved_mib": 2.0,
    }
    before = {p: _calls(p) for p in ("graph", "uncaptured", "eager")}
    assert graphs.get(_call("decode", 32, 1)) is captured[1]
    assert graphs.get(_call("decode", 16, 2)) is None  # planned, left by the budget: eager
    assert graphs.plan.key_for(_call("decode", 16, 2)) == dec(16, 2)
    assert graphs.get(_call("decode", 16, 1, exact=True)) is None  # outside the plan: eager
    assert {p: _calls(p) - before[p] for p in before} == {"graph": 1, "uncaptured": 1, "eager": 1}


# ---------------------------------------------------------------------------------------------- the runtime


def _runtime(
    monkeypatch: pytest.MonkeyPatch, fail: frozenset[GraphKey] = frozenset(), **overrides: Any
) -> Any:
    from services.deployment.runtime import ModelRuntime
    from shared.settings import Settings

    runtime = ModelRuntime(Settings(device="cuda", warmup=False, log_json=False, **overrides))
    runtime.bicodec = FakeDecoder()
    clock = FakeClock()
    monkeypatch.setattr(
        CodecGraphs, "capture", lambda self, key: fake_capture(clock, lambda k: 0.0, fail)(key)
    )
    return runtime


def test_the_runtime_reports_what_it_captured(monkeypatch, caplog) -> None:
    policy = SchedulerPolicy(decode_buckets=(16, 32), batch_sizes=(1, 2))
    runtime = _runtime(monkeypatch, fail=frozenset({dec(32, 2)}), codec_graph_budget_s=0)
    with caplog.at_level(logging.INFO, logger="services.device.graphs"):
        graphs = runtime._capture_graphs(policy)
    assert sorted(graphs.graphs) == [dec(16, 1), dec(16, 2), dec(32, 1)]
    health = runtime.health().codec_graphs
    assert health["planned"] == 4 and health["captured"] == 3 and health["failed"] == 1
    assert health["first_eager"] == {"kind": "decode", "length": 32, "rows": 2} and health["budget_s"] == 0
    for state, value in (("planned", 4), ("captured", 3), ("failed", 1)):
        assert metrics.REGISTRY.get_sample_value("veena3_tts_codec_graphs", {"state": state}) == value
    assert "codec graphs: captured 3 of 4 in" in caplog.text and "no budget" in caplog.text
    assert "first shape left eager: decode 32 x 2 rows" in caplog.text


@pytest.mark.parametrize("sr_precision", ["fp32", "tf32", "fp16"])
def test_the_super_resolution_graphs_take_the_settings_precision(monkeypatch, caplog, sr_precision) -> None:
    runtime = _runtime(monkeypatch, codec_sr_precision=sr_precision)
    with caplog.at_level(logging.INFO, logger="services.device.graphs"):
        graphs = runtime._capture_graphs(SchedulerPolicy(decode_buckets=(16,), batch_sizes=(1,)))
    assert graphs.precision == {"decode": "tf32", "sr": sr_precision}
    assert runtime.health().codec_graphs["precision"] == {"decode": "tf32", "sr": sr_precision}
    assert f"decode tf32, AP-BWE {sr_precision}" in caplog.text


@pytest.mark.parametrize(("profile", "timed"), [("served", False), ("own_seconds", True)])
def test_a_profile_that_reads_own_seconds_times_each_replay(monkeypatch, profile, timed) -> None:
    runtime = _runtime(monkeypatch, admission_profile=profile)
    graphs = runtime._capture_graphs(SchedulerPolicy(decode_buckets=(16,), batch_sizes=(1,)))
    assert graphs.time_replays is timed


@pytest.mark.parametrize(
    ("device", "precision", "fused"),
    [("cuda", "fp16", True), ("cuda", "fp32", False), ("cpu", "fp32", False)],
)
def test_the_model_is_loaded_at_the_settings_precision_on_cuda_only(
    monkeypatch, tmp_path, device, precision, fused
) -> None:
    """On CUDA AP-BWE is built at TTS_CODEC_SR_PRECISION (and fused with TTS_CODEC_SR_FUSED); a CPU serves fp32 (it
    would only emulate the GPU's rounding, slower). The CUDA load is recorded, not run: no GPU here."""
    from core.apbwe import SuperResolution, write_random_checkpoint
    from services.deployment.runtime import ModelRuntime
    from shared.settings import Settings

    write_random_checkpoint(tmp_path / "sr", channels=8, layers=1)
    runtime = ModelRuntime(
        Settings(
            device=device,
            warmup=False,
            log_json=False,
            sr_dir=tmp_path / "sr",
            codec_sr_precision="fp16",
            codec_sr_fused=True,
        )
    )
    if device == "cpu":
        runtime._load_sr()
        assert runtime.sr is not None and runtime.sr.precision == "fp32" and not runtime.sr.fused
        return
    seen: dict[str, Any] = {}
    monkeypatch.setattr(
        SuperResolution, "from_pretrained", classmethod(lambda cls, path, **kw: seen.update(kw))
    )
    runtime.settings = Settings(
        device=device,
        warmup=False,
        log_json=False,
        sr_dir=tmp_path / "sr",
        codec_sr_precision=precision,
        codec_sr_fused=fused,
    )
    runtime._load_sr()
    assert seen == {"device": "cuda", "precision": precision, "fused": fused}


def test_an_unknown_precision_is_refused_at_start() -> None:
    from pydantic import ValidationError

    from shared.settings import Settings

    with pytest.raises(ValidationError, match="codec_sr_precision"):
        Settings(codec_sr_precision="bf16")


def test_graphs_switched_off_report_none(monkeypatch) -> None:
    runtime = _runtime(monkeypatch, codec_cuda_graphs=False)
    assert runtime._capture_graphs(SchedulerPolicy()) is None and runtime.health().codec_graphs is None
