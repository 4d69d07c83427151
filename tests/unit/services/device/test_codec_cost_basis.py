"""Admission's codec cost per stream (rule 3) against either basis (`codec_cost_basis`): seconds each stream was open,
or seconds of audio the codec decoded (its live decode rows' kept tokens, 50 a second). Simulated clock, hand-set
figures; no timings."""

from __future__ import annotations

import pytest

from services.device.admission import Admission
from services.device.codec_cost import CODEC_COST_BASES
from services.device.telemetry import SchedulerStats
from tests.codec_fakes import FiguresScheduler


def _load(
    sched: FiguresScheduler, admissions: list[Admission], seconds: float, codec_share: float, pace: float
) -> None:
    """`seconds` of the open streams, each generated and decoded at `pace` tokens per second, costing the codec
    `codec_share` of the device; every admission told the same."""
    for _ in range(round(seconds * 10)):
        sched.now += 0.1
        sched.stats.busy_seconds += codec_share / 10
        sched.stats.kept_tokens += round(sched.active_streams * pace / 10)
        for adm in admissions:
            adm.note_tokens(round(sched.active_streams * pace / 10))


def _pair(sched: FiguresScheduler, **kwargs: float) -> tuple[Admission, Admission]:
    def make(basis: str) -> Admission:
        return Admission(sched, generating=lambda: sched.active_streams, codec_cost_basis=basis, **kwargs)  # type: ignore[arg-type]

    return make("stream_second"), make("audio_second")


def test_per_audio_second_is_per_stream_second_over_the_engines_lead() -> None:
    sched = FiguresScheduler(streams=10)
    by_stream, by_audio = _pair(sched)
    assert by_stream.codec_cost_basis == "stream_second" == Admission(sched).codec_cost_basis  # the default
    _load(sched, [by_stream, by_audio], 6.0, codec_share=0.3, pace=150.0)  # 3x real time
    stream_cost, audio_cost = by_stream.codec_cost(), by_audio.codec_cost()
    assert stream_cost == pytest.approx(0.3 / 10, rel=0.05)
    # 10 streams x 150 tokens/s decoded = 30 seconds of audio a second: the cost of one second of audio
    assert audio_cost == pytest.approx(0.3 / 30, rel=0.05)
    assert by_audio.view()["codec_cost"] == pytest.approx(audio_cost)


def test_the_cap_reads_the_codec_at_real_time_however_far_ahead_the_engine_runs() -> None:
    """20 streams costing the codec 0.6 of the device while the engine gives each 3x real time: per stream-second one
    more projects to 0.63 of the device, past a 0.5 cap; per second of audio to 0.21, under it."""
    sched = FiguresScheduler(streams=20)
    by_stream, by_audio = _pair(sched, max_codec_share=0.5, ramp_floor=10**6)
    _load(sched, [by_stream, by_audio], 6.0, codec_share=0.6, pace=150.0)
    refused = by_stream.decide()
    assert not refused.admit and refused.rule == "codec_cost"
    assert by_audio.decide().admit
    # At real time the two agree: the engine gives each stream one second of audio a second.
    sched.stats, sched.now = SchedulerStats(), 100.0
    slow_stream, slow_audio = _pair(sched, max_codec_share=0.5, ramp_floor=10**6, pace_margin=0.0)
    _load(sched, [slow_stream, slow_audio], 6.0, codec_share=0.6, pace=50.0)
    assert slow_stream.codec_cost() == pytest.approx(slow_audio.codec_cost(), rel=0.05)
    assert slow_audio.decide().rule == "codec_cost"


def test_too_little_audio_measured_reads_nothing_yet() -> None:
    sched = FiguresScheduler(streams=1)
    _, by_audio = _pair(sched)
    _load(sched, [by_audio], 2.0, codec_share=0.1, pace=100.0)  # 4 s of audio: under the 5 s sample
    assert by_audio.codec_cost() is None
    _load(sched, [by_audio], 1.0, codec_share=0.1, pace=100.0)
    assert by_audio.codec_cost() == pytest.approx(0.1 / 2, rel=0.05)


def test_an_unknown_basis_is_refused() -> None:
    assert CODEC_COST_BASES == ("stream_second", "audio_second")
    with pytest.raises(ValueError, match="codec_cost_basis"):
        Admission(FiguresScheduler(streams=1), codec_cost_basis="request")  # type: ignore[arg-type]


def test_the_engines_tokens_alone_move_nothing_the_codec_decoded_does() -> None:
    """Tokens the codec has not decoded yet (an engine ahead of a saturated codec) are no audio: the cost per audio
    second is the codec's seconds over what it decoded, so it does not fall as the codec falls behind."""
    sched = FiguresScheduler(streams=10)
    _, by_audio = _pair(sched)
    for _ in range(60):
        sched.now += 0.1
        sched.stats.busy_seconds += 0.1  # the codec saturated
        sched.stats.kept_tokens += 25  # decoding 250 tokens a second: 5 s of audio a second
        by_audio.note_tokens(100)  # the engine making 1,000 a second
    assert by_audio.codec_cost() == pytest.approx(1.0 / 5, rel=0.05)
