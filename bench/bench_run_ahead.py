"""How far an abandoned WebSocket reply's generation can run ahead of playback: the text chunks a streaming context
cuts (the real `TextSegmenter` + `plan_text` an `Utterance` uses), in seconds of speech.

A streamed reply waits while its audio is more than `TTS_STREAM_MAX_AHEAD_S` (3 s) ahead of what the client can have
played, before each decode window and before the next text chunk's generation; but the LLM (vLLM) generates the
current text chunk to its end meanwhile, so the tokens of a reply abandoned right after a chunk began reach
max_ahead + that chunk's speech past playback. This prints each case's chunks with the HTTP sizes (threshold 220,
target 170) and with the streaming cap (`TTS_STREAM_CHUNK_MAX_CHARS`), and writes bench/results/run_ahead.json.

Speech per character: 3.5 semantic tokens (50 per second), ~14 characters a second, the rate the device stand-in's
engine uses (bench/standin/cost_model_engine.py); a real voice varies around it.

    PYTHONPATH=. .venv/bin/python bench/bench_run_ahead.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from processing.segmenter import TextSegmenter  # noqa: E402
from services.pipeline.text_plan import plan_text  # noqa: E402
from shared.settings import Settings  # noqa: E402

SECONDS_PER_CHAR = 3.5 / 50.0
MAX_AHEAD_S = Settings().stream.stream_max_ahead_s

REPLY = (
    "Sure, I can help with that. Your order shipped yesterday and should arrive by Thursday afternoon. "
    "If it does not, just call us back and we will send a replacement right away."
)
LONG_SENTENCE = (
    "The museum is open every day from nine in the morning until six in the evening, except on public "
    "holidays, when it closes at two, and the guided tours, which start at the main entrance every hour, "
    "are free for members."
)
PARAGRAPH = REPLY + " " + LONG_SENTENCE
CASES = [  # (name, text, streamed token by token like an LLM or sent in one message)
    ("LLM reply, 3 sentences, token by token", REPLY, True),
    ("one 200-character sentence, token by token", LONG_SENTENCE, True),
    ("a paragraph in one message", PARAGRAPH, False),
]


def chunks(text: str, streamed: bool, threshold: int, target: int) -> list[str]:
    """The text chunks a WebSocket context feeds the model (Utterance._feed_text's cuts)."""
    segmenter = TextSegmenter(threshold=threshold, target=target)
    parts: list[str] = []
    pieces = [w + " " for w in text.split(" ")] if streamed else [text]
    for piece in pieces:
        parts += segmenter.push(piece)
    parts += segmenter.flush()
    out: list[str] = []
    for part in parts:
        out += plan_text(part, normalize=True, chunking=True, threshold=threshold, target=target).chunks
    return out


def main() -> int:
    settings = Settings()
    cap = settings.text.stream_chunk_max_chars
    configs = [
        ("HTTP sizes (220/170)", settings.text.chunking_threshold_chars, settings.text.chunk_target_chars),
        (
            f"streaming cap {cap}",
            min(settings.text.chunking_threshold_chars, cap),
            min(settings.text.chunk_target_chars, cap),
        ),
    ]
    rows = []
    print("| case | chunking | chunks (characters) | largest chunk (s of speech) | run-ahead bound (s) |")
    print("|---|---|---|---|---|")
    for name, text, streamed in CASES:
        for label, threshold, target in configs:
            sizes = [len(c) for c in chunks(text, streamed, threshold, target)]
            largest = max(sizes) * SECONDS_PER_CHAR
            row = {
                "case": name,
                "chunking": label,
                "chunk_chars": sizes,
                "largest_chunk_s": round(largest, 1),
                "run_ahead_bound_s": round(MAX_AHEAD_S + largest, 1),
            }
            rows.append(row)
            print(
                f"| {name} | {label} | {', '.join(map(str, sizes))} | {row['largest_chunk_s']} | "
                f"{row['run_ahead_bound_s']} |"
            )
    out = ROOT / "bench" / "results" / "run_ahead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"seconds_per_char": SECONDS_PER_CHAR, "max_ahead_s": MAX_AHEAD_S, "rows": rows}, indent=1)
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
