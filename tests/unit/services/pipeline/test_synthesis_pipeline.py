"""The synthesis pipeline in-process on the demo checkpoint: long text keeps one voice and joins chunks with
crossfades, streaming equals non-streaming and the offline decode, max_tokens counts semantic tokens, and
closing the stream stops all work.
"""

from __future__ import annotations

import asyncio
import io
import struct
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from audio.crossfade import crossfade_concat
from core.llm.engine_pace import EnginePace
from core.tokens import TokenParser
from services.deployment.runtime import ModelRuntime
from services.device.admission import Admission
from services.pipeline.decode_pacing import PACE_FLOOR_S
from services.pipeline.synthesis import (
    NATIVE_RATE,
    SamplingOptions,
    SynthesisError,
    SynthesisJob,
    SynthesisRequest,
)
from shared.settings import Settings
from tests.texts import LONG_ENGLISH, LONG_HINDI

HOP = 320  # 16 kHz samples per semantic token (50 tokens per second)
WAV_HEADER = 44
MAX_TOKENS = 40  # per text chunk: keeps long texts cheap; the demo model wants far more for ~170 characters


def _settings(model_dir: Path) -> Settings:
    return Settings(
        model_dir=model_dir, warmup=False, auth_enabled=False, device="cpu", sr_enabled=False, log_json=False
    )


@pytest.fixture(scope="module")
def runtime(demo_model_dir: Path) -> Iterator[ModelRuntime]:
    rt = ModelRuntime(_settings(demo_model_dir))
    asyncio.run(rt.start())
    assert rt.ready, rt.error
    yield rt
    asyncio.run(rt.shutdown())


def _request(
    runtime: ModelRuntime,
    text: str,
    *,
    request_id: str,
    stream: bool = False,
    seed: int | None = 7,
    max_tokens: int = MAX_TOKENS,
    audio_format: str = "wav",
    latency: str = "exact",
    voice: str | None = None,
    **sampling: Any,
) -> SynthesisRequest:
    """`latency` "exact" by default: these tests compare streamed audio with offline decodes."""
    voice_ = runtime.voices.resolve(voice or runtime.voices.default_voice_id)
    options = {"temperature": 0.8, "top_k": 50, "top_p": 1.0, "repetition_penalty": 1.05, **sampling}
    sampling_options = SamplingOptions(max_tokens=max_tokens, seed=seed, **options)
    return SynthesisRequest(
        request_id=request_id,
        text=text,
        voice=voice_,
        sampling=sampling_options,
        audio_format=audio_format,
        sample_rate=NATIVE_RATE,
        stream=stream,
        latency=latency,
    )


