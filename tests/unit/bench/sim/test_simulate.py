"""bench.sim.load: the virtual clock, the window schedule it models, and the behaviour of the real scheduler and
admission under modelled load (counts and order, never wall timings)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.sim.run import ADMISSION_OFF, SimConfig, SimRow, served_streaming, simulate
from bench.sim.virtual_loop import DeadlockError, run_virtual
from bench.sim.windows import plan_decode, plan_sr
from bench.standin.cost_model import CostModel
from core.apbwe import SRStream
from core.streaming import StreamingConfig, StreamingDecoder
from services.device.admission_profiles import ADMISSION_PROFILES
from services.device.telemetry import SchedulerStats
from shared.settings import Settings

H100 = {
    "name": "test",
    "llm_step_ms": {"fixed": 3.0, "per_row": 0.02},
    "llm_prefill_ms": {"fixed": 3.0, "per_token": 0.004},
    "decode_ms": {"fixed": 2.0, "per_token": 0.018},
    "sr_ms": {"fixed": 2.0, "per_input_sample": 4.5e-5},
    "host_ms": {"per_audio_second": 1.5},
}


def test_virtual_loop_sleeps_cost_no_wall_time_and_keep_order() -> None:
    order: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        order.append((name, asyncio.get_running_loop().time()))

    async def main() -> None:
        await asyncio.gather(sleeper("hour", 3600.0), sleeper("ms", 0.001), sleeper("s", 1.0))

    run_virtual(main)
    assert order == [("ms", pytest.approx(0.001)), ("s", pytest.approx(1.0)), ("hour", pytest.approx(3600.0))]


def test_virtual_loop_reports_a_deadlock() -> None:
    async def main() -> None:
        await asyncio.get_running_loop().create_future()  # nothing will ever set it

    with pytest.raises(DeadlockError):
        run_virtual(main)


class _RecordingCodec:
    """Stands in for BiCodec at the schedule's boundary: records each window's length, returns zeros."""

    device = torch.device("cpu")
    hop_length = 320
    semantic_codebook_size = 8192
    d_vector_dim = 4

    def __init__(self) -> None:
        self.lengths: list[int] = []

    def decode_with_speaker(self, semantic: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        self.lengths.append(int(semantic.shape[1]))
        return torch.zeros(1, semantic.shape[1] * self.hop_length)


@settings(max_examples=40, deadline=None)
@given(
    total=st.integers(1, 700),
    preference=st.sampled_from(["balanced", "lowest", "exact"]),
    delta=st.integers(1, 7),
)
def test_plan_decode_matches_the_streaming_decoder(total: int, preference: str, delta: int) -> None:
    config = StreamingConfig(growth=1.5).for_latency(preference)
    codec = _RecordingCodec()
    decoder = StreamingDecoder(codec, torch.zeros(4), config)  # type: ignore[arg-type]
    tokens = np.zeros(total, np.int64)
    sent: list[int] = []
    for i in range(0, total, delta):
        sent.extend(c.size // 320 for c in decoder.push(tokens[i : i + delta]))
    sent.extend(c.size // 320 for c in decoder.finish())
    plan = plan_decode(config, total)
    assert [w.length for w in plan] == codec.lengths
    assert [w.sent_tokens for w in plan] == sent
    assert sum(w.sent_tokens for w in plan) == total


@settings(max_examples=40, deadline=None)
@given(chunks=st.lists(st.integers(1, 40_000), min_size=1, max_size=12))
def test_plan_sr_matches_sr_stream(chunks: list[int]) -> None:
    lengths: list[int] = []

    def enhance_window(x: np.ndarray) -> np.ndarray:
        lengths.append(int(x.size))
        return np.zeros(3 * x.size, np.float32)

    sr = SimpleNamespace(grid=80, context=880, config=SimpleNamespace(ratio=3), enhance_window=enhance_window)
    stream = SRStream(sr, min_block=1_600, max_block=8_000)  # type: ignore[arg-type]
    out = sum(stream.push(np.zeros(n, np.float32)).size for n in chunks) + stream.finish().size
    plan = plan_sr(chunks)
    assert [w.length for w in plan] == lengths
    assert sum(w.out_samples for w in plan) == out == 3 * sum(chunks)
    assert [w.true_end for w in plan][-1] is True


def _run(streams: int, **kw: object) -> dict:
    return simulate(SimConfig(CostModel.from_dict(H100), streams, audio_seconds=3.0, **kw))  # type: ignore[arg-type]


def test_a_few_streams_are_all_admitted_and_none_runs_dry() -> None:
    report = _run(4, arrive_within_s=2.0)
    assert report["streams_admitted"] == 4 and report["streams_refused"] == 0
    assert report["underruns_prebuffer_100ms"] == 0
    assert report["ttfa_ms_p50"] is not None and 0 < report["ttfa_ms_p50"] <= report["ttfa_ms_p95"]
    assert 0 < report["gpu_busy_ratio"] <= 1.0
    assert report["mean_decode_batch"] >= 1.0


def test_a_device_shared_by_time_slices_keeps_its_seconds_and_admission_holds() -> None:
    """The engine and the codec sliced (bench/sim/sliced_device.py): the same work on the device, and overload still
    refused with no admitted stream running dry; an unknown sharing is refused."""
    serial, sliced = _run(24, arrive_within_s=2.0), _run(24, arrive_within_s=2.0, device_sharing="sliced")
    assert sliced["device_sharing"] == "sliced" and sliced["streams_admitted"] == 24
    assert sliced["underruns_prebuffer_100ms"] == 0
    assert 0 < sliced["gpu_busy_ratio"] <= 1.0
    assert sliced["gpu_busy_ratio"] == pytest.approx(serial["gpu_busy_ratio"], rel=0.2)
    burst = _run(300, arrive_within_s=2.0, device_sharing="sliced")
    assert burst["streams_refused"] > 0 and burst["underruns_prebuffer_100ms"] == 0
    with pytest.raises(ValueError, match="device_sharing"):
        SimConfig(CostModel.from_dict(H100), 1, device_sharing="mps")  # type: ignore[arg-type]


def test_overload_is_refused_and_no_admitted_stream_runs_dry() -> None:
    report = _run(300, arrive_within_s=2.0)
    assert report["streams_refused"] > 0
    assert report["streams_admitted"] + report["streams_refused"] == 300
    assert report["underruns_prebuffer_100ms"] == 0


def test_admitting_everything_past_capacity_spreads_the_damage() -> None:
    report = _run(
        300,
        arrive_within_s=2.0,
        admission={
            "pace_margin": 0.0,
            "max_codec_busy": float("inf"),
            "miss_grace_s": float("inf"),
            "max_codec_share": float("inf"),
            "ramp_floor": 10**9,
        },
    )
    assert report["streams_refused"] == 0
    assert report["underruns_prebuffer_100ms"] > 0


def test_48khz_streams_run_super_resolution() -> None:
    report = _run(3, sample_rate=48_000, arrive_within_s=1.0)
    assert report["streams_admitted"] == 3 and report["underruns_prebuffer_100ms"] == 0
    assert report["gpu_busy_seconds"]["sr"] > 0 and report["mean_sr_batch"] >= 1.0


@settings(max_examples=200, deadline=None)
@given(total=st.integers(1, 300), interval=st.integers(1, 16))
def test_a_stream_s_ids_become_usable_in_deltas_as_vllm_hands_them_out(total: int, interval: int) -> None:
    """stream_interval: the first id at once, then `interval` ids per delta, whatever is left at the end; nothing lost."""
    row = SimRow(prompt_tokens=10, total=total, process=0)
    deltas = []
    done = False
    while not done:
        done = row.step()
        count = row.delta(interval)
        if count:
            deltas.append(count)
    assert sum(deltas) == total and deltas[0] == 1
    assert all(d == interval for d in deltas[1:-1])
    assert 1 <= deltas[-1] <= max(1, interval)


def test_the_simulator_hands_out_ids_at_the_service_s_stream_interval() -> None:
    """By default the simulator uses TTS_LLM_STREAM_INTERVAL, as the engine the service ships does; a larger
    interval holds ids back, so first audio cannot come sooner."""
    shipped = _run(8, arrive_within_s=1.0)
    assert shipped["stream_interval"] == Settings().llm.llm_stream_interval
    wide = _run(8, arrive_within_s=1.0, stream_interval=16)
    one = _run(8, arrive_within_s=1.0, stream_interval=1)
    assert one["ttfa_ms_p50"] <= wide["ttfa_ms_p50"]
    assert wide["underruns_prebuffer_100ms"] == 0 and wide["streams_admitted"] == 8
    with pytest.raises(ValueError, match="stream_interval"):
        SimConfig(CostModel.from_dict(H100), 1, stream_interval=0)


def test_each_request_takes_its_process_s_host_time_before_admission_sees_it() -> None:
    """`host_ms.per_request`: requests arriving together wait their turn on their API process's GIL, so the last of
    four at 100 ms each starts at least 400 ms late; with two processes, two at a time."""
    at_once = {"arrive_within_s": 0.001}
    free = _run(4, **at_once)
    model = CostModel.from_dict({**H100, "host_ms": {"per_audio_second": 1.5, "per_request": 100.0}})
    one = simulate(SimConfig(model, 4, audio_seconds=3.0, **at_once))  # type: ignore[arg-type]
    two = simulate(SimConfig(model, 4, audio_seconds=3.0, api_processes=2, **at_once))  # type: ignore[arg-type]
    assert one["host_ms_per_request"] == 100.0 and free["host_ms_per_request"] == 0.0
    assert free["ttfa_ms_max"] < 400 <= one["ttfa_ms_max"]
    assert 200 <= two["ttfa_ms_max"] < one["ttfa_ms_max"]


def test_a_seed_gives_the_same_report() -> None:
    assert json.dumps(_run(20, seed=7)) == json.dumps(_run(20, seed=7))


def test_cost_model_files_parse_and_bad_ones_say_why(tmp_path) -> None:
    from pathlib import Path

    for path in sorted(Path("bench/cost_models").glob("*.json")):
        model = CostModel.load(path)
        assert model.llm_step.fixed > 0 and model.decode.per_unit > 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**H100, "decode_ms": {"fixed": 1}}))
    with pytest.raises(ValueError, match="decode_ms"):
        CostModel.load(bad)
    bad.write_text(json.dumps({**H100, "sr_ms": {**H100["sr_ms"], "eager": {"fixed": 7.5}}}))
    with pytest.raises(ValueError, match="sr_ms.eager"):
        CostModel.load(bad)


def test_an_exact_length_call_costs_the_eager_figures_where_the_model_gives_them() -> None:
    """A stream's AP-BWE true end (and any shape outside the buckets) runs eager, kernel by kernel at fp32: the
    served-precision model prices it apart; a model without `eager` prices it as a graph, as before."""
    from services.device.calls import Call
    from services.device.windows import DecodeWindow, SRWindow

    served = CostModel.load("bench/cost_models/h100-decode-tf32-sr-fp32.json")
    spec = CostModel.from_dict(H100)
    end = SRWindow(np.zeros(4_000, np.float32), 0, 12_000, true_end=True)
    exact = Call("sr", (end,), None, 1, true_end=True)
    bucketed = Call("sr", (SRWindow(np.zeros(4_000, np.float32), 0, 9_000),), 4_800, 1)
    assert served.call_seconds(exact) == pytest.approx((7.5 + 8.0e-5 * 4_000) / 1000)
    assert served.call_seconds(bucketed) == pytest.approx((2.0 + 8.0e-5 * 4_800) / 1000)
    assert spec.call_seconds(exact) == pytest.approx((2.0 + 4.5e-5 * 4_000) / 1000)
    window = DecodeWindow(np.zeros(300, np.int32), None, 0, 300)
    assert served.call_seconds(Call("decode", (window,), None, 1)) == pytest.approx(
        (6.6 + 0.048 * 300) / 1000
    )
    assert served.call_seconds(Call("decode", (window,), 512, 1)) == pytest.approx((2.0 + 0.018 * 512) / 1000)


def test_every_first_chunk_decision_is_counted_by_schedule_and_reason() -> None:
    """Operators see why newcomers got the schedule they got (veena3_tts_first_chunk_schedules): one count per
    decision, by the first condition that settled it."""
    from services.device.admission import Admission
    from shared.metrics import REGISTRY

    def exported(schedule: str, reason: str) -> float:
        value = REGISTRY.get_sample_value(
            "veena3_tts_first_chunk_schedules_total", {"schedule": schedule, "reason": reason}
        )
        return value or 0.0

    before = {
        key: exported(*key)
        for key in (
            ("balanced", "unmeasured"),
            ("lowest", "codec_light"),
            ("balanced", "llm_slow"),
            ("exact", "codec_busy"),
            ("exact", "requested"),
        )
    }
    sched = _Scheduler()
    generating = [4]
    # The pace switches as they were before chunks were cut (test_first_chunk_pace.py has the defaults' reasons).
    adm = Admission(sched, generating=lambda: generating[0], exact_needs_pace=2.0, short_needs_pace=0.0)
    assert adm.first_chunk_schedule("balanced") == "balanced"  # no codec cost measured yet
    sched.active_streams = 5
    for _ in range(60):  # 5 streams, 0.9 s of codec per second in all; the LLM gives each 40 tokens/s
        sched.now += 0.1
        sched.stats.busy_seconds += 0.09
        adm.note_tokens(4 * 4)
    sched.active_streams = 2  # 0.18 per stream x 3 = 0.54 of the device with one more: under the 0.8 share
    assert adm.first_chunk_schedule("lowest") == "lowest"
    sched.active_streams = 9  # 0.18 x 10 = 1.8: past the share, but the LLM is under 2x real time
    assert adm.first_chunk_schedule("balanced") == "balanced"
    for _ in range(10):  # now 150 tokens/s per request
        sched.now += 0.1
        sched.stats.busy_seconds += 0.09
        adm.note_tokens(4 * 15)
    assert adm.first_chunk_schedule("balanced") == "exact"
    assert adm.first_chunk_schedule("exact") == "exact"
    assert adm.first_chunks == {
        ("balanced", "unmeasured"): 1,
        ("lowest", "codec_light"): 1,
        ("balanced", "llm_slow"): 1,
        ("exact", "codec_busy"): 1,
        ("exact", "requested"): 1,
    }
    assert adm.long_first_chunks == 1
    assert {key: exported(*key) - before[key] for key in before} == {key: 1.0 for key in before}


def test_a_codec_call_is_measured_with_its_wait_behind_the_engine_step_in_progress() -> None:
    """What admission's codec cost reads (scheduler `busy_seconds`): a call's time from dispatch to its end on the
    shared device, its own service time plus the engine's step it queued behind, as a GPU shared with the engine
    measures it. The stand-in's timeline keeps the codec's own seconds apart (device.busy_seconds)."""
    from bench.standin.cost_model import CostModelRunner, DeviceTimeline
    from services.device.calls import Call
    from services.device.scheduler import CodecScheduler
    from services.device.windows import DecodeWindow

    model = CostModel.from_dict(H100)
    window = DecodeWindow(np.zeros(16, np.int64), None, 0, 16)

    async def main() -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        device = DeviceTimeline()
        sched = CodecScheduler(CostModelRunner(model, device, noise=False), clock=loop.time)
        async with sched:
            step = asyncio.ensure_future(device.use("llm", 0.008))  # an engine step of 8 ms holds the device
            await asyncio.sleep(0.001)
            await sched.open_stream().decode(window)
            await step
        # One row of 16 tokens in the 16 bucket: the wave generator's 16, the prenet's 16 + 2 x 16 margin columns.
        call = Call("decode", (window,), 16, 1, spans=((0, 16),), margin=sched.policy.prenet_margin)
        return sched.stats.busy_seconds, device.busy_seconds["decode"], model.call_seconds(call)

    measured, own, modelled = run_virtual(main)
    assert own == pytest.approx(modelled)
    assert measured == pytest.approx(0.007 + modelled)  # the 7 ms left of the step, then the call itself


class _Scheduler:
    """The figures Admission reads, set by hand (the scheduler's own are tested in test_codec_scheduler.py)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.active_streams = 0
        self.busy = 0.0
        self.misses = 0
        self.stats = SchedulerStats()

    def clock(self) -> float:
        return self.now

    def busy_ratio(self) -> float:
        return self.busy

    def recent_misses(self, grace_s: float = 0.0) -> int:
        return self.misses

    def worst_recent_miss(self, grace_s: float = 0.0) -> float | None:
        return None  # no lateness figure: the plain reason


def test_admission_refuses_on_misses_pace_and_codec_cost_with_retry_after() -> None:
    from services.device.admission import Admission

    sched = _Scheduler()
    generating = [0]
    adm = Admission(sched, generating=lambda: generating[0], max_codec_share=0.85)
    assert adm.decide().admit
    sched.misses = 1
    refused = adm.decide()
    assert not refused.admit and refused.retry_after_s >= 1 and "missed" in refused.reason
    sched.misses = 0
    # The LLM gives 40 tokens/s to each of 10 generating requests: below the 50 real time needs.
    generating[0] = 10
    for _ in range(20):
        sched.now += 0.1
        adm.note_tokens(40)
    assert adm.pace() == pytest.approx(40, rel=0.1)
    assert not adm.decide().admit and adm.refused["llm_pace"] == 1
    # 90 tokens/s is ahead of real time but under the twice real time a newcomer's first seconds need: refused too;
    # 120 is admitted.
    for rate, admitted in ((90, False), (120, True)):
        for _ in range(20):
            sched.now += 0.1
            adm.note_tokens(rate)
        assert adm.decide().admit is admitted
    assert adm.refused["llm_pace"] == 2
    # One request at 150 tokens/s on an otherwise idle device: a second is admitted. (Projected as if a step's cost
    # were all per row, it would halve to 75, under the 100 asked: a step is mostly its fixed part at so few rows.)
    generating[0] = 1
    for _ in range(20):
        sched.now += 0.1
        adm.note_tokens(15)
    assert adm.pace() == pytest.approx(150, rel=0.1) and adm.decide().admit
    # A fast LLM, but every open stream costs the codec 10% of the device: a 10th would pass 85%.
    generating[0] = 1
    sched.active_streams = 9
    for _ in range(60):
        sched.now += 0.1
        sched.stats.busy_seconds += 0.09  # 9 streams x 0.01 s per 0.1 s
        adm.note_tokens(30)
    assert adm.codec_cost() == pytest.approx(0.1, rel=0.05)
    assert not adm.decide().admit and adm.refused["codec_cost"] == 1
    sched.active_streams = 7
    assert adm.decide().admit


def test_near_a_limit_admission_lets_in_one_stream_at_a_time() -> None:
    """Clusters admitted within milliseconds, on measures one admission moves by one average stream, ran dry in
    sustained overload and floods. Near a limit (the LLM's pace just above its floor; or the codec near its cap after
    a missed deadline) new streams are spaced 30 ms apart. A burst far from both, or a miss long ago, is not spaced."""
    from services.device.admission import Admission

    sched = _Scheduler()
    generating = [0]
    adm = Admission(sched, generating=lambda: generating[0], max_codec_share=1.2, ramp_floor=100)
    sched.active_streams = 90

    def load(seconds: float, tokens_per_request: float = 0.0) -> None:  # 90 open streams cost the codec 1.0
        for _ in range(round(seconds / 0.1)):
            sched.now += 0.1
            sched.stats.busy_seconds += 0.1
            adm.note_tokens(round(tokens_per_request * 0.1 * generating[0]) or 1)

    def cluster() -> list[bool]:  # four arrivals within 15 ms
        out = []
        for _ in range(4):
            out.append(adm.decide().admit)
            sched.active_streams += out[-1]
            sched.now += 0.005
        sched.active_streams = 90
        return out

    load(6.0)
    assert adm.codec_cost() == pytest.approx(1 / 90, rel=0.05)  # the 91st projects to ~1.01 of the 1.2 cap
    assert cluster() == [True] * 4  # no miss, no LLM limit: a burst is not spaced
    sched.misses = 1
    assert not adm.decide().admit and adm.refused["misses"] == 1
    sched.misses = 0
    sched.now += 0.1
    assert cluster() == [True, False, False, False] and adm.refused["spacing"] == 3
    sched.now += 0.03
    assert adm.decide().admit  # 30 ms later the next one
    sched.active_streams = 90
    load(10.0)  # the miss is 10 s old; the load has not moved
    assert cluster() == [True] * 4
    # The LLM gives 108 tokens/s to each of 10 requests: one more leaves ~105 (counted from 32 rows), above the 100
    # (twice real time) the pace rule asks but within 10% of it: spaced.
    generating[0] = 10
    load(2.0, tokens_per_request=108)
    assert adm.pace() == pytest.approx(108, rel=0.05)
    sched.active_streams = 40  # the codec far from its cap
    assert cluster() == [True, False, False, False]
    generating[0] = 1  # one request at 300 tokens/s: one more leaves ~150, far from the limit: not spaced
    load(2.0, tokens_per_request=300)
    assert cluster() == [True] * 4


def test_admission_ramps_up_while_new_streams_are_unmeasured() -> None:
    from services.device.admission import Admission

    sched = _Scheduler()
    adm = Admission(sched, ramp_floor=4)
    decisions = []
    for _ in range(6):  # six arrivals in the same instant, no stream measured yet
        decisions.append(adm.decide().admit)
        sched.active_streams += decisions[-1]
    assert decisions == [True] * 4 + [False] * 2 and adm.refused["ramp"] == 2
    sched.now += 1.5  # a window later they are old: as many again may come
    assert adm.decide().admit


def test_admission_defaults_ignore_the_busy_ratio_and_cap_the_codec_cost_at_1_2() -> None:
    from services.device.admission import Admission

    sched = _Scheduler()
    adm = Admission(sched)
    sched.busy = 1.5  # the busy-ratio rule is off by default (calibrated with bench.sim.load)
    assert adm.decide().admit
    # Every open stream costs the codec 0.12 of the device: 9 open, a 10th projects 1.2 (admitted), an 11th not.
    sched.active_streams = 9
    for _ in range(60):
        sched.now += 0.1
        sched.stats.busy_seconds += 9 * 0.012
        adm.note_tokens(30)
    assert adm.codec_cost() == pytest.approx(0.12, rel=0.05)
    sched.active_streams = 8
    assert adm.decide().admit
    sched.active_streams = 10
    assert not adm.decide().admit and adm.refused["codec_cost"] == 1


def test_admission_ramp_lets_in_half_as_many_new_streams_as_old_ones_per_window() -> None:
    from services.device.admission import Admission

    sched = _Scheduler()
    adm = Admission(sched, ramp_floor=4)
    sched.active_streams = 20  # opened before this admission object saw them: all "old"
    decisions = []
    for _ in range(12):
        decisions.append(adm.decide().admit)
        sched.active_streams += decisions[-1]
    assert decisions == [True] * 10 + [False] * 2 and adm.refused["ramp"] == 2


def test_with_exact_needs_pace_a_newcomer_gets_the_exact_first_chunk_only_while_the_llm_is_well_ahead() -> (
    None
):
    """`exact_needs_pace` set (0 by default since a stream's chunks are cut when its engine falls behind)."""
    from services.device.admission import Admission

    sched = _Scheduler()
    generating = [4]
    adm = Admission(sched, generating=lambda: generating[0], exact_needs_pace=2.0, short_needs_pace=0.0)
    assert adm.first_chunk_schedule("balanced") == "balanced"  # nothing measured yet
    sched.active_streams = 9
    for _ in range(60):  # 9 streams cost the codec 0.9 of the device; the LLM gives each 150 tokens/s
        sched.now += 0.1
        sched.stats.busy_seconds += 0.09
        adm.note_tokens(4 * 15)
    assert adm.first_chunk_schedule("lowest") == "exact" and adm.long_first_chunks == 1
    # A seeded request keeps its schedule: the same seed gives the same bytes under any load.
    assert adm.first_chunk_schedule("lowest", reproducible=True) == "lowest"
    assert adm.first_chunks[("lowest", "seeded")] == 1 and adm.long_first_chunks == 1
    assert adm.first_chunk_schedule("exact") == "exact"
    sched.active_streams = 6  # 0.7 of the device with one more: under the 0.8 share, the short schedule stays
    assert adm.first_chunk_schedule("balanced") == "balanced"
    sched.active_streams = 9
    for _ in range(
        20
    ):  # the LLM falls to 60 tokens/s per stream: the exact schedule's second chunk would be late
        sched.now += 0.1
        sched.stats.busy_seconds += 0.09
        adm.note_tokens(4 * 6)
    assert adm.first_chunk_schedule("balanced") == "balanced" and adm.long_first_chunks == 1


def test_a_48khz_newcomer_takes_the_lead_window_only_while_the_llm_is_3_5x_ahead_or_unmeasured() -> None:
    from services.device.admission import Admission

    sched = _Scheduler()
    adm = Admission(sched, generating=lambda: 4)
    assert adm.sr_lead()  # nothing measured yet: an idle engine, or a burst's first streams
    for _ in range(20):  # 250 tokens/s per request: 5x real time
        sched.now += 0.1
        adm.note_tokens(4 * 25)
    assert adm.sr_lead()
    for _ in range(20):  # 150 tokens/s (3x): the 8 tokens after the lead would take 53 ms of its 80
        sched.now += 0.1
        adm.note_tokens(4 * 15)
    assert not adm.sr_lead()
    assert adm.sr_lead(reproducible=True)  # a seeded stream takes it as on an idle engine, whatever the pace
    assert adm.sr_leads == {"taken": 2, "llm_slow": 1, "seeded": 1} and adm.view()["sr_leads"] == {
        "taken": 2,
        "llm_slow": 1,
        "seeded": 1,
    }


def test_at_48khz_the_lead_window_brings_first_audio_forward_for_streams_starting_together() -> None:
    """32 streams at once (the stand-in bound's case): with the lead window every stream's first audio leaves with
    its first decoded chunk; the lead rows share one AP-BWE call (their bucket: 2,240) and nobody runs dry."""
    lead = _run(32, sample_rate=48_000, arrive_within_s=0.0)
    no_lead = _run(32, sample_rate=48_000, arrive_within_s=0.0, sr_lead=False)
    assert lead["sr_leads"] == {"taken": 32} and no_lead["sr_leads"] == {}
    assert (
        lead["codec_calls"] <= no_lead["codec_calls"] + 2
    )  # the 32 lead rows shared calls (in 3,520: 32 more)
    assert lead["ttfa_ms_p95"] < no_lead["ttfa_ms_p50"]
    assert lead["underruns_prebuffer_100ms"] == no_lead["underruns_prebuffer_100ms"] == 0


def test_the_exact_first_chunk_under_load_carries_more_streams_without_underruns() -> None:
    fixed = _run(250, adaptive_schedule=False)
    adaptive = _run(250)
    assert adaptive["long_first_chunks"] > 0 and fixed["long_first_chunks"] == 0
    assert adaptive["underruns_prebuffer_100ms"] == 0 and fixed["underruns_prebuffer_100ms"] == 0
    assert adaptive["streams_admitted"] > fixed["streams_admitted"]


def test_a_background_job_alone_decodes_all_its_speech_and_beside_live_streams_changes_no_admission() -> None:
    model = CostModel.from_dict(H100)
    alone = simulate(SimConfig(model, 0, background_jobs=1, background_audio_s=5.0))
    assert alone["background_audio_s"] == pytest.approx(5.0, abs=0.05)
    assert alone["background_audio_per_device_s"] > 1 and alone["missed_deadlines"] == 0
    live = simulate(SimConfig(model, 24, audio_seconds=3.0, arrive_within_s=2.0))
    both = simulate(SimConfig(model, 24, audio_seconds=3.0, arrive_within_s=2.0, background_jobs=1))
    assert both["streams_admitted"] == live["streams_admitted"] and both["underruns_prebuffer_100ms"] == 0
    assert both["background_audio_s"] > 0


def test_admission_reading_the_codec_s_own_seconds_keeps_a_burst_on_the_short_first_chunk() -> None:
    """At the H200's graph costs a codec call waits behind an engine step about twice its own length, so read from
    dispatch to end the codec seems three times as costly and a burst of 64 is switched to the exact first chunk;
    read as its own device time (`call_seconds_read="own"`) every newcomer keeps the short one."""
    from pathlib import Path

    model = CostModel.load(Path("bench/cost_models/h200-graphs.json"))
    read = {
        measure: simulate(SimConfig(model, 64, arrive_within_s=2.0, call_seconds_read=measure))
        for measure in ("dispatch_to_end", "own")
    }
    assert read["own"]["call_seconds_read"] == "own"
    assert read["dispatch_to_end"]["first_chunks"].get("exact/codec_busy", 0) > 0
    assert read["own"]["first_chunks"].get("exact/codec_busy", 0) == 0
    for report in read.values():
        assert report["streams_admitted"] == 64 and report["underruns_prebuffer_100ms"] == 0
    # The opt-in profile for own seconds: no capacity rule refuses this burst, so no newcomer is switched.
    own = ADMISSION_PROFILES["own_seconds"]
    profile = simulate(
        SimConfig(
            model, 64, arrive_within_s=2.0, call_seconds_read=own.call_seconds_read, admission=own.admission
        )
    )
    assert profile["streams_admitted"] == 64 and profile["underruns_prebuffer_100ms"] == 0
    assert not any(key.startswith("exact/") for key in profile["first_chunks"])
    with pytest.raises(ValueError, match="call_seconds_read"):
        SimConfig(model, 1, call_seconds_read="wall")  # type: ignore[arg-type]


def test_the_command_line_runs_the_schedule_and_first_chunk_it_is_given(tmp_path) -> None:
    from bench.sim.load import parse_args, run

    model = tmp_path / "model.json"
    model.write_text(json.dumps(H100))
    args = ["--cost-model", str(model), "--streams", "3", "--arrive-within", "1", "--latency", "exact"]
    (report,) = run(parse_args([*args, "--streaming", '{"growth": 1.1}']))
    assert report["latency"] == "exact" and report["streaming"]["growth"] == 1.1
    assert report["first_chunks"] == {"exact/requested": 3}
    (served,) = run(parse_args(args))
    assert served["streaming"]["growth"] == Settings().stream.stream_chunk_growth
    # gentler growth: the same audio in more, smaller decode windows
    assert report["codec_calls"] > served["codec_calls"]


def test_the_settled_profile_takes_a_burst_of_64_on_the_short_first_chunk_at_either_engine_step() -> None:
    """At vLLM's published step and at the 3 ms one, 64 arriving within 2 s: the service's profile switches most to
    the exact first chunk or refuses a few; `settled` (rule 3 on settled streams, each call's run seconds) admits
    every one on the short chunk, none underrunning."""
    from pathlib import Path

    settled = ADMISSION_PROFILES["settled"]
    for name in ("h200-graphs-vllm-step", "h200-graphs"):
        model = CostModel.load(Path(f"bench/cost_models/{name}.json")).with_overrides(host_ms=1.4)
        served = simulate(SimConfig(model, 64, arrive_within_s=2.0))
        report = simulate(
            SimConfig(
                model,
                64,
                arrive_within_s=2.0,
                call_seconds_read=settled.call_seconds_read,
                admission=settled.admission,
            )
        )
        assert served["streams_admitted"] < 64 or served["first_chunks"].get("exact/codec_busy", 0) > 0, name
        assert report["streams_admitted"] == 64 and report["underruns_prebuffer_100ms"] == 0, name
        assert not any(key.startswith("exact/") for key in report["first_chunks"]), name


def test_cutting_a_chunk_for_a_listener_about_to_run_dry_carries_a_48khz_burst() -> None:
    """200 streams at 48 kHz within 5 s, every one admitted on the exact first chunk, at vLLM's published step with
    AP-BWE in TF32: with the service's cut (a chunk cut short once its listener would run dry within 0.3 s) none
    underruns; without it, the engine falls behind the growing chunks at the burst's peak and streams run dry."""
    from pathlib import Path

    model = CostModel.load(Path("bench/cost_models/h200-graphs-vllm-step-sr-tf32.json")).with_overrides(
        host_ms=1.4
    )
    burst = {"sample_rate": 48_000, "arrive_within_s": 5.0, "admission": ADMISSION_OFF, "latency": "exact"}
    served = served_streaming()
    assert served.cut_runway_s == 0.3
    cut = simulate(SimConfig(model, 200, streaming=served, **burst))
    uncut = simulate(SimConfig(model, 200, streaming=replace(served, cut_runway_s=None), **burst))
    assert cut["streams_admitted"] == uncut["streams_admitted"] == 200
    assert cut["cut_windows"] > 0 and cut["underruns_prebuffer_100ms"] == 0
    assert uncut["cut_windows"] == 0 and uncut["underruns_prebuffer_100ms"] > 0


def test_the_bursts_profile_admits_every_one_of_250_within_5s_at_vllm_s_step() -> None:
    """With the cut, at vLLM's published step on the serial device, `bursts` admits the whole 16 kHz burst that the
    service's profile admits about 60% of, none underrunning."""
    from pathlib import Path

    bursts = ADMISSION_PROFILES["bursts"]
    model = CostModel.load(Path("bench/cost_models/h200-graphs-vllm-step.json")).with_overrides(host_ms=1.4)
    arrivals = {"arrive_within_s": 5.0, "seed": 1}
    served = simulate(SimConfig(model, 250, **arrivals))
    report = simulate(
        SimConfig(
            model, 250, call_seconds_read=bursts.call_seconds_read, admission=bursts.admission, **arrivals
        )
    )
    assert served["streams_admitted"] < 200
    assert report["streams_admitted"] == 250 and report["underruns_prebuffer_100ms"] == 0
    assert report["cut_windows"] > 0
