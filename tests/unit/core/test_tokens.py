"""Vocabulary layout (docs/reference/spark-tts.md#token-ids) and the incremental token parser
(docs/reference/spark-tts.md#parsing-the-output)."""

from __future__ import annotations

import random

import pytest

from core.tokens import (
    END_GLOBAL,
    END_SEMANTIC,
    IM_END,
    QWEN_CONTROL_TOKENS,
    START_ACOUSTIC,
    START_GLOBAL,
    START_SEMANTIC,
    Marker,
    TokenKind,
    TokenParser,
    TokenStreamError,
    VocabLayout,
    VocabularyError,
    added_tokens,
    global_token,
    semantic_token,
)


def released_vocab() -> dict[str, int]:
    """The named part of the released vocabulary: Qwen control tokens from 151643, Spark tokens from 151665."""
    vocab = {text: 151643 + i for i, (text, _) in enumerate(QWEN_CONTROL_TOKENS)}
    vocab.update({text: 151665 + i for i, text in enumerate(added_tokens())})
    vocab.update({"Hello": 9707, " world": 1879})
    return vocab


@pytest.fixture(scope="module")
def layout() -> VocabLayout:
    return VocabLayout.from_vocab(released_vocab(), table_size=166000)


def ids(layout: VocabLayout, *tokens: str) -> list[int]:
    return [layout.token_ids[t] if t in layout.token_ids else released_vocab()[t] for t in tokens]


def test_added_tokens_match_the_released_count_and_order():
    tokens = added_tokens()
    assert len(tokens) == 13493
    assert 151665 + len(tokens) == 165158  # total vocabulary entries of the released tokenizer
    vocab = released_vocab()
    assert vocab["<|pitch_value_0|>"] == 163953
    assert vocab["<|pitch_var_value_0|>"] == 164954
    assert vocab["<|speed_value_0|>"] == 164975
    assert vocab["<|gender_0|>"] == 165032
    assert vocab["<|emotion_100|>"] == 165135


def test_layout_ids_are_the_spec_ids(layout):
    assert (
        layout.global_offset == 151665 and layout.global_id(0) == 151665 and layout.global_id(4095) == 155760
    )
    assert layout.semantic_offset == 155761 and layout.semantic_id(0) == 155761
    assert layout.semantic_id(8191) == 163952
    assert layout.id_of("<|task_tts|>") == 165137
    assert layout.id_of("<|task_controllable_tts|>") == 165143
    assert layout.id_of("<|start_content|>") == 165146
    assert layout.id_of(START_GLOBAL) == 165150
    assert layout.id_of(START_SEMANTIC) == 165151
    assert layout.id_of(END_GLOBAL) == 165156
    assert layout.id_of(END_SEMANTIC) == 165157
    assert layout.im_end_id == 151645
    assert layout.stop_token_ids == (151645, 165157)
    assert layout.table_size == 166000


def test_layout_classifies_every_family(layout):
    assert (layout.kind(155761), layout.value(155761)) == (TokenKind.SEMANTIC, 0)
    assert (layout.kind(163952), layout.value(163952)) == (TokenKind.SEMANTIC, 8191)
    assert (layout.kind(151665 + 7), layout.value(151665 + 7)) == (TokenKind.GLOBAL, 7)
    assert layout.kind(151645) == TokenKind.MARKER and layout.value(151645) == Marker.IM_END
    assert layout.kind(165149) == TokenKind.MARKER and layout.value(165149) == Marker.START_ACOUSTIC
    assert (layout.kind(163953 + 300), layout.value(163953 + 300)) == (TokenKind.ACOUSTIC, 300)
    assert layout.kind(9707) == TokenKind.OTHER  # ordinary text
    assert layout.kind(165137) == TokenKind.OTHER  # task token: not part of the output grammar
    assert layout.kind(165999) == TokenKind.OTHER  # padding rows of the 166000-row embedding
    assert layout.kind(10**7) == TokenKind.OTHER and layout.kind(-1) == TokenKind.OTHER


