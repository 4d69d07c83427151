"""A long-form job beside live streams: live first audio and underruns with and without the job, in one run, and
the job's throughput idle and under load.

    python -m bench jobs_beside_live [--target standin|demo] [--cost-model bench/cost_models/h100-tf32.json] \\
        [--concurrency 16] [--rounds 2] [--idle-s 20] [--out bench/results/jobs_beside_live/TARGET.json]

Starts the server (`standin`: `python -m bench.standin.serve --cost-model ...`, the engine's steps and the codec's
calls as waits of the modelled length on one device timeline; `demo`: the CPU demo checkpoint), then:

1. a job alone (`POST /v1/tts/jobs`, short chapters so progress moves often) for `--idle-s`: its audio seconds per
   second of device time its codec calls held (`device_seconds_total{work_class="background"}`) and per wall second;
2. `--rounds` times: a level of `--concurrency` live PCM streams alone (bench/loadgen.py, 100 ms prebuffer), then the
   same level with a fresh job running beside it (cancelled after the level).

Reported: live first audio p50/p90 and underruns with and without the job and their ratios, and the job's
throughput idle and under load. Jobs run as background work (services/device/background.py): the goal is ratios
near 1 and no underrun the live level alone does not have.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.harness import (  # noqa: E402
    DEMO_DIR,
    Server,
    app_command,
    demo_env,
    standin_command,
    start_server,
    stop_server,
    write_results,
)
from bench.loadgen import LevelSpec, percentile, run_level, summarise  # noqa: E402

LIVE_TEXT = (
    "The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun while the children play "
    "by the river and the old miller counts his sacks of flour."
)
SENTENCES = (
    "The river ran slow and brown past the mill.",
    "The miller sat on the step with his pipe, counting the boats that came down from the hills.",
    "Each one carried grain, and each sack of grain would be flour by morning.",
    "Nobody in the village could remember a summer as dry as this one.",
)
BACKGROUND_SECONDS = 'veena3_tts_device_seconds_total{work_class="background"}'


def job_document(chapters: int, sentences: int) -> str:
    """A Markdown book of short chapters (`sentences` each): a job's progress moves by whole chapters."""
    text = " ".join(SENTENCES[i % len(SENTENCES)] for i in range(sentences))
    return "\n\n".join(f"# Chapter {i + 1}\n\n{text}" for i in range(chapters))


