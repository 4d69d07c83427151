"""The codec models as batched, fixed-shape calls: padded rows equal unpadded ones, and the runner returns each
row's kept samples, through the real scheduler, for every latency schedule's windows."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.apbwe import SuperResolution
from core.bicodec import BiCodecDecoder
from core.streaming import StreamingConfig, StreamingDecoder
from services.device import CodecScheduler, DecodeWindow, SchedulerPolicy, SRWindow
from services.device.calls import Call
from services.device.graphs import CodecGraphs, GraphKey, GraphPlan, tf32
from services.device.runner import ModelRunner
from tests.tiny_models import demo_decoder, small_sr

# Padded rows round differently from the row alone (another length and batch: other conv blocking); the masked tail
# adds nothing (1.0-1.3e-5 at released size: docs/reference/gpu-serving.md#right-padding-is-exact). Outputs are
# tanh-bounded, so this is absolute.
DECODE_ATOL = 3e-5
# AP-BWE rows: right zero-padding changes nothing the kept region reads, but this CPU's GEMMs round a few samples by
# ~1e-8 at some lengths (seen 1.5e-8 max over random shapes; a grid-aligned bucket often gives 0).
SR_ATOL = 1e-6
TINY_BICODEC = Path(__file__).resolve().parents[4] / ".." / "shared" / "fixtures" / "bicodec_tiny"
SLOW = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def decoder() -> BiCodecDecoder:
    return demo_decoder(seed=3)


@pytest.fixture(scope="module")
def sr() -> SuperResolution:
    return small_sr(seed=1)


def _d(decoder: BiCodecDecoder, seed: int) -> torch.Tensor:
    return torch.randn(decoder.d_vector_dim, generator=torch.Generator().manual_seed(seed))


def _ids(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 8192, n).astype(np.int32)


# ---------------------------------------------------------------------------------------------- BiCodec


@SLOW
@given(
    lengths=st.lists(st.integers(1, 20), min_size=1, max_size=4),
    extra=st.integers(0, 9),
    seed=st.integers(0, 99),
)
def test_padded_rows_equal_each_row_decoded_alone(decoder, lengths, extra, seed) -> None:
    width = max(lengths) + extra
    ids = np.zeros((len(lengths), width), np.int64)
    rows = [_ids(n, seed + i) for i, n in enumerate(lengths)]
    for i, row in enumerate(rows):
        ids[i, : row.size] = row
    d = torch.stack([_d(decoder, seed + i) for i in range(len(lengths))])
    wav = decoder.decode_padded(ids, np.array(lengths), d)
    hop = decoder.hop_length
    assert wav.shape == (len(lengths), width * hop) and wav.dtype == torch.float32
    for i, row in enumerate(rows):
        alone = decoder.decode_with_speaker(torch.from_numpy(row.astype(np.int64))[None], d[i : i + 1])[0]
        np.testing.assert_allclose(wav[i, : row.size * hop].numpy(), alone.numpy(), atol=DECODE_ATOL, rtol=0)


def test_the_mask_is_what_makes_padding_exact(decoder) -> None:
    """Without the mask, padding moves the kept region (a check that the test above can fail)."""
    row = _ids(12, 5)
    d = _d(decoder, 5)[None]
    alone = decoder.decode_with_speaker(torch.from_numpy(row.astype(np.int64))[None], d)[0].numpy()
    ids = np.zeros((1, 24), np.int64)
    ids[0, :12] = row
    unmasked = decoder.decode_padded(ids, np.array([24]), d)[0, : 12 * 320].numpy()
    masked = decoder.decode_padded(ids, np.array([12]), d)[0, : 12 * 320].numpy()
    assert np.abs(masked - alone).max() <= DECODE_ATOL < np.abs(unmasked - alone).max()


def test_the_upstream_fixture_decodes_the_same_padded_and_batched() -> None:
    """The upstream tiny checkpoint's two rows, padded to 160 tokens beside a shorter row: the upstream decode."""
    if not (TINY_BICODEC / "expected.npz").is_file():
        pytest.skip(f"BiCodec fixture not found at {TINY_BICODEC}")
    tiny = BiCodecDecoder.from_pretrained(TINY_BICODEC)
    expected = dict(np.load(TINY_BICODEC / "expected.npz"))
    semantic, d = expected["semantic"], torch.from_numpy(expected["d_vector"])
    n = semantic.shape[1]
    ids = np.zeros((3, 160), np.int64)
    ids[:2, :n], ids[2, :60] = semantic, semantic[0, :60]
    wav = tiny.decode_padded(ids, np.array([n, n, 60]), torch.cat([d, d[:1]]))
    np.testing.assert_allclose(wav[:2, : n * 320].numpy(), expected["wav"][:, 0], atol=1e-4, rtol=0)
    short = tiny.decode_with_speaker(torch.from_numpy(semantic[:1, :60]), d[:1])[0]
    np.testing.assert_allclose(wav[2, : 60 * 320].numpy(), short.numpy(), atol=DECODE_ATOL, rtol=0)


