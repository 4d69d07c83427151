"""Re-framing into steady chunks: every frame has the asked size and nothing is lost or reordered."""

from __future__ import annotations

import numpy as np
import pytest

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
