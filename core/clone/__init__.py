"""Voice cloning: reference audio -> the 32 global (speaker) tokens and the reference's semantic tokens
(docs/reference/spark-tts.md#bicodec-encode-reference-audio-to-voice-tokens), with our own implementation of BiCodec's
encode half, checkpoint-compatible.

- `reference_audio`: decode any common file to 16 kHz mono and refuse what cannot be a reference;
- `encoder.ReferenceEncoder`: volume normalisation, speaker branch (mel -> ECAPA-TDNN -> perceiver -> FSQ) and
  semantic branch (wav2vec2 -> BiCodec encoder -> quantizer), loaded from a model directory;
- `python -m core.clone MODEL_DIR AUDIO [--transcript TEXT]` prints the tokens as JSON.
"""

from core.clone.encoder import (
    CloningUnavailable,
    EncodeAbandoned,
    ReferenceEncoder,
    ReferenceTokens,
    cloning_unavailable_reason,
)
from core.clone.reference_audio import (
    ENCODER_SAMPLE_RATE,
    MAX_REFERENCE_BYTES,
    MAX_REFERENCE_SECONDS,
    MIN_REFERENCE_SECONDS,
    ReferenceAudio,
    ReferenceAudioError,
    decode_reference_audio,
)

__all__ = [
    "ENCODER_SAMPLE_RATE",
    "MAX_REFERENCE_BYTES",
    "MAX_REFERENCE_SECONDS",
    "MIN_REFERENCE_SECONDS",
    "CloningUnavailable",
    "EncodeAbandoned",
    "ReferenceAudio",
    "ReferenceAudioError",
    "ReferenceEncoder",
    "ReferenceTokens",
    "cloning_unavailable_reason",
    "decode_reference_audio",
]
