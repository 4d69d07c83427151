"""Re-framing into steady chunks: every frame has the asked size and nothing is lost or reordered."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio.reframe import FrameBuffer, frame_samples_for


def test_frames_are_fixed_size_and_lossless() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 50_000).astype(np.float32)
    fb = FrameBuffer(frame_samples_for(16000, 40))
    assert fb.frame_samples == 640
    frames, i = [], 0
    while i < len(x):
        k = int(rng.integers(1, 3000))
        frames += fb.push(x[i : i + k])
        i += k
        assert fb.pending < 640
    rest = fb.flush()
    assert all(len(f) == 640 for f in frames)
    assert len(rest) == len(x) % 640
    assert np.array_equal(np.concatenate(frames + [rest]), x)
    assert len(fb.flush()) == 0


def test_frames_do_not_alias_the_callers_array() -> None:
    fb = FrameBuffer(4)
    x = np.arange(3, dtype=np.float32)
    assert fb.push(x) == []
    x[:] = -1  # the caller reuses its buffer
    (frame,) = fb.push(np.array([3.0, 4.0], np.float32))
    assert frame.tolist() == [0, 1, 2, 3]
    assert fb.flush().tolist() == [4]


def test_invalid_frame_size() -> None:
    with pytest.raises(ValueError):
        FrameBuffer(0)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 2_000), max_size=30), frame=st.integers(1, 700))
def test_joined_frames_are_the_frames_of_push_in_one_array_and_never_alias_what_is_held(sizes, frame) -> None:
    """`push_joined` gives exactly `push`'s frames, joined, for any split of the input; the samples it holds back are
    its own (the caller reuses its array), though the block it returns may be a view of the caller's samples."""
    rng = np.random.default_rng(len(sizes) * 1_000 + frame)
    split, joined = FrameBuffer(frame), FrameBuffer(frame)
    for size in sizes:
        x = rng.uniform(-1, 1, size).astype(np.float32)
        frames = split.push(x.copy())
        block = joined.push_joined(x)
        assert len(block) % frame == 0 and joined.pending == split.pending < frame
        assert np.array_equal(block, np.concatenate(frames) if frames else np.zeros(0, np.float32))
        x[:] = 7.0  # the caller reuses its buffer: what is held must not change
    assert np.array_equal(joined.flush(), split.flush())
