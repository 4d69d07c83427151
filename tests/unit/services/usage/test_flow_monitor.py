"""Audio flow monitor: losses show up by stage, disconnects are not losses, reset clears; stream cadence maths."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading

import pytest

from services.usage.flow_monitor import COUNT_FIELDS, STAGES, AudioFlowMonitor, StreamCadence
from shared.metrics import REGISTRY

HOP = 320
XFADE = 800  # 50 ms at 16 kHz


@dataclasses.dataclass
class Stats:
    """Same attributes as services.pipeline.synthesis.PipelineStats (duck-typed; see test_stats_contract)."""

    llm_tokens: int = 0
    semantic_tokens: int = 0
    decoded_chunks: int = 0
    decoded_samples: int = 0
    sr_chunks: int = 0
    sr_samples: int = 0
    output_samples: int = 0
    encoded_frames: int = 0
    encoded_bytes: int = 0
    sent_chunks: int = 0
    sent_bytes: int = 0
    text_chunks: int = 1
    text_chunks_done: int = 1
    generation_done: bool = True
    decode_done: bool = True
    encode_done: bool = True
    send_done: bool = True


def clean(tokens: int = 250, text_chunks: int = 1, sr: bool = False, out_rate: int = 16_000) -> Stats:
    """A request where every stage passed on everything: 16-bit WAV, 40 ms frames."""
    decoded = tokens * HOP
    joined = decoded - XFADE * (text_chunks - 1)
    sr_samples = 3 * joined if sr else 0
    source, source_rate = (sr_samples, 48_000) if sr else (joined, 16_000)
    output = source * out_rate // source_rate
    frame = out_rate * 40 // 1000
    encoded = 44 + 2 * output
    return Stats(
        llm_tokens=tokens + 40,
        semantic_tokens=tokens,
        decoded_chunks=5 * text_chunks,
        decoded_samples=decoded,
        sr_chunks=5 if sr else 0,
        sr_samples=sr_samples,
        output_samples=output,
        encoded_frames=-(-output // frame),
        encoded_bytes=encoded,
        sent_chunks=7,
        sent_bytes=encoded,
        text_chunks=text_chunks,
        text_chunks_done=text_chunks,
    )


def losses_metric(stage: str) -> float:
    return REGISTRY.get_sample_value("veena3_tts_pipeline_losses_total", {"stage": stage}) or 0.0


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def monitor() -> AudioFlowMonitor:
    return AudioFlowMonitor(crossfade_samples=XFADE, clock=FakeClock())


def test_stats_contract_matches_pipeline_stats() -> None:
    synthesis = pytest.importorskip(
        "services.pipeline.synthesis", reason="synthesis pipeline not importable yet"
    )
    fields = {f.name for f in dataclasses.fields(synthesis.PipelineStats)}
    assert set(COUNT_FIELDS) <= fields
    assert {"generation_done", "decode_done", "encode_done", "send_done"} <= fields


@pytest.mark.parametrize(
    ("text_chunks", "sr", "out_rate"),
    [
        (1, False, 16_000),
        (3, False, 16_000),
        (1, True, 48_000),
        (4, True, 48_000),
        (2, True, 24_000),
        (2, False, 8_000),
    ],
)
def test_lossless_request_records_no_loss(
    monitor: AudioFlowMonitor, text_chunks: int, sr: bool, out_rate: int
) -> None:
    before = {stage: losses_metric(stage) for stage in STAGES}
    events = monitor.record(
        "req-ok",
        clean(text_chunks=text_chunks, sr=sr, out_rate=out_rate),
        "completed",
        sr_applied=sr,
        output_rate=out_rate,
    )
    assert events == []
    snap = monitor.snapshot()
    assert snap["losses"]["total"] == 0
    assert all(count == 0 for count in snap["losses"]["by_stage"].values())
    assert snap["efficiency"] == {"completion": 1.0, "decode": 1.0, "text_chunks": 1.0, "send": 1.0}
    assert {stage: losses_metric(stage) for stage in STAGES} == before


def test_short_send_on_completed_request_is_a_send_loss(
    monitor: AudioFlowMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    stats = clean()
    stats.sent_bytes = stats.encoded_bytes - 1280  # 40 ms of 16-bit audio never reached the socket
    before = losses_metric("send")
    with caplog.at_level(logging.WARNING, logger="services.usage.flow_monitor"):
        events = monitor.record("req-send", stats, "completed", output_rate=16_000)
    assert [(e.stage, e.unit, e.missing) for e in events] == [("send", "bytes", 1280)]
    assert losses_metric("send") == before + 1
    snap = monitor.snapshot()
    assert snap["losses"]["by_stage"]["send"] == 1
    assert snap["losses"]["missing_by_stage"] == {"send": {"bytes": 1280}}
    assert snap["efficiency"]["send"] < 1.0
    [event] = snap["recent_events"]
    assert event["request_id"] == "req-send" and event["kind"] == "loss" and event["stage"] == "send"
    [log] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert log.request_id == "req-send" and log.stage == "send"


def test_decoded_samples_short_of_tokens_times_hop_is_a_decode_loss(monitor: AudioFlowMonitor) -> None:
    stats = clean(tokens=100)
    stats.decoded_samples -= 2 * HOP  # two tokens' worth of audio never came out of the decoder
    events = monitor.record("req-dec", stats, "completed")
    assert [(e.stage, e.expected, e.actual) for e in events] == [("decode", 32_000, 31_360)]
    snap = monitor.snapshot()
    assert snap["losses"]["by_stage"]["decode"] == 1
    assert snap["efficiency"]["decode"] == pytest.approx(0.98)


def test_decode_tolerance_and_expected_samples_override() -> None:
    lenient = AudioFlowMonitor(decode_tolerance_samples=HOP)
    stats = clean(tokens=100)
    stats.decoded_samples -= HOP
    assert lenient.record("r1", stats, "completed") == []
    strict = AudioFlowMonitor()
    assert strict.record("r2", stats, "completed", expected_decoded_samples=stats.decoded_samples) == []
    assert [e.stage for e in strict.record("r3", stats, "completed")] == ["decode"]


def test_each_stage_rule_names_its_stage(monitor: AudioFlowMonitor) -> None:
    cases = {
        "generation": dict(generation_done=False),
        "parse": dict(
            semantic_tokens=0,
            decoded_samples=0,
            decoded_chunks=0,
            output_samples=0,
            encoded_frames=0,
            encoded_bytes=44,
            sent_bytes=44,
        ),
        "encode": dict(encode_done=False),
        "send": dict(send_done=False),
    }
    for stage, change in cases.items():
        events = monitor.record(f"req-{stage}", dataclasses.replace(clean(), **change), "completed")
        assert [e.stage for e in events] == [stage], stage
    sr_short = clean(sr=True, out_rate=48_000)
    sr_short.sr_samples -= 960
    sr_short.output_samples -= 960
    assert [e.stage for e in monitor.record("req-sr", sr_short, "completed", sr_applied=True)] == [
        "super_resolution"
    ]
    rs_short = clean(out_rate=24_000)
    rs_short.output_samples -= 100
    assert [e.stage for e in monitor.record("req-rs", rs_short, "completed", output_rate=24_000)] == [
        "resample"
    ]
    chunks_short = clean(text_chunks=3)
    chunks_short.text_chunks_done = 2
    assert "decode" in [e.stage for e in monitor.record("req-tc", chunks_short, "completed")]
    assert monitor.snapshot()["losses"]["requests_with_loss"] == 7


def test_one_loss_per_stage_per_request(monitor: AudioFlowMonitor) -> None:
    stats = clean()
    stats.decode_done = False
    stats.decoded_samples -= HOP  # two decode rules fire; the request counts once for "decode"
    before = losses_metric("decode")
    events = monitor.record("req-2", stats, "completed")
    assert [e.stage for e in events] == ["decode"]
    assert losses_metric("decode") == before + 1


def test_disconnected_request_is_recorded_but_not_a_loss(monitor: AudioFlowMonitor) -> None:
    stats = clean(tokens=300)
    stats.decoded_samples = 100 * HOP  # client left while generation was still running
    stats.generation_done = stats.decode_done = stats.encode_done = stats.send_done = False
    stats.encoded_bytes, stats.sent_bytes = 64_044, 51_244
    before = {stage: losses_metric(stage) for stage in STAGES}
    events = monitor.record("req-gone", stats, "disconnected")
    assert [(e.kind, e.stage, e.undelivered_bytes) for e in events] == [("cut_short", "generation", 12_800)]
    assert {stage: losses_metric(stage) for stage in STAGES} == before
    snap = monitor.snapshot()
    assert snap["losses"]["total"] == 0
    assert snap["requests"] == {"total": 1, "completed": 0, "failed": 0, "disconnected": 1}
    assert snap["cut_short"] == {
        "by_outcome": {"disconnected": {"generation": 1}, "failed": {}},
        "undelivered_bytes": 12_800,
    }
    assert snap["efficiency"]["completion"] == 0.0
    assert snap["efficiency"]["send"] is None  # efficiency is judged on completed requests only


def test_failed_requests_count_by_error_code_not_as_losses(monitor: AudioFlowMonitor) -> None:
    stats = clean()
    stats.generation_done = stats.send_done = False
    monitor.record("req-f1", stats, "failed", "GPU_OOM")
    monitor.record("req-f2", stats, "failed", "GPU_OOM")
    monitor.record("req-ok", clean(), "completed")
    snap = monitor.snapshot()
    assert snap["errors_by_code"] == {"GPU_OOM": 2}
    assert snap["losses"]["total"] == 0
    assert snap["cut_short"]["by_outcome"]["failed"] == {"generation": 2}
    assert snap["efficiency"]["completion"] == pytest.approx(1 / 3, abs=1e-6)
    assert snap["totals"]["semantic_tokens"] == 3 * 250
    assert snap["completed_totals"]["semantic_tokens"] == 250


def test_reset_clears_everything_and_moves_since() -> None:
    clock = FakeClock()
    monitor = AudioFlowMonitor(clock=clock)
    lossy = clean()
    lossy.sent_bytes = 0
    monitor.record("a", lossy, "completed")
    monitor.record("b", clean(), "disconnected")
    first_since = monitor.snapshot()["since"]
    clock.t += 60
    assert monitor.snapshot()["window_seconds"] == 60
    monitor.reset()
    snap = monitor.snapshot()
    assert snap["since"] != first_since and snap["window_seconds"] == 0
    assert snap["requests"]["total"] == 0 and snap["losses"]["total"] == 0
    assert all(v == 0 for v in snap["totals"].values())
    assert snap["recent_events"] == [] and snap["cut_short"]["undelivered_bytes"] == 0


def test_snapshot_is_json_and_events_are_bounded() -> None:
    monitor = AudioFlowMonitor(max_events=100)
    lossy = clean()
    lossy.send_done = False
    for i in range(130):
        monitor.record(f"req-{i}", lossy, "completed")
    snap = json.loads(json.dumps(monitor.snapshot()))
    assert len(snap["recent_events"]) == 100
    assert snap["recent_events"][0]["request_id"] == "req-30"  # oldest dropped first
    assert snap["losses"]["by_stage"]["send"] == 130


def test_concurrent_records_add_up() -> None:
    monitor = AudioFlowMonitor()

    def work() -> None:
        for _ in range(200):
            monitor.record("r", clean(tokens=10), "completed")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = monitor.snapshot()
    assert snap["requests"]["completed"] == 1600
    assert snap["totals"]["decoded_samples"] == 1600 * 10 * HOP


def test_unknown_outcome_is_refused(monitor: AudioFlowMonitor) -> None:
    with pytest.raises(ValueError):
        monitor.record("r", clean(), "cancelled")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- cadence


def feed(cadence: StreamCadence, timeline: list[tuple[float, float]]) -> dict:
    for at, audio in timeline:
        cadence.on_chunk(audio, at=at)
    return cadence.summary()


def test_steady_stream_ahead_of_playback_has_no_underrun() -> None:
    # 0.2 s of audio every 0.1 s: the client buffer only grows.
    summary = feed(StreamCadence(observe_metrics=False), [(i * 0.1, 0.2) for i in range(10)])
    assert summary["chunks"] == 10 and summary["underruns"] == 0 and summary["underrun_seconds"] == 0
    assert summary["interval_mean_s"] == pytest.approx(0.1)
    assert summary["interval_max_s"] == pytest.approx(0.1)
    assert summary["jitter_p99_s"] == pytest.approx(0.0, abs=1e-9)
    assert summary["audio_seconds"] == pytest.approx(2.0) and summary["duration_s"] == pytest.approx(0.9)


def test_late_chunk_is_an_underrun_of_the_gap() -> None:
    # Playback starts at 0.0; 0.4 s of audio has arrived by 0.1, so it runs dry at 0.4.
    # The third chunk comes at 0.9: an underrun of 0.5 s; playback resumes at 0.9 and runs to 1.1.
    # The fourth chunk at 1.0 is in time (runs to 1.3); the fifth at 1.5 comes 0.2 s late: a second underrun.
    timeline = [(0.0, 0.2), (0.1, 0.2), (0.9, 0.2), (1.0, 0.2), (1.5, 0.2)]
    summary = feed(StreamCadence(observe_metrics=False), timeline)
    assert summary["underruns"] == 2
    assert summary["underrun_seconds"] == pytest.approx(0.7)
    assert summary["interval_max_s"] == pytest.approx(0.8)
    assert summary["interval_p99_s"] == pytest.approx(0.8)
    assert summary["interval_mean_s"] == pytest.approx(1.5 / 4)
    assert summary["jitter_p99_s"] == pytest.approx(0.7)  # |0.8 - 0.1|


def test_prebuffer_absorbs_a_late_chunk() -> None:
    # With 0.5 s of prebuffer playback runs from 0.5 to 0.9: the chunk at 0.9 arrives just in time.
    timeline = [(0.0, 0.2), (0.1, 0.2), (0.9, 0.2)]
    assert feed(StreamCadence(prebuffer_s=0.5, observe_metrics=False), timeline)["underruns"] == 0
    assert feed(StreamCadence(prebuffer_s=0.4, observe_metrics=False), timeline)["underrun_seconds"] == (
        pytest.approx(0.1)
    )


def test_header_only_chunk_does_not_start_playback() -> None:
    # A WAV header at 0.0, first audio at 0.5: playback counts from 0.5, so a chunk at 0.6 is in time.
    summary = feed(StreamCadence(observe_metrics=False), [(0.0, 0.0), (0.5, 0.2), (0.6, 0.2)])
    assert summary["underruns"] == 0 and summary["chunks"] == 3


def test_empty_and_single_chunk_summaries() -> None:
    empty = StreamCadence(observe_metrics=False).summary()
    assert empty["chunks"] == 0 and empty["interval_mean_s"] is None and empty["underruns"] == 0
    one = feed(StreamCadence(observe_metrics=False), [(3.0, 0.5)])
    assert one["chunks"] == 1 and one["interval_max_s"] is None and one["duration_s"] == 0


def test_cadence_observes_interval_and_jitter_histograms() -> None:
    def count(name: str) -> float:
        return REGISTRY.get_sample_value(f"veena3_tts_{name}_count") or 0.0

    before = count("chunk_interval_seconds"), count("chunk_jitter_seconds")
    feed(StreamCadence(), [(0.0, 0.04), (0.04, 0.04), (0.09, 0.04), (0.12, 0.04)])
    assert count("chunk_interval_seconds") == before[0] + 3
    assert count("chunk_jitter_seconds") == before[1] + 2
    feed(StreamCadence(observe_metrics=False), [(0.0, 0.04), (0.04, 0.04)])
    assert count("chunk_interval_seconds") == before[0] + 3


def test_cadence_summaries_aggregate_in_snapshot(monitor: AudioFlowMonitor) -> None:
    late = feed(StreamCadence(observe_metrics=False), [(0.0, 0.2), (0.1, 0.2), (0.9, 0.2)])
    steady = feed(StreamCadence(observe_metrics=False), [(0.0, 0.2), (0.1, 0.2)])
    monitor.record("a", clean(), "completed", cadence=late)
    monitor.record("b", clean(), "completed", cadence=steady)
    assert monitor.snapshot()["cadence"] == {
        "streams": 2,
        "chunks": 5,
        "underruns": 1,
        "underrun_seconds": 0.5,
        "streams_with_underruns": 1,
        "interval_max_s": 0.8,
    }
