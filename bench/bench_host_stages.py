"""The API path's synchronous stages, one at a time, in microseconds per second of audio (no server, no profiler).

    PYTHONPATH=. .venv/bin/python bench/bench_host_stages.py [--interval 4] [--seconds 34] [--repeat 5] [--sr48]
        [--resampled] [--out bench/results/host_stages/stages.json]

One stream's worth of work, as the serving path does it: semantic ids arrive in engine deltas of `--interval` ids
(TTS_LLM_STREAM_INTERVAL); each delta goes through the token parser (`core/tokens.py`), the token guards and the
spoken tail (`services/pipeline/chunk_guards.py`, `spoken_tail.py`) and the decode planner (`core/streaming.py`);
each window the planner makes is taken back with quiet noise as its audio (a free codec), screened by the audio guard
and pushed through `AudioOutput` (crossfade, resample, steady frames, the encoder) for each format. Best of
`--repeat` runs, CPU time of this thread. What this leaves out, the server bench (`bench/bench_host_path.py`)
measures as the rest: the event loop, the queue hops between tasks, HTTP framing and the socket, metrics, the engine.
Run it against an older tree with `PYTHONPATH=<that tree>` to compare stages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH: an older tree given there is the one measured

from bench.sim.windows import SR_CONTEXT, SR_GRID  # noqa: E402
from core.streaming import DecodePlanner, StreamingConfig  # noqa: E402
from core.tokens import TokenParser, VocabLayout  # noqa: E402
from services.device.scheduler import CodecScheduler  # noqa: E402
from services.pipeline.audio_output import AudioOutput  # noqa: E402
from services.pipeline.chunk_guards import GuardPolicy  # noqa: E402
from services.pipeline.pipeline_stats import PipelineStats  # noqa: E402
from services.pipeline.spoken_tail import SpokenTail  # noqa: E402
from shared.settings import Settings  # noqa: E402

if TYPE_CHECKING:
    from services.device.calls import DeviceRunner
    from services.pipeline.resources import PipelineResources

TOKENS_PER_SECOND = 50
HOP = 320
TEXT = "The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun. " * 6


def layout() -> VocabLayout:
    from core.tokens import QWEN_CONTROL_TOKENS, added_tokens

    # The released vocabulary's named part: Qwen's control tokens from 151643, Spark's from 151665.
    vocab = {text: 151643 + i for i, (text, _) in enumerate(QWEN_CONTROL_TOKENS)}
    vocab.update({text: 151665 + i for i, text in enumerate(added_tokens())})
    return VocabLayout.from_vocab(vocab, table_size=166000)


def deltas(lay: VocabLayout, tokens: int, interval: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    ids = [lay.semantic_id(int(v)) for v in rng.integers(0, 8192, tokens)]
    return [ids[i : i + interval] for i in range(0, len(ids), interval)]


def timed(run: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        run()
        best = min(best, time.thread_time() - start)
    return best


class InstantSR:
    """A device runner for SR calls that answers at once on the loop: each row's kept samples of quiet noise, copied
    (bench only: the 48 kHz chain's bookkeeping is what is measured, not AP-BWE)."""

    def __init__(self) -> None:
        self.noise = (np.random.default_rng(2).standard_normal(3 * 16_000) * 0.05).astype(np.float32)

    async def run_timed(self, call: Any) -> tuple[list[np.ndarray], float]:
        return [self.noise[w.keep_start : w.keep_end].copy() for w in call.windows], 0.0


def measure(
    interval: int,
    seconds: float,
    repeat: int,
    formats: list[str],
    sr48: bool = False,
    resampled: bool = False,
) -> dict[str, float]:
    settings = Settings()
    lay = layout()
    tokens = int(seconds * TOKENS_PER_SECOND)
    parts = deltas(lay, tokens, interval)
    semantic_parts = [[int(lay.values[i]) for i in d] for d in parts]
    config = StreamingConfig.from_settings(settings)
    noise = (np.random.default_rng(1).standard_normal(HOP * tokens) * 0.05).astype(np.float32)

    def parse() -> None:
        parser = TokenParser(lay, mode="clone")
        for d in parts:
            parser.feed(d)

    def guards() -> None:
        policy = GuardPolicy(settings, PipelineStats(), "bench")
        run = policy.new_run(0, TEXT, stream=True)
        tail = SpokenTail(500)
        for s in semantic_parts:
            policy.screen_tokens(run, s)
            tail.add(0, TEXT, s)

    def windows() -> list[tuple[Any, np.ndarray]]:
        planner = DecodePlanner(config, hop=HOP, codebook_size=8192)
        out = []
        for s in semantic_parts:
            for w in planner.push(s):
                out.append((w, planner.take(w, noise[: w.kept_tokens * HOP])))
        for w in planner.finish():
            out.append((w, planner.take(w, noise[: w.kept_tokens * HOP])))
        return out

    chunks = [audio for _, audio in windows()]

    def audio_guard() -> None:
        policy = GuardPolicy(settings, PipelineStats(), "bench")
        run = policy.new_run(0, TEXT, stream=True)
        for c in chunks:
            policy.screen_audio(run, c)

    def chain(fmt: str, rate: int = 16000) -> Callable[[], None]:
        # a stand-in for the pipeline's resources: what AudioOutput reads
        resources = cast("PipelineResources", SimpleNamespace(settings=settings, sr=None, scheduler=None))

        def go() -> None:
            async def body() -> None:
                out = AudioOutput(
                    resources,
                    audio_format=fmt,
                    sample_rate=rate,
                    stream=True,
                    want_bwe=False,
                    stats=PipelineStats(),
                )
                out.start_segment(last=True)
                for c in chunks:
                    await out.push(c)
                await out.finish()

            asyncio.run(body())

        return go

    def chain48(fmt: str, rate: int = 48000) -> Callable[[], None]:
        """The same chunks at 48 kHz: AP-BWE's windows planned, submitted to the real codec scheduler and answered at
        once by `InstantSR` (its kept rows copied out, as the device thread does), then framed and encoded (`rate`
        below 48 kHz: resampled from 48 kHz first, as the service does for 24 / 22.05 / 44.1 kHz)."""
        resources = cast(  # a stand-in for the pipeline's resources: what AudioOutput reads
            "PipelineResources",
            SimpleNamespace(
                settings=settings, sr=SimpleNamespace(grid=SR_GRID, context=SR_CONTEXT), scheduler=None
            ),
        )

        def go() -> None:
            async def body() -> None:
                # a stand-in device runner: the scheduler only calls run_timed here
                runner = cast("DeviceRunner", InstantSR())
                async with CodecScheduler(runner) as scheduler:
                    handle = scheduler.open_stream()
                    out = AudioOutput(
                        resources,
                        audio_format=fmt,
                        sample_rate=rate,
                        stream=True,
                        want_bwe=True,
                        stats=PipelineStats(),
                        handle=handle,
                    )
                    out.start_segment(last=True)
                    for c in chunks:
                        await out.push(c)
                    await out.finish()
                    handle.close()

            asyncio.run(body())

        return go

    loop_cost = timed(
        lambda: asyncio.run(asyncio.sleep(0)), repeat
    )  # asyncio.run's own cost, taken off chain()
    audio_s = tokens / TOKENS_PER_SECOND
    results = {
        "parsing (TokenParser.feed)": timed(parse, repeat),
        "token guards + spoken tail": timed(guards, repeat),
        "decode planning (push, take)": timed(lambda: windows(), repeat),
        "audio guard (silence)": timed(audio_guard, repeat),
    }
    for fmt in formats:
        results[f"audio chain + encoding, {fmt}"] = max(0.0, timed(chain(fmt), repeat) - loop_cost)
    if sr48:
        results["48 kHz: AP-BWE windows through the scheduler, chain + encoding, pcm"] = max(
            0.0, timed(chain48("pcm"), repeat) - loop_cost
        )
    if resampled:
        results["8 kHz: 16 -> 8 kHz resampled, chain + encoding, pcm"] = max(
            0.0, timed(chain("pcm", 8000), repeat) - loop_cost
        )
        results["24 kHz: AP-BWE windows, 48 -> 24 kHz resampled, chain + encoding, pcm"] = max(
            0.0, timed(chain48("pcm", 24000), repeat) - loop_cost
        )
        results["22.05 kHz: AP-BWE windows, 48 -> 22.05 kHz resampled, chain + encoding, pcm"] = max(
            0.0, timed(chain48("pcm", 22050), repeat) - loop_cost
        )
    return {name: 1e6 * value / audio_s for name, value in results.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--interval", type=int, default=4, help="ids per engine delta")
    p.add_argument("--seconds", type=float, default=34.0)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--format", default="pcm,wav,mp3,opus")
    p.add_argument(
        "--sr48",
        action="store_true",
        help="also the 48 kHz chain: AP-BWE's windows through the codec scheduler (answered at once), pcm",
    )
    p.add_argument(
        "--resampled",
        action="store_true",
        help="also pcm at 8 kHz (16 -> 8 kHz) and at 24 and 22.05 kHz (AP-BWE's windows as --sr48, then "
        "48 kHz resampled)",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="a JSON file (e.g. bench/results/host_stages/stages.json)"
    )
    args = p.parse_args()
    rows = measure(
        args.interval, args.seconds, args.repeat, args.format.split(","), args.sr48, args.resampled
    )
    print(f"| stage ({args.interval} ids per delta) | us CPU per audio s |")
    print("|---|---|")
    for name, us in rows.items():
        print(f"| {name} | {us:.0f} |")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"interval": args.interval, "us_per_audio_s": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
