"""`python -m core.align AUDIO TEXT [--language en|zh|hi] [--method estimate|ctc] [--model DIR]`: prints the
alignment as JSON {"words": [{"text", "start", "end"}, ...], "characters": [...]} in seconds, one word per
whitespace-separated token of TEXT (per Han character in Chinese). Exit status 2 with a reason on bad input."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.align import align, split_words
from core.align.estimate import SAMPLE_RATE

MAX_AUDIO_SECONDS = 3600.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core.align", description=__doc__.split(":", 1)[1].strip()
    )
    parser.add_argument("audio", help="an audio file (WAV, FLAC, MP3, Ogg, ...), any rate; mono or channel 0")
    parser.add_argument("text", help="the text that was spoken")
    parser.add_argument(
        "--language",
        choices=("en", "zh", "hi"),
        default="en",
        help="picks the CTC model among per-language ones (estimate reads the script)",
    )
    parser.add_argument("--method", choices=("estimate", "ctc"), default="estimate")
    parser.add_argument(
        "--model", help="a Wav2Vec2ForCTC checkpoint directory (ctc; default: TTS_ALIGN_CTC_MODEL)"
    )
    args = parser.parse_args(argv)
    from core.clone.reference_audio import ReferenceAudioError, decode_reference_audio

    path = Path(args.audio)
    if not path.is_file():
        parser.exit(2, f"python -m core.align: error: no such audio file: {args.audio}\n")
    words = split_words(args.text)
    if not words:
        parser.exit(2, "python -m core.align: error: TEXT has no words\n")
    try:
        audio = decode_reference_audio(
            path.read_bytes(), min_seconds=1 / SAMPLE_RATE, max_seconds=MAX_AUDIO_SECONDS, max_bytes=2**31
        )
    except ReferenceAudioError as exc:
        parser.exit(2, f"python -m core.align: error: {args.audio}: {exc}\n")
    ctc = None
    if args.method == "ctc":
        from core.align.ctc import CtcAligner, CtcModelError, model_dir_for

        try:
            ctc = CtcAligner.load(model_dir_for(args.model, args.language))
        except CtcModelError as exc:
            parser.exit(2, f"python -m core.align: error: {exc}\n")
    result = align(audio.samples, words, method=args.method, ctc=ctc)
    json.dump(result.to_json(), sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