def test_layout_works_for_a_shuffled_vocabulary():
    vocab = {token: i for i, token in enumerate(reversed(list(released_vocab())))}
    layout = VocabLayout.from_vocab(vocab)
    assert not layout.semantic_contiguous
    assert layout.semantic_id(5) == vocab[semantic_token(5)]
    parser = TokenParser(layout, "clone")
    delta = parser.feed([vocab[semantic_token(5)], vocab[semantic_token(8191)], vocab[IM_END]])
    assert delta.semantic == [5, 8191] and delta.finished


def test_layout_rejects_a_tokenizer_without_spark_tokens():
    with pytest.raises(VocabularyError, match="lacks .* Spark-TTS tokens"):
        VocabLayout.from_vocab({"<|im_end|>": 151645, "hello": 1})


class FakeTokenizer:
    """The `convert_tokens_to_ids` surface of an HF tokenizer."""

    unk_token_id = None

    def __init__(self, vocab: dict[str, int]) -> None:
        self.vocab = vocab

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab.get(t) for t in tokens]


def test_layout_from_tokenizer_looks_strings_up():
    layout = VocabLayout.from_tokenizer(FakeTokenizer(released_vocab()), table_size=166000)
    assert layout.semantic_id(0) == 155761 and layout.im_end_id == 151645


# --------------------------------------------------------------------------------------------------------
# parser


def controllable_stream(
    layout: VocabLayout, globals_: list[int], semantic: list[int], n_globals: int = 32
) -> list[int]:
    out = [layout.id_of(START_ACOUSTIC), 163953 + 240, 164975 + 5, layout.id_of("<|end_acoustic_token|>")]
    out.append(layout.id_of(START_GLOBAL))
    out += [layout.global_id(g) for g in globals_[:n_globals]]
    out.append(layout.id_of(END_GLOBAL))
    out.append(layout.id_of(START_SEMANTIC))
    out += [layout.semantic_id(s) for s in semantic]
    out.append(layout.im_end_id)
    return out


def feed_in_slices(parser: TokenParser, stream: list[int], rng: random.Random) -> tuple[list[int], list]:
    semantic, deltas, i = [], [], 0
    while i < len(stream):
        n = rng.randint(1, 8)
        delta = parser.feed(stream[i : i + n])
        semantic += delta.semantic
        deltas.append(delta)
        i += n
    return semantic, deltas


def test_controllable_stream_in_random_slices_equals_one_shot(layout):
    rng = random.Random(7)
    globals_ = [rng.randrange(4096) for _ in range(32)]
    semantic = [rng.randrange(8192) for _ in range(500)]
    stream = controllable_stream(layout, globals_, semantic)

    whole = TokenParser(layout, "controllable")
    one = whole.feed(stream)
    assert one.semantic == semantic and one.global_tokens == tuple(globals_) and one.finished

    for trial in range(5):
        parser = TokenParser(layout, "controllable")
        got, deltas = feed_in_slices(parser, stream, random.Random(trial))
        assert got == semantic
        completed = [d for d in deltas if d.globals_complete]
        assert len(completed) == 1 and completed[0].global_tokens == tuple(globals_)
        # The globals complete before any semantic token is reported.
        first_semantic = next(i for i, d in enumerate(deltas) if d.semantic)
        assert deltas.index(completed[0]) <= first_semantic
        assert deltas[-1].finished and deltas[-1].stop_id == layout.im_end_id
        result = parser.finish()
        assert result.semantic == semantic and result.global_tokens == tuple(globals_)
        assert (result.pitch_value, result.speed_value) == (240, 5)
        assert parser.ids_seen == len(stream) and parser.semantic_count == 500
        # Ignored: the acoustic block (4 ids), <|start_global_token|>, <|start_semantic_token|>.
        assert parser.ignored_count == 6


