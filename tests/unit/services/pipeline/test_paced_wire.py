"""A long reply on an engine far faster than real time (a GPU's case), paced on a virtual clock: what reaches the wire
is never silent for long inside the reply, and the client's unplayed audio stays above the floor while the reply runs
ahead of it. Steady decode windows reach 4 s: sent whole, each one left the wire silent for its own length (3.6 s on
the ElevenLabs socket, past Pipecat's 3 s quiet-context timeout) with the client down to the floor before the next
was asked for. Timing is virtual: pacing's waits advance the clock, the work between them takes none."""

from __future__ import annotations

import pytest

from bench.paced_engine import PaceConfig, PacedEngine
from services.deployment.runtime import ModelRuntime
from services.device.playback import PlaybackClock
from services.pipeline import synthesis
from services.pipeline.decode_pacing import PACE_FLOOR_S, PACE_PIECE_S
from services.pipeline.synthesis import (
    NATIVE_RATE,
    SamplingOptions,
    SynthesisJob,
    SynthesisRequest,
)
from shared.settings import Settings
from tests.codec_fakes import FakeClock

# ~200 characters: one text chunk of ~14 s, whose windows grow to the largest (200 tokens, 4 s).
TEXT = (
    "We left early in the morning, before the sun was up, and drove north along the coast for most of the day. "
    "The road was narrow and the views were wide, and we stopped twice for coffee on the way."
)
MAX_AHEAD_S = 3.0


class _VirtualSleep:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.clock.now += max(1e-6, seconds)  # past rounding: a wait always moves the clock


@pytest.fixture
async def runtime(demo_model_dir):
    settings = Settings(
        model_dir=demo_model_dir,
        warmup=False,
        auth_enabled=False,
        sr_enabled=False,
        log_json=False,
        stream_max_ahead_s=MAX_AHEAD_S,
    )
    rt = ModelRuntime(settings)
    await rt.start()
    await rt.engine.shutdown()
    rt.engine = PacedEngine.from_tokenizer(
        rt.tokenizer, rt.layout, PaceConfig(tokens_per_s=5000, prefill_s=0.001, tick_s=0.001)
    )
    yield rt
    await rt.shutdown()


async def test_a_long_paced_reply_never_leaves_the_wire_silent_for_a_second(
    runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(
        runtime.codec_scheduler.clock()
    )  # deadlines near the scheduler's own clock: due at once
    sleep = _VirtualSleep(clock)
    # The job's playback clock on the virtual clock (its arrival: now).
    monkeypatch.setattr(
        synthesis, "PlaybackClock", lambda _arrival, **_: PlaybackClock(clock(), clock=clock, sleep=sleep)
    )
    request = SynthesisRequest(
        request_id="long",
        text=TEXT,
        voice=runtime.voices.resolve("fixed"),
        audio_format="pcm",
        sample_rate=NATIVE_RATE,
        stream=True,
        sampling=SamplingOptions.with_defaults(runtime.settings, seed=3),
    )
    job = SynthesisJob.planned(runtime.pipeline_resources(), request)
    sent: list[tuple[float, float, float]] = []  # (virtual time, client's unplayed audio before it, seconds)
    emit_now = job._emit_now

    async def record(data: bytes, samples: int) -> None:
        assert job.playback is not None
        sent.append((clock.now, job.playback.buffered_seconds(), samples / NATIVE_RATE))
        await emit_now(data, samples)

    monkeypatch.setattr(job, "_emit_now", record)
    audio = await job.collect()
    total = len(audio) / 2 / NATIVE_RATE
    assert total > 10.0  # long enough for the steady 4 s windows
    gaps = [later[0] - earlier[0] for earlier, later in zip(sent, sent[1:], strict=False)]
    assert max(gaps) <= 1.0, gaps
    assert max(s for _, _, s in sent) <= PACE_PIECE_S + 0.01  # no piece longer than pacing's step
    # Once the reply is ahead of its client (after the first few seconds), the client's unplayed audio never falls
    # to the floor: the next window is asked for while it still holds the setting less a piece.
    steady = [held for at, held, _ in sent if at - sent[0][0] > MAX_AHEAD_S]
    assert steady and min(steady) >= MAX_AHEAD_S - PACE_PIECE_S - 0.01 > PACE_FLOOR_S, steady
    # ... and never more than the setting.
    assert max(held + s for _, held, s in sent) <= MAX_AHEAD_S + 0.01