def test_decode_padded_refuses_mismatched_shapes(decoder) -> None:
    with pytest.raises(ValueError, match="decode_rows takes ids"):
        decoder.decode_padded(np.zeros((2, 8), np.int64), np.array([8]), torch.zeros(2, decoder.d_vector_dim))
    with pytest.raises(ValueError, match="decode_rows takes ids"):
        decoder.decode_padded(np.zeros((2, 8), np.int64), np.array([8, 8]), torch.zeros(2, 3))
    rows = np.array([0, 0]), np.array([8, 8]), np.array([8, 8]), torch.zeros(2, decoder.d_vector_dim)
    with pytest.raises(ValueError, match="margin"):  # the wave generator's columns would be empty
        decoder.decode_rows(np.zeros((2, 8), np.int64), *rows, margin=4)


def test_the_offline_api_still_checks_ranges(decoder) -> None:
    with pytest.raises(ValueError, match="out of range"):
        decoder.decode_with_speaker(torch.tensor([[1, 8192]]), _d(decoder, 0)[None])


# ---------------------------------------------------------------------------------------------- AP-BWE


@SLOW
@given(
    lengths=st.lists(st.integers(1_000, 2_000), min_size=1, max_size=3),
    extra=st.integers(0, 500),
    seed=st.integers(0, 99),
)
def test_sr_batch_rows_equal_single_windows_away_from_the_padding(sr, lengths, extra, seed) -> None:
    rng = np.random.default_rng(seed)
    rows = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]
    x = np.zeros((len(rows), max(lengths) + extra), np.float32)
    for i, row in enumerate(rows):
        x[i, : row.size] = row
    y = sr.enhance_batch(x)
    assert y.shape == (len(rows), 3 * x.shape[1])
    for i, row in enumerate(rows):
        keep = 3 * (row.size - sr.context)  # the output a streamed window keeps: its right context is dropped
        np.testing.assert_allclose(y[i, :keep].numpy(), sr.enhance_window(row)[:keep], atol=SR_ATOL, rtol=0)


def test_sr_rows_of_one_exact_length_equal_single_windows_entirely(sr) -> None:
    """A stream's true end runs at its exact length (no padding): every output sample equals the window alone."""
    rng = np.random.default_rng(2)
    rows = np.stack([(0.1 * rng.standard_normal(1_234)).astype(np.float32) for _ in range(2)])
    y = sr.enhance_batch(rows)
    for i in range(2):
        np.testing.assert_allclose(y[i].numpy(), sr.enhance_window(rows[i]), atol=SR_ATOL, rtol=0)


def test_the_sinc_kernel_is_built_once_per_device(sr) -> None:
    from core.sinc_resample import _kernel

    sr.resample(torch.zeros(400))
    before = _kernel.cache_info().hits
    sr.resample(torch.zeros(800))
    assert _kernel.cache_info().hits == before + 1


# ---------------------------------------------------------------------------------------------- the runner


def _run(runner: ModelRunner, call: Call) -> list[np.ndarray]:
    return asyncio.run(runner.run(call))


