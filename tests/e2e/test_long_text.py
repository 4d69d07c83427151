"""Long text through the real server: one stream, chunked (X-Text-Chunked: true), every chunk spoken, the
chunks joined with 50 ms crossfades, and the streamed audio equal to the complete file.

A past bug returned empty audio when streaming text above the chunking threshold; these texts are far above
it (the English one has 150+ words). `max_tokens` caps every chunk at the same number of semantic tokens
(the demo model would speak each ~170-character chunk for seconds), so the expected length is exact:
chunks * max_tokens * 320 samples, minus one 800-sample crossfade per join.
"""

from __future__ import annotations

import httpx
import pytest

from services.pipeline.text_plan import plan_text
from shared.settings import Settings
from tests.e2e.conftest import RunningServer
from tests.texts import LONG_ENGLISH, LONG_HINDI

pytestmark = pytest.mark.e2e

HOP = 320
MAX_TOKENS = 30
CROSSFADE_SAMPLES = 800  # 50 ms at 16 kHz


def _expected_chunks(text: str) -> int:
    settings = Settings()
    plan = plan_text(
        text,
        normalize=True,
        chunking=True,
        threshold=settings.text.chunking_threshold_chars,
        target=settings.text.chunk_target_chars,
    )
    return len(plan.chunks)


def _generate(server: RunningServer, body: dict) -> httpx.Response:
    response = httpx.post(f"{server.base_url}/v1/tts/generate", json=body, timeout=180)
    assert response.status_code == 200, response.text[:300]
    return response


def _stream(server: RunningServer, body: dict) -> tuple[httpx.Headers, bytes, int]:
    pieces: list[bytes] = []
    with httpx.stream(
        "POST", f"{server.base_url}/v1/tts/generate", json={**body, "stream": True}, timeout=180
    ) as response:
        assert response.status_code == 200
        for piece in response.iter_raw():
            if piece:
                pieces.append(piece)
        headers = response.headers
    return headers, b"".join(pieces), len(pieces)


def test_english_text_has_more_than_150_words() -> None:
    assert len(LONG_ENGLISH) >= 450 and len(LONG_ENGLISH.split()) >= 150
    assert len(LONG_HINDI) > 220


@pytest.mark.parametrize("text", [LONG_ENGLISH, LONG_HINDI], ids=["english", "hindi"])
def test_long_text_streams_as_one_crossfaded_stream(server: RunningServer, text: str) -> None:
    chunks = _expected_chunks(text)
    assert chunks >= 2
    body = {"text": text, "format": "pcm", "max_tokens": MAX_TOKENS, "seed": 21, "latency": "exact"}
    headers, streamed, pieces = _stream(server, body)
    assert headers["x-text-chunked"] == "true"
    assert headers["x-chunking-enabled"] == "true"
    assert headers["x-stream"] == "true"
    assert pieces > 1

    samples = len(streamed) // 2
    assert samples == chunks * MAX_TOKENS * HOP - CROSSFADE_SAMPLES * (chunks - 1)

    complete = _generate(server, body)
    assert complete.headers["x-text-chunked"] == "true"
    assert complete.content == streamed
    assert float(complete.headers["x-audio-seconds"]) == pytest.approx(samples / 16000, abs=1e-3)


def test_chunking_disabled_speaks_the_text_in_one_piece(server: RunningServer) -> None:
    body = {
        "text": LONG_ENGLISH[:460],
        "format": "pcm",
        "max_tokens": MAX_TOKENS,
        "seed": 3,
        "chunking": False,
    }
    headers, streamed, _ = _stream(server, body)
    assert headers["x-text-chunked"] == "false"
    assert headers["x-chunking-enabled"] == "false"
    assert len(streamed) // 2 == MAX_TOKENS * HOP


def test_long_wav_stream_has_one_header(server: RunningServer) -> None:
    headers, streamed, _ = _stream(server, {"text": LONG_ENGLISH, "max_tokens": MAX_TOKENS, "seed": 8})
    assert headers["x-text-chunked"] == "true"
    assert streamed.startswith(b"RIFF")  # one header; the exact length below leaves no room for another
    chunks = _expected_chunks(LONG_ENGLISH)
    assert len(streamed) - 44 == 2 * (chunks * MAX_TOKENS * HOP - CROSSFADE_SAMPLES * (chunks - 1))
