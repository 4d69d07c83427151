"""`python -m core.clone MODEL_DIR AUDIO [--transcript TEXT] [--device cpu|cuda]`: encode a reference recording.

Prints one JSON object: `global_tokens` (32 ints, the voice), `semantic_tokens` (the reference speech, 50 per
second), `reference_seconds`, and `transcript` when given. MODEL_DIR holds `BiCodec/` and `wav2vec2-large-xlsr-53/`
(and the root `config.yaml` when present). Exit status 2 with a message on stderr when the audio or the model
directory cannot be used. Paste `global_tokens` into a voices.json `global_tokens` voice to serve the voice.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from core.clone.encoder import CloningUnavailable, ReferenceEncoder
from core.clone.reference_audio import ReferenceAudioError, decode_reference_audio


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.clone", description=__doc__.splitlines()[0])
    parser.add_argument(
        "model_dir", type=Path, help="Spark-TTS model directory (BiCodec/, wav2vec2-large-xlsr-53/)"
    )
    parser.add_argument(
        "audio", type=Path, help="reference recording (WAV, FLAC, MP3, Ogg, M4A, WebM; 1-30 s)"
    )
    parser.add_argument(
        "--transcript", default=None, help="what the reference says (for continuation prompts)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    args = parser.parse_args(argv)
    try:
        reference = decode_reference_audio(args.audio.read_bytes())
        encoder = ReferenceEncoder.from_pretrained(args.model_dir, device=args.device)
        tokens = encoder.encode(reference.samples, semantic=True)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ReferenceAudioError as exc:
        print(f"error: {args.audio}: {exc.message} ({exc.code})", file=sys.stderr)
        return 2
    except CloningUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = {
        "global_tokens": list(tokens.global_tokens),
        "semantic_tokens": list(tokens.semantic_tokens or ()),
        "reference_seconds": round(reference.duration_s, 3),
    }
    if args.transcript is not None:
        out["transcript"] = args.transcript
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