def test_runner_returns_each_decode_rows_kept_samples(decoder) -> None:
    runner = ModelRunner(decoder)
    try:
        windows = (
            DecodeWindow(_ids(14, 1), _d(decoder, 1), 3, 10),
            DecodeWindow(_ids(9, 2), _d(decoder, 2), 0, 9),
            DecodeWindow(_ids(16, 3), _d(decoder, 3), 16, 16),
        )
        for call in (Call("decode", windows, 16, 4), Call("decode", windows[:1], None, 1)):
            out = runner.run_sync(call)
            for w, got in zip(call.windows, out, strict=True):
                alone = decoder.decode_with_speaker(
                    torch.from_numpy(w.ids.astype(np.int64))[None], w.d_vector[None]
                )
                want = alone[0, w.keep_start * 320 : w.keep_end * 320].numpy()
                assert got.dtype == np.float32 and got.shape == want.shape and got.flags.owndata
                np.testing.assert_allclose(got, want, atol=DECODE_ATOL, rtol=0)
        assert runner.eager_calls == 2 and runner.graph_calls == 0
    finally:
        runner.close()


def _alone(decoder: BiCodecDecoder, w: DecodeWindow) -> np.ndarray:
    """The window's kept audio from the whole window through both stages (what a trimmed row must equal)."""
    wav = decoder.decode_with_speaker(torch.from_numpy(w.ids.astype(np.int64))[None], w.d_vector[None])
    return wav[0, w.keep_start * 320 : w.keep_end * 320].numpy()


def _window(decoder: BiCodecDecoder, length: int, keep: tuple[int, int], seed: int) -> DecodeWindow:
    return DecodeWindow(_ids(length, seed), _d(decoder, seed), keep[0], min(length, keep[0] + keep[1]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(st.integers(1, 64), st.integers(0, 30), st.integers(0, 40)), min_size=1, max_size=4
    ),
    margin=st.integers(0, 20),
    seed=st.integers(0, 99),
)
def test_a_rows_wave_generator_on_its_kept_tokens_and_reach_gives_the_whole_windows_audio(
    decoder, rows, margin, seed
) -> None:
    """The wave generator (~95% of a decode) runs on each row's kept tokens +- its reach, the prenet on the whole
    window, rows of different spans in one padded call: every row's kept audio equals the whole window's decode."""
    policy = SchedulerPolicy(decode_reach=decoder.wave_reach_tokens, decode_margin=margin, pad_batch=False)
    windows = tuple(
        _window(decoder, n, (min(start, n), kept), seed + i) for i, (n, start, kept) in enumerate(rows)
    )
    spans = tuple(policy.units("decode", w)[1] for w in windows)
    widest = max(end - start for start, end in spans)
    runner = ModelRunner(decoder)
    try:
        out = runner.run_sync(Call("decode", windows, widest + 3, len(windows), spans=spans, margin=margin))
    finally:
        runner.close()
    for w, got in zip(windows, out, strict=True):
        np.testing.assert_allclose(got, _alone(decoder, w), atol=DECODE_ATOL, rtol=0)


def test_trimmed_calls_from_several_device_threads_at_once_equal_each_call_alone(decoder) -> None:
    """The CPU runs one device thread per core on the shared decoder: `decode_rows` keeps nothing of a call on the
    model (masks and slices are per call), so calls running at once give what each gives alone, bit for bit."""
    policy = SchedulerPolicy(pad_batch=False)
    calls = []
    for k in range(8):
        windows = tuple(
            _window(decoder, 30 + 7 * i + k, (min(24, 5 + k), 9 + i), seed=10 * k + i) for i in range(3)
        )
        spans = tuple(policy.units("decode", w)[1] for w in windows)
        calls.append(Call("decode", windows, None, 3, spans=spans, margin=policy.prenet_margin))
    solo = ModelRunner(decoder)
    shared = ModelRunner(decoder, threads=4)
    try:
        alone = [solo.run_sync(c) for c in calls]

        async def together() -> list[list[np.ndarray]]:
            return await asyncio.gather(*(shared.run(c) for c in calls * 3))

        at_once = asyncio.run(together())
    finally:
        solo.close()
        shared.close()
    for i, rows in enumerate(at_once):
        for got, want in zip(rows, alone[i % len(calls)], strict=True):
            np.testing.assert_array_equal(got, want)


def test_a_reach_shorter_than_the_wave_generators_changes_the_audio(decoder) -> None:
    """The comparison above can see a wrong reach: 5 tokens short of it, a row with context trimmed differs."""
    w = _window(
        decoder, 73, (24, 25), seed=5
    )  # the service's steady window: 24 context, 25 kept, 24 look-ahead
    runner = ModelRunner(decoder)
    try:
        errors = {}
        for reach in (decoder.wave_reach_tokens, decoder.wave_reach_tokens - 5):
            span = w.wave_span(reach, 16)
            (got,) = runner.run_sync(Call("decode", (w,), span[1] - span[0], 1, spans=(span,), margin=16))
            errors[reach] = float(np.abs(got - _alone(decoder, w)).max())
    finally:
        runner.close()
    assert (
        errors[decoder.wave_reach_tokens]
        <= DECODE_ATOL
        < 100 * DECODE_ATOL
        < errors[decoder.wave_reach_tokens - 5]
    )


