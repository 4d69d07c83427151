"""BatchingDecoder: concurrent single-stream decodes run as batches and give the same audio."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from core.bicodec import BiCodecDecoder
from core.streaming import StreamingConfig, StreamingDecoder
from services.pipeline.decode_batcher import BatchingDecoder


class SlowDecoder:
    """Records the batch size of every call; sleeps so that concurrent callers queue up behind it."""

    hop_length = 4
    device = torch.device("cpu")

    def __init__(self, delay_s: float = 0.05, fail: bool = False) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.batch_sizes: list[int] = []
        self.lock = threading.Lock()

    def decode_with_speaker(self, semantic: torch.Tensor, d_vector: torch.Tensor) -> torch.Tensor:
        with self.lock:
            self.batch_sizes.append(int(semantic.shape[0]))
        time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("model exploded")
        # Row i depends only on row i's ids and d-vector, as in a real decoder.
        wav = semantic.float().repeat_interleave(self.hop_length, dim=1) + d_vector[:, :1]
        return wav


@pytest.fixture(scope="module")
def demo_decoder(demo_model_dir: Path) -> BiCodecDecoder:
    return BiCodecDecoder.from_pretrained(demo_model_dir / "BiCodec")


def _concurrently(fn, args_list: list, workers: int) -> list:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda a: fn(*a), args_list))


def test_concurrent_calls_of_equal_length_share_a_batch_and_keep_their_rows() -> None:
    inner = SlowDecoder()
    batcher = BatchingDecoder(inner, max_batch=8)
    calls = [(torch.full((1, 5), i), torch.full((1, 3), 100.0 * i)) for i in range(8)]
    outs = _concurrently(batcher.decode_with_speaker, calls, workers=8)
    for i, out in enumerate(outs):
        assert out.shape == (1, 5 * inner.hop_length)
        assert torch.all(out == i + 100.0 * i)  # each caller got its own row back
    assert sum(inner.batch_sizes) == 8
    assert max(inner.batch_sizes) > 1  # the ones queued behind the first call were batched
    assert batcher.stats.calls == 8 and batcher.stats.batches == len(inner.batch_sizes)


def test_different_lengths_are_never_batched_together_and_max_batch_holds() -> None:
    inner = SlowDecoder()
    batcher = BatchingDecoder(inner, max_batch=3)
    calls = [(torch.full((1, 4 + i % 2), i), torch.zeros(1, 3)) for i in range(10)]
    outs = _concurrently(batcher.decode_with_speaker, calls, workers=10)
    for (semantic, _), out in zip(calls, outs, strict=True):
        assert out.shape[1] == semantic.shape[1] * inner.hop_length
    assert max(inner.batch_sizes) <= 3


def test_queueing_is_counted_for_every_call_and_for_first_chunks_apart() -> None:
    inner = SlowDecoder(delay_s=0.05)
    batcher = BatchingDecoder(inner, max_batch=1, short_window=8)  # batch 1: every call but the first waits
    calls = [(torch.full((1, 4 if i < 2 else 20), i), torch.zeros(1, 3)) for i in range(6)]
    _concurrently(batcher.decode_with_speaker, calls, workers=6)
    s = batcher.stats
    assert s.calls == 6 and s.short_window_calls == 2  # the two 4-token windows are first chunks
    assert s.wait_seconds > 0 and s.max_wait_seconds >= s.mean_wait_seconds > 0
    assert s.wait_seconds >= s.short_window_wait_seconds and s.max_wait_seconds >= s.max_short_window_wait_seconds


def test_runners_bound_the_model_calls_in_flight() -> None:
    active, peak = 0, 0
    lock = threading.Lock()

    class Counting(SlowDecoder):
        def decode_with_speaker(self, semantic, d_vector):
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
            try:
                return super().decode_with_speaker(semantic, d_vector)
            finally:
                with lock:
                    active -= 1

    batcher = BatchingDecoder(Counting(delay_s=0.03), max_batch=1, runners=2)
    calls = [(torch.full((1, 3), i), torch.zeros(1, 3)) for i in range(8)]
    _concurrently(batcher.decode_with_speaker, calls, workers=8)
    assert peak <= 2


def test_a_model_failure_reaches_every_caller_of_the_batch() -> None:
    batcher = BatchingDecoder(SlowDecoder(fail=True), max_batch=8)

    def call(i: int) -> str:
        try:
            batcher.decode_with_speaker(torch.full((1, 5), i), torch.zeros(1, 3))
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(call, range(6)))
    assert results == ["model exploded"] * 6
    # The batcher is not wedged: a later call still runs.
    batcher.decoder.fail = False
    assert batcher.decode_with_speaker(torch.ones(1, 2, dtype=torch.long), torch.zeros(1, 3)).shape == (1, 8)


def test_attributes_are_forwarded_to_the_wrapped_decoder() -> None:
    inner = SlowDecoder()
    batcher = BatchingDecoder(inner)
    assert batcher.hop_length == inner.hop_length
    assert batcher.device == inner.device
    with pytest.raises(ValueError):
        BatchingDecoder(inner, max_batch=0)


def test_real_decoder_batched_equals_unbatched(demo_decoder: BiCodecDecoder) -> None:
    gen = torch.Generator().manual_seed(0)
    d_vectors = torch.randn(6, demo_decoder.d_vector_dim, generator=gen)
    calls = [
        (torch.randint(0, 8192, (1, 40 + 8 * (i % 2)), generator=gen), d_vectors[i : i + 1]) for i in range(6)
    ]
    expected = [demo_decoder.decode_with_speaker(s, d) for s, d in calls]
    batcher = BatchingDecoder(demo_decoder, max_batch=8)
    got = _concurrently(batcher.decode_with_speaker, calls, workers=6)
    for want, have in zip(expected, got, strict=True):
        assert have.shape == want.shape
        assert torch.allclose(have, want, atol=1e-5)


def test_streaming_decoder_over_the_batcher_gives_the_same_stream(demo_decoder: BiCodecDecoder) -> None:
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 8192, 180).tolist()
    d_vector = torch.randn(1, demo_decoder.d_vector_dim, generator=torch.Generator().manual_seed(2))
    config = StreamingConfig(
        first_chunk_tokens=20, max_chunk_tokens=60, left_context_tokens=16, lookahead_tokens=8
    )

    def run(decoder) -> np.ndarray:
        stream = StreamingDecoder(decoder, d_vector, config)
        parts = []
        for i in range(0, len(tokens), 7):
            parts += stream.push(tokens[i : i + 7])
        parts += stream.finish()
        return np.concatenate(parts)

    direct = run(demo_decoder)
    batched = run(BatchingDecoder(demo_decoder))
    assert batched.shape == direct.shape == (180 * demo_decoder.hop_length,)
    np.testing.assert_allclose(batched, direct, atol=1e-5)
