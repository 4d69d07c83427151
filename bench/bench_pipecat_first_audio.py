"""Pipecat's ElevenLabs client against its Cartesia client: first audio of a multi-sentence reply while the LLM is
still streaming it, at 20 and 50 LLM tokens per second, on the device stand-in.

Pipecat 1.14's own `ElevenLabsTTSService` and `CartesiaTTSService`, each on one socket to the stand-in server (the
product app with the engine's steps and the codec's calls as waits of an H100's measured length,
bench/cost_models/h100-tf32.json), driven by Pipecat's test pipeline (`run_test`): per turn, the reply's tokens a
word at a time (punctuation split off, as an LLM streams them) at the pace named, then a pause for the turn to end.
First audio: from the turn's first token entering the TTS service to its first audio frame leaving it (Pipecat's
pipeline clock). Each client aggregates the tokens its own way (ElevenLabs: a message per sentence; Cartesia: a
message per sentence with `continue`), so what is compared is what a Pipecat agent gets from each.

Run it with the agents venv (Pipecat); the server runs in the project's venv (`TTS_TEST_SERVER_PYTHON`, default
.venv/bin/python):

    TTS_TEST_SERVER_PYTHON=.venv/bin/python .venv-agents/bin/python -m bench pipecat_first_audio [--turns 5]

Prints the median first audio per client and pace and the ratio ElevenLabs / Cartesia, and writes
bench/results/pipecat_first_audio.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipecat.frames.frames import (  # noqa: E402
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed  # noqa: E402
from pipecat.services.cartesia.tts import CartesiaTTSService  # noqa: E402
from pipecat.services.elevenlabs.tts import ElevenLabsTTSService  # noqa: E402
from pipecat.tests.utils import SleepFrame, run_test  # noqa: E402

from tests.agents.conftest import COST_MODEL, KEY, _serve, llm_tokens  # noqa: E402

REPLY = "Okay, Bravo here. This reply has a second sentence, which arrives while the first one is spoken."
PACES = (20.0, 50.0)  # LLM tokens per second
QUIET_S = 30.0  # Pipecat's quiet-context timeout, well past any turn here
# After the last token, until the next turn: the reply (~6 s of audio, sent at most 3 s ahead of playback) has
# played, so a turn never queues behind the previous one's audio.
SETTLE_S = 9.0


class FirstAudio(BaseObserver):
    """Per turn: the pipeline time of the first token pushed into the TTS service and of its first audio frame."""

    def __init__(self, tts: object) -> None:
        super().__init__()
        self.tts = tts
        self.turns: list[list[int | None]] = []  # [first token ns, first audio ns]

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if data.destination is self.tts and isinstance(frame, LLMFullResponseStartFrame):
            self.turns.append([None, None])
        elif self.turns and data.destination is self.tts and isinstance(frame, LLMTextFrame):
            if self.turns[-1][0] is None:
                self.turns[-1][0] = data.timestamp
        elif self.turns and data.source is self.tts and isinstance(frame, TTSAudioRawFrame):
            if self.turns[-1][1] is None:
                self.turns[-1][1] = data.timestamp


def turn_frames(pace: float) -> list:
    frames: list = [LLMFullResponseStartFrame()]
    for token in llm_tokens(REPLY):
        frames += [LLMTextFrame(token), SleepFrame(sleep=1.0 / pace)]
    return [*frames, LLMFullResponseEndFrame(), SleepFrame(sleep=SETTLE_S)]


def make_tts(name: str, ws: str) -> object:
    if name == "elevenlabs":
        return ElevenLabsTTSService(
            api_key=KEY,
            url=ws,
            sample_rate=16000,
            stop_frame_timeout_s=QUIET_S,
            settings=ElevenLabsTTSService.Settings(voice="default"),
        )
    return CartesiaTTSService(
        api_key=KEY,
        url=f"{ws}/tts/websocket",
        sample_rate=16000,
        stop_frame_timeout_s=QUIET_S,
        settings=CartesiaTTSService.Settings(voice="default"),
    )


async def measure(name: str, ws: str, pace: float, turns: int) -> list[float]:
    """First audio (ms) of each turn after a warm-up turn, all on one socket."""
    tts = make_tts(name, ws)
    observer = FirstAudio(tts)
    frames = [f for _ in range(turns + 1) for f in turn_frames(pace)]
    await run_test(tts, frames_to_send=frames, observers=[observer])
    got = [
        (audio - token) / 1e6
        for token, audio in observer.turns[1:]
        if token is not None and audio is not None
    ]
    if len(got) != turns:
        raise RuntimeError(
            f"{name} at {pace} tokens/s: {len(got)} of {turns} turns had audio ({observer.turns})"
        )
    return got


class _Folders:
    """What conftest._serve asks of pytest's TempPathFactory."""

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"bench-pipecat-{name}-"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--turns", type=int, default=5, help="timed turns per client and pace (after a warm-up)"
    )
    parser.add_argument("--quick", action="store_true", help="3 turns")
    parser.add_argument(
        "--admission",
        action="store_true",
        help="admission on (off by default: the figures in docs/benchmarks.md were taken without it)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pipecat_first_audio.json")
    args = parser.parse_args()
    turns = 3 if args.quick else args.turns
    started = time.perf_counter()
    env = {} if args.admission else {"TTS_ADMISSION": "off"}
    # _Folders stands in for pytest's TempPathFactory; closing the generator (below) stops the server
    serving = _serve(_Folders(), "standin", env, ["--cost-model", str(COST_MODEL)])  # type: ignore[arg-type]
    server = next(serving)
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for pace in PACES:
            for name in ("elevenlabs", "cartesia"):
                results.setdefault(name, {})[str(int(pace))] = asyncio.run(
                    measure(name, server.ws, pace, turns)
                )
    finally:
        serving.close()
    lines = [
        "Pipecat 1.14 first audio of a two-sentence reply (ms, median of "
        f"{turns} turns; the stand-in server, admission {'on' if args.admission else 'off'})",
        "",
        "| LLM tokens/s | ElevenLabs | Cartesia | ElevenLabs / Cartesia |",
        "|---|---|---|---|",
    ]
    rows = []
    for pace in PACES:
        key = str(int(pace))
        eleven, cartesia = (
            statistics.median(results["elevenlabs"][key]),
            statistics.median(results["cartesia"][key]),
        )
        rows.append(
            {
                "tokens_per_s": pace,
                "elevenlabs_ms": round(eleven, 1),
                "cartesia_ms": round(cartesia, 1),
                "ratio": round(eleven / cartesia, 2),
            }
        )
        lines.append(f"| {key} | {eleven:.0f} | {cartesia:.0f} | {eleven / cartesia:.2f} |")
    table = "\n".join(lines)
    print(table)
    meta = {
        "turns": turns,
        "admission": args.admission,
        "reply": REPLY,
        "wall_s": round(time.perf_counter() - started),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"meta": meta, "rows": rows, "turns_ms": results, "table": table}, indent=2) + "\n"
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