def _pcm_of_wav(data: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (NATIVE_RATE, 1, 2)
        frames = wav.readframes(wav.getnframes())
    return np.frombuffer(frames, dtype="<i2")


@pytest.mark.parametrize("text", [LONG_ENGLISH, LONG_HINDI], ids=["english", "hindi"])
async def test_long_text_keeps_one_voice_and_crossfades_chunks(runtime: ModelRuntime, text: str) -> None:
    assert len(text) > 220
    job = SynthesisJob.planned(
        runtime.pipeline_resources(), _request(runtime, text, request_id=f"long-{len(text)}")
    )
    data = await job.collect()

    chunks = len(job.plan.chunks)
    stats = job.stats
    assert job.plan.chunked and chunks >= 2
    assert stats.text_chunks == stats.text_chunks_done == chunks
    # The first chunk's 32 global tokens condition every later chunk: one voice throughout.
    assert len(stats.global_tokens_per_chunk) == chunks
    assert len(stats.global_tokens_per_chunk[0]) == 32
    assert all(g == stats.global_tokens_per_chunk[0] for g in stats.global_tokens_per_chunk)
    # Every chunk was spoken (none came back empty) and decoded in whole tokens.
    per_chunk = stats.decoded_samples_per_chunk
    overlap = round(runtime.settings.text.crossfade_ms * NATIVE_RATE / 1000)
    assert len(per_chunk) == chunks
    assert all(n > overlap and n % HOP == 0 and n <= MAX_TOKENS * HOP for n in per_chunk)
    assert sum(per_chunk) == stats.decoded_samples == stats.semantic_tokens * HOP
    # One stream: the chunks joined with a 50 ms crossfade each.
    assert stats.output_samples == sum(per_chunk) - overlap * (chunks - 1)
    pcm = _pcm_of_wav(data)
    assert len(pcm) == stats.output_samples
    assert len(data) == WAV_HEADER + 2 * stats.output_samples
    assert np.abs(pcm).max() > 0


async def test_streaming_equals_non_streaming_for_the_same_seed(runtime: ModelRuntime) -> None:
    text = LONG_ENGLISH[:400]
    streamed_job = SynthesisJob.planned(
        runtime.pipeline_resources(), _request(runtime, text, request_id="eq-stream", stream=True, seed=11)
    )
    pieces = [piece async for piece in streamed_job.stream_bytes()]
    complete = await SynthesisJob.planned(
        runtime.pipeline_resources(), _request(runtime, text, request_id="eq-file", seed=11)
    ).collect()

    streamed = b"".join(pieces)
    assert len(pieces) > 2, "streaming should deliver audio in several pieces"
    (riff_size,) = struct.unpack_from("<I", streamed, 4)
    (data_size,) = struct.unpack_from("<I", streamed, 40)
    assert (riff_size, data_size) == (0xFFFFFFFF, 0xFFFFFFFF)
    assert streamed[:4] == b"RIFF" and streamed[36:40] == b"data"
    assert len(streamed) == len(complete)
    assert streamed[WAV_HEADER:] == complete[WAV_HEADER:]
    assert len(_pcm_of_wav(complete)) == streamed_job.stats.output_samples


class _RecordingEngine:
    """Passes every call to the real engine and keeps the ids each request generated."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.generated: dict[str, list[int]] = {}

    def stream(self, prompt_ids: list[int], sampling: Any, request_id: str) -> AsyncIterator[list[int]]:
        return self._stream(prompt_ids, sampling, request_id)

    async def _stream(
        self, prompt_ids: list[int], sampling: Any, request_id: str
    ) -> AsyncIterator[list[int]]:
        record = self.generated.setdefault(request_id, [])
        source = self.inner.stream(prompt_ids, sampling, request_id)
        try:
            async for ids in source:
                record.extend(ids)
                yield ids
        finally:
            await source.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_streamed_pipeline_matches_offline_decode(
    runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = _RecordingEngine(runtime.engine)
    monkeypatch.setattr(runtime, "engine", recorder)
    max_tokens = 90  # long enough for several streamed decode chunks per text chunk
    text = LONG_ENGLISH[:420]
    job = SynthesisJob.planned(
        runtime.pipeline_resources(),
        _request(runtime, text, request_id="offline", stream=True, max_tokens=max_tokens),
    )
    streamed = _pcm_of_wav_stream(b"".join([piece async for piece in job.stream_bytes()]))
    assert job.stats.decoded_chunks > len(job.plan.chunks)

    # Offline: every text chunk's semantic tokens decoded in one call, then the same crossfaded join.
    globals_ = job.stats.global_tokens_per_chunk[0]
    d_vector = runtime.speaker_vectors.compute(globals_)
    segments = []
    for index in range(len(job.plan.chunks)):
        parser = TokenParser(runtime.layout, mode="controllable" if index == 0 else "clone")
        # Engine request ids are "<request id>-<chunk index>-<unique suffix>".
        (generated,) = [ids for rid, ids in recorder.generated.items() if rid.startswith(f"offline-{index}-")]
        parser.feed(generated)
        semantic = parser.semantic[:max_tokens]
        wav = runtime.bicodec.decode_with_speaker(torch.tensor([semantic]), d_vector)[0].numpy()
        segments.append(wav)
    overlap = round(runtime.settings.text.crossfade_ms * NATIVE_RATE / 1000)
    offline = crossfade_concat(segments, overlap)

    assert len(streamed) == len(offline) == job.stats.output_samples
    streamed_f = streamed.astype(np.float32) / 32768.0
    reference = np.clip(offline, -1.0, 32767 / 32768)
    err = streamed_f - reference
    snr_db = 10 * np.log10(np.sum(reference**2) / max(float(np.sum(err**2)), 1e-30))
    assert np.abs(err).max() <= 1e-3
    assert snr_db >= 40.0


class _SlowEngine(_RecordingEngine):
    """The real engine's ids, handed out one at a time below real time once the first chunk's are out: a listener
    of its stream runs short of audio between chunks."""

    def __init__(self, inner: Any, after_ids: int, seconds_per_id: float) -> None:
        super().__init__(inner)
        self.after_ids, self.seconds_per_id = after_ids, seconds_per_id

    async def _stream(
        self, prompt_ids: list[int], sampling: Any, request_id: str
    ) -> AsyncIterator[list[int]]:
        handed = 0
        async for ids in super()._stream(prompt_ids, sampling, request_id):
            for i in ids:
                if handed >= self.after_ids:
                    await asyncio.sleep(self.seconds_per_id)
                handed += 1
                yield [i]


async def test_a_stream_whose_engine_falls_behind_cuts_its_next_chunk_short(
    runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below real time after the first chunk, the engine leaves the listener less than the schedule's cut runway:
    the job decodes the tokens that have their look-ahead instead of waiting for the whole next chunk, and the
    stream still equals the offline decode within the served bound. Not streamed, nobody runs dry: no cut. Seeded, the
    schedule never depends on the load: no cut."""
    max_tokens = 150
    text = "A stream whose engine falls behind the chunks it was promised, and keeps talking a while."

    async def run(stream: bool, request_id: str, seed: int | None = None) -> tuple[SynthesisJob, bytes]:
        engine = _SlowEngine(runtime.engine, after_ids=60, seconds_per_id=0.03)  # ~33 ids/s: 2/3 of real time
        monkeypatch.setattr(runtime, "engine", engine)
        job = SynthesisJob.planned(
            runtime.pipeline_resources(),
            _request(runtime, text, request_id=request_id, stream=stream, max_tokens=max_tokens, seed=seed),
        )
        data = b"".join([piece async for piece in job.stream_bytes()])
        (generated,) = engine.generated.values()
        job.generated = generated  # type: ignore[attr-defined]
        return job, data

    job, data = await run(True, "cut-stream")
    assert len(job.plan.chunks) == 1 and job.stats.cut_windows >= 1
    streamed = _pcm_of_wav_stream(data)
    parser = TokenParser(runtime.layout, mode="controllable")
    parser.feed(job.generated)  # type: ignore[attr-defined]
    semantic = parser.semantic[:max_tokens]
    d_vector = runtime.speaker_vectors.compute(job.stats.global_tokens_per_chunk[0])
    offline = runtime.bicodec.decode_with_speaker(torch.tensor([semantic]), d_vector)[0].numpy()
    assert len(streamed) == len(offline) == len(semantic) * HOP
    err = streamed.astype(np.float32) / 32768.0 - np.clip(offline, -1.0, 32767 / 32768)
    assert np.abs(err).max() <= 1e-3

    held, _ = await run(False, "cut-held")
    assert held.stats.cut_windows == 0
    # A seeded stream keeps its schedule under any load (docs/api/index.md, `seed`): the same bytes, never cut.
    seeded, _ = await run(True, "cut-seeded", seed=7)
    assert seeded.stats.cut_windows == 0


def _pcm_of_wav_stream(data: bytes) -> np.ndarray:
    assert data[:4] == b"RIFF" and struct.unpack_from("<I", data, 40)[0] == 0xFFFFFFFF
    return np.frombuffer(data[WAV_HEADER:], dtype="<i2")


@pytest.mark.parametrize("max_tokens", [1, 5, 33])
async def test_max_tokens_counts_semantic_tokens(runtime: ModelRuntime, max_tokens: int) -> None:
    # Below ~39 the engine used to stop inside the voice preamble (32 global tokens): a 500 for a valid request.
    job = SynthesisJob.planned(
        runtime.pipeline_resources(),
        _request(
            runtime, "Hello there, how are you today?", request_id=f"mt-{max_tokens}", max_tokens=max_tokens
        ),
    )
    pcm = _pcm_of_wav(await job.collect())
    assert job.stats.semantic_tokens == max_tokens
    assert len(pcm) == max_tokens * HOP


@pytest.mark.parametrize(
    "sampling",
    [
        {"top_p": 5e-324},  # rounds to 0 in float32: every token used to be dropped (NaN, a 500)
        {"top_p": 1e-45},
        {"temperature": 2.0, "top_k": 1000, "top_p": 1.0},
        {"temperature": 1e-5, "top_k": 1},
        {"temperature": 0.0},
        {"repetition_penalty": 0.5},
        {"repetition_penalty": 2.0},
    ],
    ids=["top_p-5e-324", "top_p-1e-45", "hot", "near-greedy", "greedy", "penalty-0.5", "penalty-2"],
)
async def test_sampling_at_the_accepted_bounds_produces_audio(runtime: ModelRuntime, sampling: dict) -> None:
    job = SynthesisJob.planned(
        runtime.pipeline_resources(),
        _request(runtime, "Edge cases.", request_id="bounds", max_tokens=8, **sampling),
    )
    pcm = _pcm_of_wav(await job.collect())
    assert len(pcm) == job.stats.semantic_tokens * HOP > 0


async def test_closing_the_stream_aborts_generation_and_leaves_no_task(runtime: ModelRuntime) -> None:
    job = SynthesisJob.planned(
        runtime.pipeline_resources(),
        _request(runtime, LONG_ENGLISH, request_id="closeme", stream=True, max_tokens=2000),
    )
    stream = job.stream_bytes()
    first = await anext(stream)
    assert first[:4] == b"RIFF"
    await stream.aclose()
    for _ in range(40):
        if not any(r.startswith("closeme") for r in runtime.engine.active_requests()):
            break
        await asyncio.sleep(0.005)
    assert not any(r.startswith("closeme") for r in runtime.engine.active_requests())
    left = [t.get_name() for t in asyncio.all_tasks() if "closeme" in t.get_name()]
    assert left == []
    assert not job.stats.send_done


class _PacedEngine:
    """The real engine, one id per step, a step every `step_s`: the decoder keeps up, as it does on a GPU."""

    def __init__(self, inner: Any, step_s: float = 0.05) -> None:
        self.inner = inner
        self.step_s = step_s

    def stream(self, prompt_ids: list[int], sampling: Any, request_id: str) -> AsyncIterator[list[int]]:
        return self._stream(prompt_ids, sampling, request_id)

    async def _stream(
        self, prompt_ids: list[int], sampling: Any, request_id: str
    ) -> AsyncIterator[list[int]]:
        source = self.inner.stream(prompt_ids, sampling, request_id)
        try:
            async for ids in source:
                for token in ids:
                    await asyncio.sleep(self.step_s)
                    yield [token]
        finally:
            await source.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize(("latency", "most_steps"), [("balanced", 16), ("lowest", 8)])
async def test_first_audio_after_few_engine_steps_for_a_voice_with_known_globals(
    runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch, latency: str, most_steps: int
) -> None:
    monkeypatch.setattr(runtime, "engine", _PacedEngine(runtime.engine))
    job = SynthesisJob.planned(
        runtime.pipeline_resources(),
        _request(
            runtime,
            "Hello there, how are you today?",
            request_id=f"steps-{latency}",
            stream=True,
            latency=latency,
            voice="fixed",
            max_tokens=40,
        ),
    )
    source = job.stream_bytes()
    first = await anext(source)
    await source.aclose()
    assert first
    assert job.stats.preamble_ids == 0  # the prompt ends where semantic tokens begin
    assert job.stats.first_audio_engine_ids is not None and job.stats.first_audio_engine_ids <= most_steps


async def test_a_single_text_chunk_holds_no_audio_back_for_a_crossfade(
    runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No later text chunk will be crossfaded in, so each decoded chunk leaves whole (no 50 ms tail waits)."""
    monkeypatch.setattr(runtime, "engine", _PacedEngine(runtime.engine, step_s=0.01))
    job = SynthesisJob.planned(
        runtime.pipeline_resources(),
        _request(
            runtime,
            "Hello there, how are you today?",
            request_id="no-holdback",
            stream=True,
            latency="balanced",
            voice="fixed",
            max_tokens=40,
            audio_format="pcm",
        ),
    )
    source = job.stream_bytes()
    first = await anext(source)
    await source.aclose()
    assert (
        len(first) // 2 == job.stats.decoded_samples == (8 - 4) * 320
    )  # the first chunk: 8 tokens, 4 held for the fade


async def test_a_style_voice_waits_for_its_globals_first(
    runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model emits 32 globals (and markers) before any semantic token: the steps the known-globals path saves."""
    job = SynthesisJob.planned(
        runtime.pipeline_resources(),
        _request(
            runtime,
            "Hello there.",
            request_id="steps-style",
            stream=True,
            latency="balanced",
            voice="default",
            max_tokens=40,
        ),
    )
    await job.collect()
    assert job.stats.preamble_ids is not None and job.stats.preamble_ids >= 33


async def test_jobs_decode_through_the_codec_scheduler_and_streams_pace_against_playback(
    runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One StreamHandle per job, closed at its end, ordered by the job's playback clock; every window a streaming job
    submits waits for the clock's `pace` first (and counts its audio on it); a non-streaming job plays "from its
    arrival" and never paces."""
    scheduler = runtime.codec_scheduler
    opened: list[Any] = []
    open_stream = scheduler.open_stream

    def spy(playback: Any = None, owner: str | None = None, work_class: Any = "live", **kind: Any) -> Any:
        handle = open_stream(playback, owner, work_class, **kind)
        playback.paces = []
        pace = playback.pace

        async def recorded(bound: float) -> None:
            playback.paces.append(bound)
            await pace(bound)

        playback.pace = recorded
        opened.append(handle)
        return handle

    monkeypatch.setattr(scheduler, "open_stream", spy)
    calls = scheduler.stats.calls
    streamed = SynthesisJob.planned(
        runtime.pipeline_resources(), _request(runtime, "Pacing the stream.", request_id="paced", stream=True)
    )
    await streamed.collect()
    held = SynthesisJob.planned(
        runtime.pipeline_resources(), _request(runtime, "Not streamed.", request_id="held", stream=False)
    )
    await held.collect()

    assert len(opened) == 2 and all(h.closed for h in opened) and scheduler.active_streams == 0
    assert scheduler.stats.calls > calls  # the decodes ran as scheduler calls
    stream_playback, held_playback = (h.playback for h in opened)
    assert stream_playback is streamed.playback and stream_playback.arrival == streamed.arrival
    assert len(stream_playback.paces) >= 2  # the first window and the finishing one at least
    # Each group of windows waits with its own audio counted (the next text chunk's generation with none): the
    # client holds at most about the setting.
    limit = runtime.settings.stream.stream_max_ahead_s
    assert (
        all(PACE_FLOOR_S <= bound <= limit for bound in stream_playback.paces)
        and min(stream_playback.paces) < limit
    )
    assert stream_playback.audio_seconds == pytest.approx(streamed.stats.output_samples / NATIVE_RATE)
    assert held_playback.paces == [] and held_playback.first_audio_at == held.arrival


@pytest.fixture(scope="module")
def sr_runtime(demo_model_dir: Path) -> Iterator[ModelRuntime]:
    rt = ModelRuntime(_settings(demo_model_dir).model_copy(update={"sr_enabled": True}))
    asyncio.run(rt.start())
    assert rt.ready and rt.sr is not None, rt.error
    yield rt
    asyncio.run(rt.shutdown())


def test_the_runtime_runs_numpy_blas_on_one_thread(sr_runtime: ModelRuntime) -> None:
    """The output resampler's small products (audio/polyphase.py) on a pool of BLAS threads spinning between them
    doubled the API path's CPU per audio second: the runtime limits BLAS to one thread when it is built."""
    from threadpoolctl import threadpool_info

    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)


@pytest.mark.parametrize(
    "padded,stretch",
    [(False, 1.0), (True, 1.0), (True, 1.13)],
    ids=["cpu policy", "gpu policy", "gpu policy, speed"],
)
async def test_48khz_streams_super_resolve_through_the_scheduler_as_offline(
    sr_runtime: ModelRuntime, padded: bool, stretch: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two concurrent 48 kHz streams: their AP-BWE windows go through the codec scheduler (which may batch them) and
    each output equals the offline upsample of the 16 kHz audio that job fed to super-resolution. (The demo's
    random AP-BWE turns the 16-bit rounding of its input into ~20 dB of difference, so the input is taken as the job
    had it, in float.) With the GPU's policy (padded batches) each stream's true end is shaped to a bucket's length
    and rides a bucketed call: no exact-length call is left. With `speed` the time-stretched audio ends off the grid:
    the planner extends it with zeros to the grid, and the offline upsample of that equals the stream."""
    runtime = sr_runtime
    if padded:
        monkeypatch.setattr(
            runtime.codec_scheduler, "policy", replace(runtime.codec_scheduler.policy, pad_batch=True)
        )
    eager_before = runtime.codec_scheduler.stats.eager_calls
    ends: list[int] = []
    pads: dict[str, int] = {}
    texts = ["The first caller speaks.", "A second caller at once."]
    sr_rows, sr_calls = (
        runtime.codec_scheduler.stats.rows_by_kind["sr"],
        runtime.codec_scheduler.stats.calls_by_kind["sr"],
    )

    async def run(text: str, rid: str) -> tuple[np.ndarray, np.ndarray]:
        request = replace(
            _request(runtime, text, request_id=rid, stream=True, audio_format="pcm"),
            sample_rate=48_000,
            want_sr=True,
            time_stretch=stretch,
        )
        job = SynthesisJob.planned(runtime.pipeline_resources(), request)
        planner, fed = job.chain.bwe_stream, []
        push = planner.push

        def recording(chunk: np.ndarray, ahead: np.ndarray | None = None) -> list:
            fed.append(np.array(chunk, np.float32))
            return push(chunk, ahead)

        planner.push = recording
        finish = planner.finish

        def finishing() -> list:
            windows = finish()
            ends.append(windows[-1].length)
            pads[rid] = planner.end_padding
            return windows

        planner.finish = finishing
        data = await job.collect()
        assert job.sr_applied
        narrow = np.concatenate(
            [*fed, np.zeros(pads[rid], np.float32)]
        )  # what was planned, its end padding too
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0, narrow

    rids = [f"sr48-{i}" for i in range(len(texts))]
    results = await asyncio.gather(*(run(t, rid) for t, rid in zip(texts, rids, strict=True)))
    stats = runtime.codec_scheduler.stats
    assert (
        stats.rows_by_kind["sr"] > sr_rows and stats.calls_by_kind["sr"] > sr_calls
    )  # through the scheduler
    assert len(ends) == 2 and all(
        n % 80 == 0 for _, narrow in results for n in [narrow.size]
    )  # ends on the grid
    if stretch == 1.0:
        assert all(pads[rid] == 0 for rid in rids)  # tokens and crossfades keep the end on the grid
    else:
        assert all(0 < pads[rid] < 80 for rid in rids)  # the stretch moved it off; zeros bring it back
    if padded:
        assert (
            all(n in runtime.codec_scheduler.policy.sr_buckets for n in ends)
            and stats.eager_calls == eager_before
        )
    else:
        assert stats.eager_calls > eager_before  # each true end at its exact length, as before
    for audio48, narrow in results:
        offline = np.clip(runtime.sr.upsample(narrow), -1.0, 32767 / 32768)
        assert audio48.shape == offline.shape == (3 * narrow.size,)
        assert np.abs(audio48 - offline).max() <= 1.5 / 32768  # the 16-bit output's rounding


@pytest.mark.parametrize(
    "text", ["Hello there, how are you today?", LONG_ENGLISH], ids=["one chunk", "long text"]
)
async def test_a_48khz_stream_plays_its_first_decoded_chunk_through_a_lead_window(
    sr_runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """Balanced at 48 kHz: the first AP-BWE window takes its right context from the first chunk's held overlap, so
    the first bytes leave with the first decoded chunk instead of waiting twelve engine steps for the second. The
    lead's kept audio is what AP-BWE gives the received samples with that guess after them; everything after it
    equals the offline upsample of the audio the job fed to super-resolution. A long text takes no lead (the
    crossfade joiner holds a tail back for its next text chunk) and its audio equals the offline upsample whole."""
    runtime = sr_runtime
    monkeypatch.setattr(runtime, "engine", _PacedEngine(runtime.engine, step_s=0.03))
    request = replace(
        _request(
            runtime,
            text,
            request_id=f"sr48-lead-{len(text)}",
            stream=True,
            audio_format="pcm",
            latency="balanced",
            voice="fixed",
            max_tokens=60,
        ),
        sample_rate=48_000,
        want_sr=True,
    )
    job = SynthesisJob.planned(runtime.pipeline_resources(), request)
    assert job.chain.sr_lead
    planner, fed, leads = job.chain.bwe_stream, [], []
    push = planner.push

    def recording(chunk: np.ndarray, ahead: np.ndarray | None = None) -> list:
        fed.append(np.array(chunk, np.float32))
        windows = push(chunk, ahead)
        if planner.lead_windows and not leads:
            leads.append(windows[0])
        return windows

    planner.push = recording
    source = job.stream_bytes()
    pieces = [await anext(source)]
    long_text = text == LONG_ENGLISH
    assert (len(job.plan.chunks) > 1) == long_text
    if not long_text:
        assert (
            job.stats.decoded_chunks == 1 and planner.lead_windows == 1
        )  # the second chunk: 12 steps (360 ms) away
    pieces += [piece async for piece in source]
    audio48 = np.frombuffer(b"".join(pieces), dtype="<i2").astype(np.float32) / 32768.0
    rounding = 1.5 / 32768  # the 16-bit output's rounding
    offline = np.clip(runtime.sr.upsample(np.concatenate(fed)), -1.0, 32767 / 32768)
    assert audio48.shape == offline.shape
    if long_text:
        assert planner.lead_windows == 0 and np.abs(audio48 - offline).max() <= rounding
        return
    lead = leads[0]
    assert lead.keep_start == 0 and lead.keep_end == 3 * 4 * 320  # balanced keeps 4 of its first 8 tokens
    guessed = np.clip(runtime.sr.upsample(lead.samples)[: lead.keep_end], -1.0, 32767 / 32768)
    assert np.abs(audio48[: lead.keep_end] - guessed).max() <= rounding
    assert np.abs(audio48[lead.keep_end :] - offline[lead.keep_end :]).max() <= rounding


async def test_a_48khz_stream_takes_no_lead_when_admission_finds_the_engine_slow(
    sr_runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Admission.sr_lead says no (the engine under 3.5x real time): the first window waits for real context."""
    runtime = sr_runtime
    admission = Admission(runtime.codec_scheduler, generating=lambda: 1)
    monkeypatch.setattr(admission, "pace", lambda: 150.0)  # 3x real time: under the lead's 3.5x
    monkeypatch.setattr(runtime, "admission", admission, raising=False)
    request = replace(
        _request(
            runtime,
            "Hello there.",
            request_id="sr48-no-lead",
            stream=True,
            audio_format="pcm",
            latency="balanced",
            voice="fixed",
            max_tokens=40,
            seed=None,  # a seeded request takes the lead whatever the pace: its audio must not depend on load
        ),
        sample_rate=48_000,
        want_sr=True,
    )
    job = SynthesisJob.planned(runtime.pipeline_resources(), request)
    assert not job.chain.sr_lead
    await job.collect()
    assert job.chain.bwe_stream.lead_windows == 0 and job.chain.bwe_stream.windows > 0
    assert admission.sr_leads == {"llm_slow": 1}


async def test_a_window_longer_than_the_pacing_limit_is_asked_for_before_the_client_runs_dry() -> None:
    """Steady decode windows reach 4 s, longer than TTS_STREAM_MAX_AHEAD_S (3 s): pacing waits until the client holds
    `PACE_FLOOR_S`, not until it has nothing left (32 streams underran on the stand-in that way)."""
    from types import SimpleNamespace

    asked: list[float] = []

    async def pace(bound: float) -> None:
        asked.append(bound)

    job = SimpleNamespace(
        request=SimpleNamespace(stream=True, paced=True),
        playback=SimpleNamespace(pace=pace),
        resources=SimpleNamespace(settings=Settings(stream_max_ahead_s=3.0)),
    )
    await SynthesisJob._pace(job, 4.0)  # type: ignore[arg-type]
    await SynthesisJob._pace(job, 1.0)  # type: ignore[arg-type]
    assert asked == [PACE_FLOOR_S, 2.0]


async def test_a_stream_the_scheduler_cannot_open_fails_the_job_instead_of_hanging(
    runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = SynthesisJob.planned(
        runtime.pipeline_resources(), _request(runtime, "Hello.", request_id="no-handle", stream=True)
    )

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the scheduler is closed")

    monkeypatch.setattr(job.scheduler, "open_stream", refuse)
    with pytest.raises(SynthesisError) as failed:
        await asyncio.wait_for(job.collect(), 10)
    assert failed.value.code == "GENERATION_FAILED"


async def test_a_background_job_runs_as_background_work_that_admission_never_sees(
    runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's chapter (work_class background): its codec stream is a background one, its engine requests carry the
    class, and admission neither steers its first chunk nor notes its tokens; its audio equals the live job's."""
    scheduler = runtime.codec_scheduler
    admission = Admission(scheduler, generating=lambda: len(runtime.engine.active_requests()))
    monkeypatch.setattr(runtime, "admission", admission, raising=False)
    classes: list[str] = []
    open_stream = scheduler.open_stream

    def spy(playback: Any = None, owner: str | None = None, work_class: Any = "live", **kind: Any) -> Any:
        classes.append(work_class)
        return open_stream(playback, owner, work_class, **kind)

    monkeypatch.setattr(scheduler, "open_stream", spy)
    engine_classes: list[str] = []
    stream = runtime.engine.stream

    def engine_spy(prompt: Any, sampling: Any, request_id: str) -> Any:
        engine_classes.append(sampling.work_class)
        return stream(prompt, sampling, request_id)

    monkeypatch.setattr(runtime.engine, "stream", engine_spy)
    noted: list[int] = []
    monkeypatch.setattr(admission, "note_tokens", noted.append)
    live = SynthesisJob.planned(
        runtime.pipeline_resources(), _request(runtime, "A chapter.", request_id="live-ch")
    )
    live_audio = await live.collect()
    seen = (sum(admission.first_chunks.values()), len(noted))
    background_seconds = scheduler.stats.background_seconds
    request = replace(_request(runtime, "A chapter.", request_id="job-ch"), work_class="background")
    job = SynthesisJob.planned(runtime.pipeline_resources(), request)
    assert await job.collect() == live_audio
    assert classes == ["live", "background"] and set(engine_classes) == {"live", "background"}
    assert sum(admission.first_chunks.values()) == seen[0]  # its first chunk was not steered (nor counted)
    assert seen[1] > 0 and len(noted) == seen[1]  # none of its tokens noted
    assert admission.background_generating == 0 and scheduler.background_streams == 0
    assert scheduler.stats.background_seconds > background_seconds


async def test_only_live_streamed_requests_ask_the_engine_for_a_pace(
    runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TTS_LLM_PACE_LEAD_IDS (core/llm/engine_pace.py): a live request whose audio is streamed is held near real time;
    a non-streamed one or a job's chapter runs free (nobody plays it as it comes); 0 paces none."""
    paces: list[EnginePace | None] = []
    stream = runtime.engine.stream

    def engine_spy(prompt: Any, sampling: Any, request_id: str) -> Any:
        paces.append(sampling.pace)
        return stream(prompt, sampling, request_id)

    monkeypatch.setattr(runtime.engine, "stream", engine_spy)
    monkeypatch.setattr(runtime.settings.llm, "llm_pace_lead_ids", 100)
    resources = runtime.pipeline_resources()
    requests = [
        _request(runtime, "Paced.", request_id="pace-live", stream=True),
        _request(runtime, "Free.", request_id="pace-whole"),
        replace(_request(runtime, "Free.", request_id="pace-job", stream=True), work_class="background"),
    ]
    for request in requests:
        await SynthesisJob.planned(resources, request).collect()
    assert paces == [EnginePace(100, runtime.settings.llm.llm_pace_rate), None, None]
    monkeypatch.setattr(runtime.settings.llm, "llm_pace_lead_ids", 0)
    await SynthesisJob.planned(resources, requests[0]).collect()
    assert paces[-1] is None