def test_the_released_wave_generator_reads_eleven_tokens_each_side_of_the_68_the_decoder_reads() -> None:
    from core.bicodec import RELEASED_CONFIG, BiCodecDecodeConfig, receptive_field_tokens, wave_reach_tokens
    from services.device.calls import DEFAULT_DECODE_REACH

    cfg = BiCodecDecodeConfig.from_dict(RELEASED_CONFIG)
    assert (wave_reach_tokens(cfg), receptive_field_tokens(cfg)) == (11, 68) == (DEFAULT_DECODE_REACH, 68)


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(1, 400),
    a=st.integers(0, 400),
    b=st.integers(0, 400),
    reach=st.integers(0, 80),
    margin=st.integers(0, 40),
)
def test_a_wave_span_covers_the_kept_tokens_and_their_reach_and_leaves_at_most_the_margin(
    length, a, b, reach, margin
) -> None:
    keep_start, keep_end = sorted((min(a, length), min(b, length)))
    w = DecodeWindow(np.zeros(length, np.int32), None, keep_start, keep_end)
    start, end = w.wave_span(reach, margin)
    assert 0 <= start <= keep_start <= keep_end <= end <= length
    assert start <= max(0, keep_start - reach) and end >= min(
        length, keep_end + reach
    )  # the reach, or the edge
    assert start <= margin and length - end <= margin  # the rest of the window fits the prenet's margins
    assert w.wave_span(None, margin) == (0, length)


def test_runner_returns_each_sr_rows_kept_samples(decoder, sr) -> None:
    runner = ModelRunner(decoder, sr)
    rng = np.random.default_rng(4)
    try:
        a, b = (
            (0.1 * rng.standard_normal(2_000)).astype(np.float32),
            (0.1 * rng.standard_normal(1_800)).astype(np.float32),
        )
        ctx = sr.context
        windows = (SRWindow(a, 3 * 80, 3 * (a.size - ctx)), SRWindow(b, 0, 3 * (b.size - ctx)))
        out = _run(runner, Call("sr", windows, 2_400, 2))
        for w, got in zip(windows, out, strict=True):
            want = sr.enhance_window(w.samples)[w.keep_start : w.keep_end]
            np.testing.assert_allclose(got, want, atol=SR_ATOL, rtol=0)
        end = SRWindow(b, 300, 3 * b.size, true_end=True)
        (got,) = _run(runner, Call("sr", (end,), None, 1, true_end=True))
        np.testing.assert_allclose(got, sr.enhance_window(b)[300:], atol=SR_ATOL, rtol=0)
    finally:
        runner.close()