def background_device_seconds(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(BACKGROUND_SECONDS):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Job:
    """One job through the jobs routes (the contract in docs/api/jobs.md): start, progress, cancel."""

    def __init__(self, url: str, chapters: int, sentences: int, sample_rate: int) -> None:
        self.url, self.chapters, self.sentences, self.sample_rate = url, chapters, sentences, sample_rate
        self.id = ""
        self.device_s_at_start = 0.0
        self.started = 0.0

    def start(self) -> None:
        body = {
            "text": job_document(self.chapters, self.sentences),
            "input_format": "markdown",
            "format": "wav",
            "book_format": None,
            "sample_rate": self.sample_rate,
            "title": "bench",
        }
        answer = httpx.post(f"{self.url}/v1/tts/jobs", json=body, timeout=30)
        if answer.status_code != 202:
            raise SystemExit(f"POST /v1/tts/jobs answered {answer.status_code}: {answer.text[:300]}")
        self.id = answer.json()["id"]
        self.device_s_at_start = background_device_seconds(self.url)
        self.started = time.perf_counter()

    def state(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/v1/tts/jobs/{self.id}", timeout=30).json())

    def cancel(self) -> None:
        httpx.delete(f"{self.url}/v1/tts/jobs/{self.id}", timeout=30)

    def throughput(self, state: dict[str, Any]) -> dict[str, Any]:
        """Audio seconds of its finished chapters per device second its codec calls held, and per wall second."""
        audio = float(state["progress"]["audio_seconds"])
        device = background_device_seconds(self.url) - self.device_s_at_start
        wall = time.perf_counter() - self.started
        return {
            "status": state["status"],
            "chapters_done": state["progress"]["chapters_done"],
            "audio_s": round(audio, 2),
            "device_s": round(device, 3),
            "wall_s": round(wall, 2),
            "audio_s_per_device_s": round(audio / device, 1) if device > 0 else None,
            "audio_s_per_wall_s": round(audio / wall, 3) if wall > 0 else None,
        }


async def job_alone(url: str, seconds: float, sentences: int, sample_rate: int) -> dict[str, Any]:
    job = Job(url, chapters=200, sentences=sentences, sample_rate=sample_rate)
    await asyncio.to_thread(job.start)
    await asyncio.sleep(seconds)
    state = await asyncio.to_thread(job.state)
    result = await asyncio.to_thread(job.throughput, state)
    await asyncio.to_thread(job.cancel)
    return result


async def live_level(url: str, pid: int, concurrency: int, sample_rate: int) -> dict[str, Any]:
    spec = LevelSpec(
        base_url=url,
        concurrency=concurrency,
        text=LIVE_TEXT,
        sample_rate=sample_rate,
        prebuffer_s=0.1,
        stagger_s=0.0,
    )
    level = await run_level(spec, server_pid=pid)
    row = summarise(level)
    row["ttfb_p90_s"] = percentile([s.ttfb_s for s in level.streams if s.ok and s.ttfb_s is not None], 90)
    return row


async def rounds(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    url, pid = server.url, server.process.pid
    await live_level(url, pid, 1, args.sample_rate)  # warm the voice and the paths
    idle = await job_alone(url, args.idle_s, args.chapter_sentences, args.sample_rate)
    alone: list[dict[str, Any]] = []
    beside: list[dict[str, Any]] = []
    loaded: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        alone.append(await live_level(url, pid, args.concurrency, args.sample_rate))
        job = Job(url, chapters=200, sentences=args.chapter_sentences, sample_rate=args.sample_rate)
        await asyncio.to_thread(job.start)
        await asyncio.sleep(args.job_lead_s)  # the job is rendering when the live level starts
        beside.append(await live_level(url, pid, args.concurrency, args.sample_rate))
        loaded.append(await asyncio.to_thread(job.throughput, await asyncio.to_thread(job.state)))
        await asyncio.to_thread(job.cancel)
    return {"idle": idle, "alone": alone, "beside": beside, "job_under_load": loaded}


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def report(result: dict[str, Any], concurrency: int) -> dict[str, Any]:
    alone, beside = result["alone"], result["beside"]
    summary: dict[str, Any] = {}
    print(f"| {concurrency} live streams | first audio p50 ms | p90 ms | underruns (streams) |")
    print("|---|---|---|---|")
    for name, rows in (("alone", alone), ("beside a job", beside)):
        p50, p90 = _mean(rows, "ttfb_p50_s"), _mean(rows, "ttfb_p90_s")
        underruns = sum(r["underruns"] for r in rows)
        streams = sum(r["streams_with_underruns"] for r in rows)
        summary[name] = {"ttfa_p50_s": p50, "ttfa_p90_s": p90, "underruns": underruns, "streams": streams}
        print(f"| {name} | {1000 * (p50 or 0):.0f} | {1000 * (p90 or 0):.0f} | {underruns} ({streams}) |")
    for q in ("p50", "p90"):
        a, b = summary["alone"][f"ttfa_{q}_s"], summary["beside a job"][f"ttfa_{q}_s"]
        summary[f"ratio_{q}"] = round(b / a, 3) if a and b else None
    print(f"ratio with / without the job: p50 {summary['ratio_p50']}, p90 {summary['ratio_p90']}")
    print("| job | audio s | device s | audio s per device s | audio s per wall s |")
    print("|---|---|---|---|---|")
    for name, row in [("idle", result["idle"]), *(("under load", r) for r in result["job_under_load"])]:
        print(
            f"| {name} | {row['audio_s']} | {row['device_s']} | {row['audio_s_per_device_s']} | "
            f"{row['audio_s_per_wall_s']} |"
        )
    return summary


def start(args: argparse.Namespace, workdir: Path) -> Server:
    log = workdir / "server.log"
    env = {
        "TTS_AUTH_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
        "TTS_JOBS_DIR": str(workdir / "jobs"),
        "TTS_ADMISSION": args.admission,
    }
    if args.target == "standin":
        env.update(TTS_DEVICE="cpu", TTS_DEMO_DIR=str(Path(tempfile.gettempdir()) / "tts-standin-demo"))
        return start_server(standin_command(args.cost_model), env, log)
    from core.demo.checkpoint import build_demo_checkpoint

    model_dir = build_demo_checkpoint(DEMO_DIR, seed=0)
    return start_server(app_command, {**demo_env(model_dir), **env}, log)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench jobs_beside_live", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", choices=("standin", "demo"), default="standin")
    p.add_argument("--cost-model", type=Path, default=ROOT / "bench" / "cost_models" / "h100-tf32.json")
    p.add_argument("--concurrency", type=int, default=16, help="live streams per level")
    p.add_argument("--rounds", type=int, default=2, help="live levels alone and beside a job, alternating")
    p.add_argument("--idle-s", type=float, default=20.0, help="how long the job runs alone")
    p.add_argument("--job-lead-s", type=float, default=2.0, help="the job's head start before a live level")
    p.add_argument("--sample-rate", type=int, default=16000, help="live streams' and the job's rate")
    p.add_argument(
        "--chapter-sentences",
        type=int,
        default=None,
        help="sentences per chapter (progress moves by chapters); default 4 on the stand-in, 1 on the CPU demo",
    )
    p.add_argument("--admission", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--quick", action="store_true", help="one round of 8 streams, 8 s alone")
    p.add_argument(
        "--out", type=Path, default=None, help="default bench/results/jobs_beside_live/TARGET.json"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.concurrency, args.rounds, args.idle_s = 8, 1, 8.0
    if args.chapter_sentences is None:
        args.chapter_sentences = 4 if args.target == "standin" else 1
    out = args.out or ROOT / "bench" / "results" / "jobs_beside_live" / f"{args.target}.json"
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        server = start(args, Path(tmp))
        try:
            result = asyncio.run(rounds(args, server))
        finally:
            stop_server(server)
    summary = report(result, args.concurrency)
    write_results(
        out,
        {
            "target": args.target,
            "cost_model": args.cost_model.name if args.target == "standin" else None,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "sample_rate": args.sample_rate,
            "chapter_sentences": args.chapter_sentences,
            "idle_s": args.idle_s,
            "summary": summary,
            **result,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
