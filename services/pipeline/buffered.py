"""What a complete (non-streamed) answer may hold. It is sent only once all of its audio is made and buffered, so a
text too long for one is refused before any GPU work, with how to get the audio sooner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.errors import SynthesisError
from services.pipeline.audio_output import estimated_audio_bytes

if TYPE_CHECKING:
    from shared.settings import LimitsSettings


def check_buffered(
    chars: int, spoken_chars: int, audio: tuple[str, int], limits: LimitsSettings, how_to_stream: str | None
) -> None:
    """`chars`: the request's text; `spoken_chars`: after normalisation; `audio`: its format and sample rate.
    `how_to_stream`: how the route's client asks for a stream; None (a dialect whose complete answer is its
    protocol's own) skips the character limit."""
    audio_format, sample_rate = audio
    estimate = estimated_audio_bytes(spoken_chars, audio_format, sample_rate)
    if estimate > limits.max_buffered_audio_mb * 2**20:
        raise SynthesisError(
            "PAYLOAD_TOO_LARGE",
            f"Invalid 'stream': this text makes about {estimate // 2**20} MiB of {audio_format} "
            f"audio, more than a non-streaming response holds ({limits.max_buffered_audio_mb} MiB); "
            "send stream=true.",
            "stream",
        )
    if how_to_stream is not None and chars > limits.max_unstreamed_chars:
        # Minutes of speech with nothing to show until the end: say so at once, naming both ways that start the
        # audio in well under a second.
        raise SynthesisError(
            "PAYLOAD_TOO_LARGE",
            f"Invalid 'text': {chars} characters is more than a complete (non-streamed) answer takes "
            f"({limits.max_unstreamed_chars}, TTS_MAX_UNSTREAMED_CHARS): it would arrive only after all of it is "
            f"spoken. Stream it ({how_to_stream}) to get audio as it is made, or queue a long-form job "
            "(POST /v1/tts/jobs) for a document.",
            "text",
        )