class _Recorder:
    """A decoder stand-in for StreamingDecoder that records each window it decodes (ids and the audio alone)."""

    def __init__(self, decoder: BiCodecDecoder) -> None:
        self._decoder = decoder
        self.windows: list[tuple[np.ndarray, np.ndarray]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._decoder, name)

    def decode_with_speaker(self, semantic: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        wav = self._decoder.decode_with_speaker(semantic, d)
        self.windows.append((semantic[0].numpy().astype(np.int32), wav[0].numpy()))
        return wav


@pytest.mark.parametrize("preference", ["exact", "balanced", "lowest"])
def test_every_schedules_windows_padded_and_batched_by_the_scheduler_equal_them_alone(
    decoder, preference
) -> None:
    """Two streams' windows of a latency schedule, run through the real scheduler (padded rows, padded batches)
    and the runner, give each window's audio as decoded alone: streamed == offline keeps its stated tolerance."""
    config = StreamingConfig(
        first_chunk_tokens=6, max_chunk_tokens=24, left_context_tokens=8, lookahead_tokens=8
    ).for_latency(preference)
    recorded: list[tuple[np.ndarray, np.ndarray, torch.Tensor]] = []
    for seed in (1, 2):
        recorder = _Recorder(decoder)
        stream = StreamingDecoder(recorder, _d(decoder, seed)[None], config)  # type: ignore[arg-type]
        tokens = _ids(70, seed).tolist()
        for i in range(0, 70, 7):
            stream.push(tokens[i : i + 7])
        stream.finish()
        recorded += [(ids, wav, _d(decoder, seed)) for ids, wav in recorder.windows]
    policy = SchedulerPolicy(decode_buckets=(16, 32, 48), batch_sizes=(1, 2, 4, 8), max_pad_waste=0.9)

    async def main() -> list[np.ndarray]:
        runner = ModelRunner(decoder)
        async with CodecScheduler(runner, policy) as scheduler:
            handle = scheduler.open_stream()
            outs = await asyncio.gather(
                *(handle.decode(DecodeWindow(ids, d, 0, ids.size)) for ids, _, d in recorded)
            )
            stats = scheduler.stats
        runner.close()
        assert (
            stats.valid_work < stats.work and stats.mean_batch("decode") > 1
        )  # padding and batching did happen
        return outs

    for (_, alone, _), got in zip(recorded, asyncio.run(main()), strict=True):
        np.testing.assert_allclose(got, alone, atol=DECODE_ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------- the graph plan


def test_the_graph_plan_covers_buckets_within_the_work_bound() -> None:
    policy = SchedulerPolicy(
        decode_buckets=(16, 32),
        sr_buckets=(3_520,),
        batch_sizes=(1, 2, 4),
        max_call_decode_tokens=64,
        max_call_sr_samples=7_040,
    )
    plan = GraphPlan.from_policy(policy)
    assert plan.keys == {
        GraphKey("decode", 16, 1),
        GraphKey("decode", 16, 2),
        GraphKey("decode", 16, 4),
        GraphKey("decode", 32, 1),
        GraphKey("decode", 32, 2),
        GraphKey("sr", 3_520, 1),
        GraphKey("sr", 3_520, 2),
    }
    # Captured by expected use (tests/unit/services/device/test_codec_graphs.py): fewest rows first, decode before SR, shortest first.
    assert plan.ordered() == [
        GraphKey("decode", 16, 1),
        GraphKey("decode", 32, 1),
        GraphKey("sr", 3_520, 1),
        GraphKey("decode", 16, 2),
        GraphKey("decode", 32, 2),
        GraphKey("sr", 3_520, 2),
        GraphKey("decode", 16, 4),
    ]


def test_a_call_outside_the_plan_falls_back_to_eager() -> None:
    plan = GraphPlan.from_policy(
        SchedulerPolicy(decode_buckets=(16, 32), batch_sizes=(1, 2, 4), max_call_decode_tokens=64),
        kinds=("decode", "sr"),
    )
    w = DecodeWindow(np.zeros(10, np.int32), None, 0, 10)
    s = SRWindow(np.zeros(3_000, np.float32), 0, 10)
    m = plan.margin
    assert (
        m == SchedulerPolicy().decode_margin
    )  # the prenet's columns beyond the wave spans: part of the shape
    assert plan.key_for(Call("decode", (w,), 16, 2, margin=m)) == GraphKey("decode", 16, 2)
    assert plan.key_for(Call("decode", (w,), 16, 2, margin=0)) is None  # placed for another graph's shape
    assert (
        plan.key_for(Call("decode", (w,), None, 1, margin=m)) is None
    )  # longer than every bucket: exact length
    assert plan.key_for(Call("decode", (w,), 32, 4, margin=m)) is None  # over the work bound: not captured
    assert plan.key_for(Call("decode", (w,), 16, 3, margin=m)) is None  # a row count outside the batch sizes
    assert plan.key_for(Call("sr", (s,), 3_520, 1)) == GraphKey("sr", 3_520, 1)
    assert (
        plan.key_for(Call("sr", (s,), 3_520, 1, true_end=True)) is None
    )  # a stream's end keeps its exact path


def test_tf32_is_set_only_inside_the_block() -> None:
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with tf32(not before[0]):
        assert torch.backends.cuda.matmul.allow_tf32 is (not before[0])
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    with pytest.raises(RuntimeError), tf32(True):
        raise RuntimeError("capture failed")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_graphs_need_a_cuda_device(decoder) -> None:
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        CodecGraphs(decoder, None, GraphPlan(frozenset()))
