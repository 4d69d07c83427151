"""Where a stream's audio is encoded: compressed formats (PyAV) in the encode pool, off the event loop that serves
every other stream; sample-wise formats inline. Either way the bytes are those of encoding the same chunks in order."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from services.pipeline.audio_output import AudioOutput
from services.pipeline.pipeline_stats import PipelineStats
from shared.settings import Settings

RESOURCES = SimpleNamespace(
    settings=Settings(), sr=None, scheduler=None
)  # what AudioOutput reads: no AP-BWE, no scheduler


def chunks(seed: int = 0) -> list[np.ndarray]:
    """Decoded 16 kHz pieces of a stream: a short first one, then longer ones, as the streaming schedule makes."""
    rng = np.random.default_rng(seed)
    return [(0.2 * rng.standard_normal(n)).astype(np.float32) for n in (1_280, 4_000, 9_600, 16_000, 7_040)]


def output(fmt: str, rate: int) -> AudioOutput:
    return AudioOutput(
        RESOURCES, audio_format=fmt, sample_rate=rate, stream=True, want_bwe=False, stats=PipelineStats()
    )


async def encode_on_loop(fmt: str, rate: int) -> tuple[bytes, set[int]]:
    """The stream's bytes through `push`/`finish` on a running loop, and the threads its encoder ran on."""
    out = output(fmt, rate)
    threads: set[int] = set()
    push = out.encoder.push

    def recording_push(samples: np.ndarray) -> bytes:
        threads.add(threading.get_ident())
        return push(samples)

    out.encoder.push = recording_push
    data = bytearray()
    for piece in chunks():
        data += await out.push(piece)
    data += await out.finish()
    return bytes(data), threads


def encode_inline(fmt: str, rate: int) -> bytes:
    """The same chunks through the synchronous chain alone, in this thread."""
    out = output(fmt, rate)
    data = bytearray()
    for piece in chunks():
        data += out._encode(out.joiner.push(piece), final=False)
    data += out._encode(out.joiner.finish(), final=True)
    return bytes(data)


@pytest.mark.parametrize(("fmt", "rate"), [("mp3", 24_000), ("flac", 16_000), ("aac", 24_000)])
def test_compressed_formats_encode_off_the_loop_with_the_same_bytes(fmt: str, rate: int) -> None:
    loop_thread = threading.get_ident()  # asyncio.run runs the loop in this thread
    data, threads = asyncio.run(encode_on_loop(fmt, rate))
    assert threads and loop_thread not in threads
    assert data == encode_inline(fmt, rate)


def test_opus_encodes_off_the_loop() -> None:
    # Ogg picks a random stream serial, so opus bytes differ run to run: where it ran and that it made pages.
    data, threads = asyncio.run(encode_on_loop("opus", 24_000))
    assert threading.get_ident() not in threads
    assert data.startswith(b"OggS") and len(data) > 1_000


@pytest.mark.parametrize(("fmt", "rate"), [("pcm", 16_000), ("wav", 24_000), ("mulaw", 8_000)])
def test_sample_wise_formats_stay_on_the_loop(fmt: str, rate: int) -> None:
    data, threads = asyncio.run(encode_on_loop(fmt, rate))
    assert threads == {threading.get_ident()}
    assert data == encode_inline(fmt, rate)


def test_streams_encoding_at_once_each_get_their_own_bytes_in_order() -> None:
    async def many() -> list[bytes]:
        return [data for data, _ in await asyncio.gather(*(encode_on_loop("mp3", 24_000) for _ in range(6)))]

    expected = encode_inline("mp3", 24_000)
    assert all(data == expected for data in asyncio.run(many()))
