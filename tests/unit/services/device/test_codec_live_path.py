"""The codec scheduler on the live path: the streaming planners' windows, decoded and super-resolved through the
scheduler with several streams batched together, equal the offline result for every latency schedule; a stream
ahead of its client's playback by more than the bound waits (virtual clock); the service's jobs go through it."""

from __future__ import annotations

import asyncio
import copy

import numpy as np
import pytest
import torch

from core.apbwe import RELEASED_CONFIG, APBWEConfig, SuperResolution, random_generator
from core.bicodec import BiCodecDecoder
from core.sr_planner import SRPlanner
from core.streaming import DecodePlanner, StreamingConfig, StreamingDecoder
from services.device import CodecScheduler, DecodeWindow, PlaybackClock, SchedulerPolicy, SRWindow
from services.device.runner import ModelRunner
from services.pipeline.audio_output import SR_MAX_BLOCK, SR_MIN_BLOCK
from tests.codec_fakes import FakeClock
from tests.tiny_models import tiny_bicodec

HOP = 320
STREAMS = 4


@pytest.fixture(scope="module")
def model() -> BiCodecDecoder:
    return tiny_bicodec()


@pytest.fixture(scope="module")
def d_vectors(model: BiCodecDecoder) -> list[torch.Tensor]:
    rng = np.random.default_rng(1)
    return [model.speaker_vector(torch.from_numpy(rng.integers(0, 4096, (1, 32)))) for _ in range(STREAMS)]


@pytest.fixture(scope="module")
def sr() -> SuperResolution:
    raw = copy.deepcopy(RELEASED_CONFIG)
    raw["ConvNeXt_channels"], raw["ConvNeXt_layers"] = 32, 2
    config = APBWEConfig.from_dict(raw)
    return SuperResolution(random_generator(config, seed=3), config)


class CountingRunner(ModelRunner):
    """The real runner, recording each call's rows (to see that streams were batched together)."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - ModelRunner's
        super().__init__(*args, **kwargs)
        self.rows: list[tuple[str, int]] = []

    async def run_timed(self, call):  # noqa: ANN001, ANN201 - the DeviceRunner protocol (what the scheduler calls)
        self.rows.append((call.kind, len(call.windows)))
        return await super().run_timed(call)


async def _stream_through(
    handle, planner: DecodePlanner, d_vector, tokens: np.ndarray, seed: int
) -> np.ndarray:  # noqa: ANN001
    """Feed `tokens` in random bursts (1..40, an engine's deltas), awaiting each due window on the scheduler."""
    rng = np.random.default_rng(seed)
    chunks: list[np.ndarray] = []

    async def decode(windows) -> None:  # noqa: ANN001
        kept = await asyncio.gather(
            *(handle.decode(DecodeWindow(w.ids, d_vector, w.keep_start, w.keep_end)) for w in windows)
        )
        chunks.extend(planner.take(w, audio) for w, audio in zip(windows, kept, strict=True))

    i = 0
    while i < len(tokens):
        n = int(rng.integers(1, 41))
        await decode(planner.push(tokens[i : i + n].tolist()))
        i += n
        await asyncio.sleep(0)  # let the other streams submit: their windows share calls
    await decode(planner.finish())
    return np.concatenate(chunks)


@pytest.mark.parametrize("preference", ["exact", "balanced", "lowest"])
async def test_concurrent_streams_batched_through_the_scheduler_equal_their_offline_decode(
    model: BiCodecDecoder, d_vectors: list[torch.Tensor], preference: str
) -> None:
    config = StreamingConfig().for_latency(preference)  # type: ignore[arg-type]
    runner = CountingRunner(model)
    lengths = [137, 300, 61, 250]
    token_sets = [np.random.default_rng(10 + k).integers(0, 8192, n) for k, n in enumerate(lengths)]
    planners = [
        DecodePlanner(config, hop=HOP, codebook_size=model.semantic_codebook_size) for _ in range(STREAMS)
    ]
    async with CodecScheduler(runner, SchedulerPolicy(pad_batch=False)) as sched:
        handles = [sched.open_stream() for _ in range(STREAMS)]
        streamed = await asyncio.gather(
            *(
                _stream_through(h, p, d, t, seed=k)
                for k, (h, p, d, t) in enumerate(zip(handles, planners, d_vectors, token_sets, strict=True))
            )
        )
    runner.close()
    assert max(rows for _, rows in runner.rows) > 1  # windows of different streams shared calls
    for planner, d_vector, tokens, audio in zip(planners, d_vectors, token_sets, streamed, strict=True):
        # The same schedule decoded directly (the synchronous StreamingDecoder): the scheduler changes nothing.
        direct = StreamingDecoder(model, d_vector, config)
        solo = np.concatenate(direct.push(tokens.tolist()) + direct.finish())
        offline = model.decode_with_speaker(torch.from_numpy(tokens)[None], d_vector)[0].numpy()
        assert audio.shape == solo.shape == offline.shape == (len(tokens) * HOP,)
        assert planner.samples_out == len(tokens) * HOP
        assert np.abs(audio - solo).max() <= 1e-4  # padded rows: 1.3e-5 measured at the released size
        # Only the short schedule's first second may differ from the offline decode (docs/benchmarks.md).
        after_short = planner.short_schedule_tokens * HOP if config.warmup_tokens else 0
        assert np.abs(audio[after_short:] - offline[after_short:]).max() <= 1e-3


async def test_super_resolution_windows_batched_across_streams_equal_the_offline_upsample(
    sr: SuperResolution,
) -> None:
    runner = CountingRunner(_NoDecoder(), sr)
    rng = np.random.default_rng(4)
    signals = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (12_345, 30_000, 4_001)]

    async def stream(handle, signal: np.ndarray, seed: int) -> np.ndarray:  # noqa: ANN001
        planner = SRPlanner(grid=sr.grid, context=sr.context, min_block=SR_MIN_BLOCK, max_block=SR_MAX_BLOCK)
        pieces, burst, i = [], np.random.default_rng(seed), 0
        windows = []
        while i < signal.size:
            n = int(burst.integers(300, 6_000))
            windows = planner.push(signal[i : i + n])
            i += n
            pieces += (
                await handle.super_resolve_all(  # a chunk's windows together, as AudioOutput submits them
                    [SRWindow(w.samples, w.keep_start, w.keep_end, w.true_end) for w in windows]
                )
            )
        last = planner.finish()
        assert last and last[-1].true_end and not any(w.true_end for w in last[:-1])
        pieces += await asyncio.gather(
            *(handle.super_resolve(SRWindow(w.samples, w.keep_start, w.keep_end, w.true_end)) for w in last)
        )
        return np.concatenate(pieces)

    async with CodecScheduler(runner, SchedulerPolicy(pad_batch=False)) as sched:
        out = await asyncio.gather(*(stream(sched.open_stream(), s, k) for k, s in enumerate(signals)))
    runner.close()
    assert max(rows for _, rows in runner.rows) > 1
    for signal, audio in zip(signals, out, strict=True):
        offline = sr.upsample(signal)
        assert audio.shape == offline.shape == (3 * signal.size,)
        np.testing.assert_allclose(audio, offline, atol=1e-5)