def test_clone_stream_in_random_slices(layout):
    rng = random.Random(3)
    semantic = [rng.randrange(8192) for _ in range(300)]
    stream = [
        layout.id_of(START_SEMANTIC),
        *(layout.semantic_id(s) for s in semantic),
        layout.end_semantic_id,
    ]
    parser = TokenParser(layout, "clone")
    got, deltas = feed_in_slices(parser, stream, rng)
    assert got == semantic and deltas[-1].finished
    assert not any(d.globals_complete for d in deltas)
    result = parser.finish()
    assert result.global_tokens is None and result.finished


def test_ids_after_the_stop_id_are_ignored(layout):
    parser = TokenParser(layout, "clone")
    delta = parser.feed([layout.semantic_id(1), layout.im_end_id, layout.semantic_id(2)])
    assert delta.semantic == [1] and delta.finished
    assert parser.feed([layout.semantic_id(3)]).semantic == []
    assert parser.ignored_count == 2


def test_clone_mode_ignores_stray_globals(layout):
    parser = TokenParser(layout, "clone")
    delta = parser.feed([layout.global_id(9), layout.semantic_id(4), layout.im_end_id])
    assert delta.semantic == [4] and delta.global_tokens is None
    assert parser.unexpected_global_count == 1


@pytest.mark.parametrize("n_globals", [31, 33])
def test_wrong_global_count_is_an_error(layout, n_globals):
    globals_ = list(range(40))
    stream = controllable_stream(layout, globals_, [1, 2, 3], n_globals=n_globals)
    parser = TokenParser(layout, "controllable")
    with pytest.raises(TokenStreamError, match="32 global tokens") as info:
        parser.feed(stream)
    assert info.value.position is not None


def test_semantic_before_globals_is_an_error(layout):
    parser = TokenParser(layout, "controllable")
    with pytest.raises(TokenStreamError, match="exactly 32 global tokens before a semantic token, got 0"):
        parser.feed([layout.id_of(START_ACOUSTIC), layout.semantic_id(5)])


def test_global_after_the_block_is_an_error(layout):
    stream = controllable_stream(layout, list(range(32)), [1])[:-1] + [layout.global_id(3)]
    with pytest.raises(TokenStreamError, match="after the 32 global tokens"):
        TokenParser(layout, "controllable").feed(stream)


def test_missing_end_global_marker_is_tolerated_when_32_globals_arrived(layout):
    stream = [layout.id_of(START_GLOBAL), *(layout.global_id(g) for g in range(32)), layout.semantic_id(8)]
    delta = TokenParser(layout, "controllable").feed(stream)
    assert delta.global_tokens == tuple(range(32)) and delta.semantic == [8]


def test_finish_requires_globals_and_semantic_tokens(layout):
    parser = TokenParser(layout, "controllable")
    parser.feed([layout.id_of(START_GLOBAL), *(layout.global_id(g) for g in range(10))])
    with pytest.raises(TokenStreamError, match="10 of 32 global tokens"):
        parser.finish()
    clone = TokenParser(layout, "clone")
    clone.feed([layout.id_of(START_SEMANTIC), layout.im_end_id])
    with pytest.raises(TokenStreamError, match="without any semantic token"):
        clone.finish()


def test_stream_cut_by_max_tokens_finishes_unfinished(layout):
    parser = TokenParser(layout, "clone")
    parser.feed([layout.semantic_id(s) for s in range(10)])
    result = parser.finish()
    assert not result.finished and len(result.semantic) == 10


def test_unknown_mode_is_refused(layout):
    with pytest.raises(ValueError, match="controllable, clone"):
        TokenParser(layout, "speaker")  # type: ignore[arg-type]


def test_markers_resolve_by_string(layout):
    assert layout.marker_id(Marker.END_SEMANTIC) == released_vocab()[END_SEMANTIC]
    assert layout.value(layout.global_id(4095)) == 4095
    assert global_token(3) == "<|bicodec_global_3|>"
