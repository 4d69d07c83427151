"""Streaming BiCodec decode: chunks arrive early and concatenate to the offline decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.bicodec import BiCodecDecoder
from core.streaming import MIN_CUT_TOKENS, DecodePlanner, StreamingConfig, StreamingDecoder
from tests.tiny_models import tiny_bicodec

HOP = 320


@pytest.fixture(scope="module")
def model() -> BiCodecDecoder:
    return tiny_bicodec()


@pytest.fixture(scope="module")
def d_vector(model: BiCodecDecoder) -> torch.Tensor:
    globals_ = torch.from_numpy(np.random.default_rng(1).integers(0, 4096, (1, 32)))
    return model.speaker_vector(globals_)


def _stream(
    model, d_vector, tokens: np.ndarray, config: StreamingConfig, seed: int, *, cut: bool = False
) -> tuple[np.ndarray, list]:
    """Feed `tokens` in random-sized bursts (1..40, like an LLM's delta batches), with `cut` cutting a chunk after each
    burst where one can be made (as a listener about to run dry asks); return audio and chunks."""
    rng = np.random.default_rng(seed)
    decoder = StreamingDecoder(model, d_vector, config)
    chunks: list[np.ndarray] = []
    i = 0
    while i < len(tokens):
        n = int(rng.integers(1, 41))
        chunks += decoder.push(tokens[i : i + n].tolist())
        i += n
        if cut:
            chunks += decoder.cut()
    chunks += decoder.finish()
    assert decoder.tokens_in == len(tokens) and decoder.samples_out == len(tokens) * HOP
    return np.concatenate(chunks), chunks


def _offline(model, d_vector, tokens: np.ndarray) -> np.ndarray:
    return model.decode_with_speaker(torch.from_numpy(tokens)[None], d_vector)[0].numpy()


@pytest.mark.parametrize("length", [50, 137, 400, 1000])
def test_default_settings_match_offline_decode(model, d_vector, length: int) -> None:
    tokens = np.random.default_rng(length).integers(0, 8192, length)
    streamed, chunks = _stream(model, d_vector, tokens, StreamingConfig(), seed=length)
    offline = _offline(model, d_vector, tokens)
    assert streamed.dtype == np.float32 and all(c.ndim == 1 for c in chunks)
    assert streamed.shape == (length * HOP,)
    err = streamed - offline
    snr_db = 10 * np.log10(np.sum(offline**2) / max(np.sum(err**2), 1e-30))
    assert np.abs(err).max() <= 1e-3
    assert snr_db >= 40.0


@pytest.mark.parametrize("length", [137, 400])
def test_context_covering_receptive_field_is_exact(model, d_vector, length: int) -> None:
    tokens = np.random.default_rng(length + 1).integers(0, 8192, length)
    config = StreamingConfig(left_context_tokens=68, lookahead_tokens=68)
    streamed, _ = _stream(model, d_vector, tokens, config, seed=length + 1)
    assert streamed.shape == (length * HOP,)
    assert np.abs(streamed - _offline(model, d_vector, tokens)).max() <= 1e-5


def test_first_chunk_arrives_once_first_chunk_plus_lookahead_tokens_are_in(model, d_vector) -> None:
    config = StreamingConfig(first_chunk_tokens=25, lookahead_tokens=12)
    decoder = StreamingDecoder(model, d_vector, config)
    tokens = np.random.default_rng(5).integers(0, 8192, 80).tolist()
    first_at = None
    for count, token in enumerate(tokens, start=1):
        out = decoder.push([token])
        if out:
            first_at = count
            assert [c.shape[0] for c in out] == [25 * HOP]
            break
    assert first_at == 25 + 12


def test_chunks_grow_to_the_maximum(model, d_vector) -> None:
    config = StreamingConfig(first_chunk_tokens=5, max_chunk_tokens=40, growth=2.0)
    decoder = StreamingDecoder(model, d_vector, config)
    tokens = np.random.default_rng(6).integers(0, 8192, 200).tolist()
    sizes = [c.shape[0] // HOP for c in decoder.push(tokens) + decoder.finish()]
    assert sizes[:5] == [5, 10, 20, 40, 40]
    assert max(sizes[:-1]) == 40 and sum(sizes) == 200
    assert sizes[-1] < 40 + config.lookahead_tokens  # the tail needs no look-ahead: one decode at finish()
    assert decoder.chunks_out == len(sizes) == decoder.decode_calls
    assert decoder.decode_tokens_total > 200  # context costs extra compute


def test_output_does_not_depend_on_how_tokens_arrive(model, d_vector) -> None:
    tokens = np.random.default_rng(8).integers(0, 8192, 137)
    one_by_one = StreamingDecoder(model, d_vector)
    chunks = [c for t in tokens.tolist() for c in one_by_one.push([t])] + one_by_one.finish()
    all_at_once = StreamingDecoder(model, d_vector)
    chunks_b = all_at_once.push(tokens) + all_at_once.finish()
    np.testing.assert_array_equal(np.concatenate(chunks), np.concatenate(chunks_b))


def test_short_stream_comes_out_on_finish(model, d_vector) -> None:
    decoder = StreamingDecoder(model, d_vector)
    tokens = np.random.default_rng(7).integers(0, 8192, 9)
    assert decoder.push(tokens.tolist()) == []
    rest = decoder.finish()
    assert sum(c.shape[0] for c in rest) == 9 * HOP
    np.testing.assert_allclose(np.concatenate(rest), _offline(model, d_vector, tokens), atol=1e-6)
    assert decoder.finish() == []


def test_empty_stream_gives_no_audio(model, d_vector) -> None:
    decoder = StreamingDecoder(model, d_vector)
    assert decoder.push([]) == [] and decoder.finish() == []
    assert decoder.samples_out == 0


def test_bad_input_is_refused(model, d_vector) -> None:
    decoder = StreamingDecoder(model, d_vector)
    with pytest.raises(ValueError, match="8192 out of range"):
        decoder.push([1, 2, 8192])
    decoder.finish()
    with pytest.raises(RuntimeError, match="after finish"):
        decoder.push([1])
    with pytest.raises(ValueError, match="d_vector must have shape"):
        StreamingDecoder(model, torch.zeros(1, 5))
    with pytest.raises(ValueError, match="growth"):
        StreamingConfig(growth=0.5)


@pytest.mark.parametrize("preference", ["lowest", "balanced", "exact"])
def test_latency_preferences_change_only_the_first_chunk(model, d_vector, preference: str) -> None:
    config = StreamingConfig().for_latency(preference)  # type: ignore[arg-type]
    tokens = np.random.default_rng(5).integers(0, 8192, 300)
    decoder = StreamingDecoder(model, d_vector, config)
    chunks: list[np.ndarray] = []
    first_at = None
    for i, token in enumerate(tokens.tolist(), start=1):  # one token per engine step
        chunks += decoder.push([token])
        if chunks and first_at is None:
            first_at = i
    chunks += decoder.finish()
    streamed = np.concatenate(chunks)
    offline = _offline(model, d_vector, tokens)
    assert first_at == config.tokens_before_first_audio
    assert {"lowest": 8, "balanced": 16, "exact": 49}[preference] == config.tokens_before_first_audio
    # The whole stream, exactly as long; only the short schedule's first second may differ from the offline decode.
    assert streamed.shape == offline.shape and decoder.samples_out == len(tokens) * HOP
    after_short = decoder.short_schedule_tokens * HOP if config.warmup_tokens else 0
    assert (
        decoder.short_schedule_tokens <= config.warmup_tokens + config.first_chunk_tokens
    )  # about the first second
    assert np.abs(streamed[after_short:] - offline[after_short:]).max() <= 1e-3
    assert len(chunks[0]) == (config.first_chunk_tokens - config.first_overlap_tokens) * HOP


def test_the_first_chunk_overlap_fades_into_the_accurate_decode(model, d_vector) -> None:
    config = StreamingConfig(first_chunk_tokens=8, first_lookahead_tokens=0, first_overlap_tokens=4)
    tokens = np.random.default_rng(6).integers(0, 8192, 120)
    decoder = StreamingDecoder(model, d_vector, config)
    first = decoder.push(tokens[:8].tolist())
    assert [len(c) for c in first] == [4 * HOP]  # the last 4 tokens are held back
    rest = decoder.push(tokens[8:].tolist()) + decoder.finish()
    streamed = np.concatenate(first + rest)
    offline = _offline(model, d_vector, tokens)
    assert streamed.shape == offline.shape
    # Past the crossfade the audio is the accurate decode; at its end the fade has fully reached it.
    assert np.abs(streamed[8 * HOP :] - offline[8 * HOP :]).max() <= 1e-3
    assert abs(streamed[8 * HOP - 1] - offline[8 * HOP - 1]) <= abs(first[0][-1] - offline[4 * HOP - 1]) + 0.5


def test_bad_first_chunk_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="first_overlap_tokens"):
        StreamingConfig(first_chunk_tokens=4, first_overlap_tokens=4)
    with pytest.raises(ValueError, match="first_lookahead_tokens"):
        StreamingConfig(first_lookahead_tokens=-1)


@pytest.mark.parametrize("preference", ["lowest", "balanced", "exact"])
def test_tokens_needed_says_when_a_push_decodes(model, d_vector, preference: str) -> None:
    decoder = StreamingDecoder(model, d_vector, StreamingConfig().for_latency(preference))  # type: ignore[arg-type]
    for token in np.random.default_rng(7).integers(0, 8192, 200).tolist():
        will_decode = decoder.pending_tokens + 1 >= decoder.tokens_needed
        assert bool(decoder.push([token])) == will_decode


def test_chunks_restart_at_the_first_chunk_size_after_the_short_schedule(model, d_vector) -> None:
    base = StreamingConfig(growth=1.5)
    config = base.for_latency("balanced")
    assert (
        config.resume_chunk_tokens == base.first_chunk_tokens
        and base.for_latency("exact").resume_chunk_tokens is None
    )
    decoder = StreamingDecoder(model, d_vector, config)
    emitted_before: list[int] = []  # tokens whose audio is out (held overlaps excluded) before each chunk
    for token in np.random.default_rng(8).integers(0, 8192, 200).tolist():
        before = decoder.samples_out // HOP
        if decoder.push([token]):
            emitted_before.append(before)
    sizes = [b - a for a, b in zip(emitted_before, emitted_before[1:], strict=False)]
    at_end = emitted_before.index(config.warmup_tokens)  # the first full-look-ahead chunk starts at 50 tokens
    assert sizes[at_end] == base.first_chunk_tokens and sizes[at_end + 1] == base.next_chunk(
        base.first_chunk_tokens
    )


@pytest.mark.parametrize("length", [137, 400])
def test_cut_chunks_are_exact_like_every_other_chunk(model, d_vector, length: int) -> None:
    """A cut window has its full left context and look-ahead: with context covering the receptive field the stream
    still equals the offline decode, and with the served context it stays within the served bound."""
    tokens = np.random.default_rng(length + 7).integers(0, 8192, length)
    offline = _offline(model, d_vector, tokens)
    exact = StreamingConfig(left_context_tokens=68, lookahead_tokens=68, first_chunk_tokens=25)
    served = StreamingConfig(growth=1.5)
    for config, bound in ((exact, 1e-5), (served, 1e-3)):
        streamed, chunks = _stream(model, d_vector, tokens, config, seed=length, cut=True)
        _, uncut = _stream(model, d_vector, tokens, config, seed=length)
        assert len(chunks) > len(uncut)  # chunks were cut
        assert np.abs(streamed - offline).max() <= bound


def test_a_cut_plans_what_has_its_look_ahead_and_the_schedule_goes_on() -> None:
    config = StreamingConfig(first_chunk_tokens=25, growth=1.5, lookahead_tokens=24, left_context_tokens=24)
    planner = DecodePlanner(config, hop=HOP, codebook_size=8192)
    assert planner.cut() == [] and planner.cut_tokens_needed is None  # nothing before the first window
    assert len(planner.push(list(range(49)))) == 1  # the first chunk: 25 tokens and their look-ahead
    assert planner.cut_tokens_needed == MIN_CUT_TOKENS + 24
    assert planner.pending_tokens == 24 and planner.tokens_needed == 38 + 24  # the next chunk: 38
    planner.push(list(range(30)))
    assert planner.pending_tokens == 54  # short of the chunk's 62
    (window,) = planner.cut()
    # Every pending token that has its look-ahead, with the full left context and look-ahead.
    assert window.keep_start == 24 and window.kept_tokens == 30
    assert len(window.ids) == 24 + 30 + 24
    assert planner.pending_tokens == 24 and planner.cut() == []
    assert planner.tokens_needed == 38 + 24  # the scheduled chunk is unchanged


def test_no_cut_in_the_short_schedule_or_below_the_shortest_cut() -> None:
    config = StreamingConfig(first_chunk_tokens=25).for_latency("balanced")
    planner = DecodePlanner(config, hop=HOP, codebook_size=8192)
    planner.push(list(range(16)))  # balanced's first chunk of 8 and its look-ahead of 8
    planner.push(list(range(40)))
    assert planner.cut_tokens_needed is None and planner.cut() == []  # the short schedule's first second
    exact = DecodePlanner(StreamingConfig(), hop=HOP, codebook_size=8192)
    exact.push(list(range(49)))
    exact.push(list(range(MIN_CUT_TOKENS - 1)))
    assert exact.cut() == []  # 24 pending + 23: one short of the shortest cut and its look-ahead


def test_a_negative_cut_runway_is_refused() -> None:
    with pytest.raises(ValueError, match="cut_runway_s"):
        StreamingConfig(cut_runway_s=-0.1)


def test_cut_streams_decoded_from_several_threads_at_once_equal_each_alone(model, d_vector) -> None:
    """The cut holds no state beyond its own planner: four cut streams on one model from four threads at once give
    each stream's audio as it gives alone."""
    from concurrent.futures import ThreadPoolExecutor

    token_sets = [np.random.default_rng(90 + i).integers(0, 8192, 300) for i in range(4)]
    config = StreamingConfig(growth=1.5)
    alone = [_stream(model, d_vector, t, config, seed=i, cut=True)[0] for i, t in enumerate(token_sets)]
    with ThreadPoolExecutor(4) as pool:
        together = list(
            pool.map(lambda i: _stream(model, d_vector, token_sets[i], config, seed=i, cut=True)[0], range(4))
        )
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)  # shared state would differ by far more
