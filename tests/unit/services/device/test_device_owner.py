"""One owner of the device: while serving, every model call reaches the device on the codec scheduler's device
threads (`codec-device*`): decode and super-resolution windows, speaker vectors, reference encodes, CTC forwards.
A call made from anywhere else (the event loop, `asyncio.to_thread`, a request's worker thread) fails here."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.voices import NUM_GLOBAL_TOKENS
from services.deployment.runtime import ModelRuntime
from services.pipeline.synthesis import NATIVE_RATE, SamplingOptions, SynthesisJob, SynthesisRequest
from shared.settings import Settings
from tests.ctc_model import build_tiny_ctc_model

DEVICE_THREADS = "codec-device"


@pytest.fixture(scope="module")
def runtime(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelRuntime]:
    ctc = build_tiny_ctc_model(tmp_path_factory.mktemp("ctc"))
    rt = ModelRuntime(
        Settings(
            model_dir=demo_model_dir,
            warmup=False,
            auth_enabled=False,
            device="cpu",
            sr_enabled=False,
            log_json=False,
            align_method="ctc",
            align_ctc_model=str(ctc),
        )
    )
    asyncio.run(rt.start())
    assert rt.ready, rt.error
    yield rt
    asyncio.run(rt.shutdown())


class Probe:
    """Wraps a model's entry point and records the thread of every call."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def probed(*args: Any, **kwargs: Any) -> Any:
            self.threads.append(threading.current_thread().name)
            return fn(*args, **kwargs)

        return probed


def _request(runtime: ModelRuntime, voice_tokens: tuple[int, ...]) -> SynthesisRequest:
    from dataclasses import replace

    voice = replace(runtime.voices.resolve(runtime.voices.default_voice_id), global_tokens=voice_tokens)
    sampling = SamplingOptions(
        max_tokens=30, seed=1, temperature=0.8, top_k=50, top_p=1.0, repetition_penalty=1.05
    )
    return SynthesisRequest(
        request_id="owner",
        text="Hello there, friend.",
        voice=voice,
        sampling=sampling,
        audio_format="pcm",
        sample_rate=NATIVE_RATE,
        stream=True,
        timestamps="word",
    )


async def test_speaker_vectors_decodes_and_ctc_run_on_the_device_threads(
    runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    speaker, decode, ctc = Probe(), Probe(), Probe()
    bicodec = runtime.bicodec
    monkeypatch.setattr(bicodec, "speaker_vector", speaker.wrap(bicodec.speaker_vector))
    monkeypatch.setattr(bicodec, "decode_rows", decode.wrap(bicodec.decode_rows))
    for aligner in runtime.aligner.values():
        monkeypatch.setattr(aligner.model, "forward", ctc.wrap(aligner.model.forward))
    fresh = tuple(
        int(x) for x in np.random.default_rng(7).integers(0, 4096, NUM_GLOBAL_TOKENS)
    )  # not cached yet
    await SynthesisJob.planned(runtime.pipeline_resources(), _request(runtime, fresh)).collect()
    assert speaker.threads and decode.threads and ctc.threads
    for probe in (speaker, decode, ctc):
        assert all(name.startswith(DEVICE_THREADS) for name in probe.threads), probe.threads


async def test_a_reference_encode_runs_on_the_device_threads(
    runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    if runtime.cloning_unavailable_reason is not None:
        pytest.skip(runtime.cloning_unavailable_reason)
    samples = (0.1 * np.sin(np.arange(NATIVE_RATE * 2) * 0.05)).astype(np.float32)
    runtime.codec_scheduler.start()  # the serving loop: this test's
    await asyncio.to_thread(runtime.encode_reference, samples)  # loads the encoder on first use
    encode = Probe()
    encoder = runtime._reference_encoder
    monkeypatch.setattr(encoder, "encode", encode.wrap(encoder.encode))
    await asyncio.to_thread(
        runtime.encode_reference, samples
    )  # a request's worker thread, as references.py runs it
    assert encode.threads and all(name.startswith(DEVICE_THREADS) for name in encode.threads), encode.threads


async def test_concurrent_alignments_through_the_scheduler_equal_each_alone(runtime: ModelRuntime) -> None:
    """Several request threads align at once, their forward passes queued on the device threads: each result is
    what the same alignment gives alone (no per-call state on the shared aligner)."""
    from core.align import align

    aligner = next(iter(runtime.aligner.values()))
    rng = np.random.default_rng(3)
    pieces = [
        (
            rng.standard_normal(NATIVE_RATE * (1 + i % 3)).astype(np.float32) * 0.1,
            ["hello", "there", "friend"][: 1 + i % 3],
        )
        for i in range(6)
    ]
    runtime.codec_scheduler.start()  # the serving loop: this test's

    def one(i: int) -> list[tuple[float, float]]:
        audio, words = pieces[i]
        return [(w.start, w.end) for w in align(audio, words, method="ctc", ctc=aligner).words]

    alone = [await asyncio.to_thread(one, i) for i in range(len(pieces))]
    together = await asyncio.gather(*(asyncio.to_thread(one, i) for i in range(len(pieces))))
    assert list(together) == alone