def test_sr_windows_fall_inside_the_scheduler_buckets_at_the_released_context() -> None:
    """With the released model's context (880), every window but a true end has a bucket: no eager fallback."""
    policy = SchedulerPolicy()
    planner = SRPlanner(grid=80, context=880, min_block=SR_MIN_BLOCK, max_block=SR_MAX_BLOCK)
    rng = np.random.default_rng(2)
    windows = []
    for _ in range(200):
        windows += planner.push(np.zeros(int(rng.integers(1, 20_000)), np.float32))
    windows += planner.finish()
    assert windows and all(policy.bucket("sr", w.samples.size) is not None for w in windows if not w.true_end)


class _NoDecoder:
    hop_length = HOP
    device = "cpu"


class _VirtualSleep:
    """asyncio.sleep on a virtual clock: sleeping advances the clock at once and is recorded."""

    def __init__(self, clock) -> None:  # noqa: ANN001
        self.clock, self.slept = clock, []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.now += seconds


async def test_a_stream_ahead_of_playback_by_more_than_the_bound_waits() -> None:
    clock = FakeClock(50.0)
    sleep = _VirtualSleep(clock)
    playback = PlaybackClock(clock(), clock=clock, sleep=sleep)
    await playback.pace(3.0)  # nothing played yet: nothing to wait for
    playback.note_audio(2.0)
    await playback.pace(3.0)  # 2 s ahead: within the bound
    assert sleep.slept == []
    playback.note_audio(5.0)  # 7 s sent at t=50: the client holds 7 s
    clock.now += 1.0  # it has played 1 s of it: 6 s ahead
    await playback.pace(3.0)
    assert sum(sleep.slept) == pytest.approx(3.0) and playback.buffered_seconds() == pytest.approx(3.0)
    # A non-streaming job plays "from arrival": its deadlines run from then on, and nobody hears it miss one.
    late = PlaybackClock(40.0, clock=clock)
    late.start_playback(40.0)
    late.note_audio(4.0)
    assert late.deadline() == 44.0 and late.started and not late.heard
