"""The next turn after a barge-in against a fresh turn: first audio from the turn's first message, as ratios.

Two servers start together on the demo checkpoint (the product app, auth off): `supersede` (the product) and
`no_supersede` (`TTS_WS_SUPERSEDE_AFTER_S` so large that no context ever supersedes another: an interrupted context
keeps generating). Each runs, on the ElevenLabs and the Cartesia socket,
the messages Pipecat's clients send (ElevenLabs: `" "` opener, the text a word at a time, `flush`, `close_context`;
Cartesia: the text a word at a time with `continue`, then `continue: false`), and nothing more on a barge-in (as
Pipecat's ElevenLabs client and LiveKit's pooled clients do):

- fresh: one turn on an idle socket (after a warm-up turn), its first audio;
- after barge-in: on one socket, five times within ~30 s, a long turn whose audio has begun is barged in on (the
  user speaks for `USER_S`), then the next turn opens: its first audio.

Prints a markdown table (median first audio per case, ratio after/fresh, the server's `stop_ms` of the stopped
contexts) and writes bench/results/barge_in/demo.json. Timings on a shared CPU are noisy: compare the ratios.
`--cost-model bench/cost_models/h100-tf32.json` runs both servers with the device stand-in (bench/standin: the
model's work becomes waits of an H100's length, so what is timed is the server's wiring, as in the agents tier) and
writes bench/results/barge_in/standin.json.

    .venv/bin/python bench/bench_barge_in.py [--rounds 5] [--cost-model bench/cost_models/h100-tf32.json]
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

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    DEMO_DIR,
    RESULTS,
    app_command,
    demo_env,
    standin_command,
    start_server,
    write_results,
)
from bench.ws_speakers import turn  # noqa: E402

LONG = (
    "This answer is rather long, so that the user can barge in on it well before it ends. It goes on and on."
)
SHORT = "Sure, let us talk about something else then."
USER_S = 0.8  # the user speaks, the LLM answers
HEARD_S = 1.0  # the barge-in comes this long after the interrupted turn's first audio


class Dialect:
    """One socket's messages the way Pipecat's client sends them."""

    def __init__(self, name: str, port: int) -> None:
        self.name, self.port = name, port

    def url(self) -> str:
        if self.name == "elevenlabs":
            return f"ws://127.0.0.1:{self.port}/v1/text-to-speech/default/multi-stream-input?output_format=pcm_16000"
        return f"ws://127.0.0.1:{self.port}/tts/websocket"

    def turn(self, cid: str, text: str) -> list[str]:
        """A turn's messages, JSON-encoded: the text a word at a time (bench/ws_speakers.py), Cartesia with
        Pipecat's `max_buffer_delay_ms` 0."""
        return turn(
            self.name, text, cid, "default", max_buffer_delay_ms=0 if self.name == "cartesia" else None
        )

    @staticmethod
    def audio_of(message: dict) -> str | None:
        """The context of an audio message, else None."""
        if message.get("audio") or message.get("type") == "chunk":
            return message.get("contextId") or message.get("context_id")
        return None


async def first_audio(ws, dialect: Dialect, cid: str, text: str) -> float:
    """Send a turn; seconds from its first message to its first audio (other contexts' messages are skipped)."""
    began = time.monotonic()
    for message in dialect.turn(cid, text):
        await ws.send(message)
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 120))
        if dialect.audio_of(message) == cid:
            return time.monotonic() - began


async def drain(ws, dialect: Dialect, cid: str) -> None:
    """Read until the context's end marker."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 120))
        if (message.get("contextId") or message.get("context_id")) != cid:
            continue
        if message.get("isFinal") or message.get("type") == "done":
            return


async def fresh_turn(dialect: Dialect, index: int) -> float:
    async with connect(dialect.url(), max_size=None) as ws:
        seconds = await first_audio(ws, dialect, f"fresh{index}", SHORT)
        await drain(ws, dialect, f"fresh{index}")
        return seconds


async def storm(dialect: Dialect, rounds: int) -> list[float]:
    """Five barge-ins on one socket: each next turn's first audio."""
    out = []
    async with connect(dialect.url(), max_size=None) as ws:
        for index in range(rounds):
            await first_audio(ws, dialect, f"long{index}", LONG)
            await asyncio.sleep(HEARD_S + USER_S)  # heard a little, then the user speaks
            out.append(await first_audio(ws, dialect, f"next{index}", SHORT))
        await drain(ws, dialect, f"next{rounds - 1}")
    return out


def stop_ms(log: Path) -> list[float]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if '"utterance_stopped"' in line:
            try:
                out.append(json.loads(line)["stop_ms"])
            except (ValueError, KeyError):
                pass
    return out


async def run(ports: dict[str, int], rounds: int) -> dict:
    results: dict = {}
    for dialect_name in ("elevenlabs", "cartesia"):
        for variant, port in ports.items():  # the variants alternate: they share the background load
            dialect = Dialect(dialect_name, port)
            await fresh_turn(dialect, -1)  # warm-up
            fresh = [await fresh_turn(dialect, i) for i in range(3)]
            began = time.monotonic()
            after = await storm(dialect, rounds)
            results[f"{dialect_name}/{variant}"] = {
                "fresh_s": fresh,
                "after_barge_in_s": after,
                "storm_s": round(time.monotonic() - began, 1),
                "ratio": statistics.median(after) / statistics.median(fresh),
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--cost-model",
        type=Path,
        default=None,
        help="run both servers with this device stand-in (a benchmark tool, demo checkpoint only)",
    )
    args = parser.parse_args()
    from core.demo.checkpoint import build_demo_checkpoint

    model_dir = build_demo_checkpoint(DEMO_DIR, seed=0)
    tmp = Path(tempfile.mkdtemp(prefix="barge-in-"))
    command = standin_command(args.cost_model) if args.cost_model else app_command
    servers = {}
    try:
        for variant, after in (("supersede", 0.5), ("no_supersede", 1e9)):
            env = demo_env(model_dir, OMP_NUM_THREADS="1", TTS_WS_SUPERSEDE_AFTER_S=str(after))
            servers[variant] = start_server(command, env, tmp / f"{variant}.log")
        results = asyncio.run(run({v: server.port for v, server in servers.items()}, args.rounds))
    finally:
        for server in servers.values():
            server.stop()
    results["stop_ms_supersede"] = stop_ms(tmp / "supersede.log")
    print(
        "| socket | server | fresh turn first audio (median s) | next turn after a barge-in (median s) | ratio |"
        " storm length (s) |"
    )
    print("|---|---|---|---|---|---|")
    for case, r in results.items():
        if case.startswith("stop_ms"):
            continue
        dialect, variant = case.split("/")
        print(
            f"| {dialect} | {variant} | {statistics.median(r['fresh_s']):.2f} | "
            f"{statistics.median(r['after_barge_in_s']):.2f} | {r['ratio']:.2f} | {r['storm_s']} |"
        )
    stops = results["stop_ms_supersede"]
    if stops:
        print(
            f"\nstopped contexts (supersede): {len(stops)}, stop_ms max {max(stops):.1f}, "
            f"median {statistics.median(stops):.1f}"
        )
    results["cost_model"] = str(args.cost_model) if args.cost_model else None
    write_results(RESULTS / "barge_in" / ("standin.json" if args.cost_model else "demo.json"), results)


if __name__ == "__main__":
    main()
