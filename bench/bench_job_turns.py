"""Jobs between keys and progress streams on one job: before and after, in one run, in-process (SQLite store).

    python -m bench job_turns [--chapters 40] [--chapter-s 0.05] [--streams 250] [--seconds 3]

1. Turns: key A queues two jobs of `--chapters` chapters, then key B submits one chapter while A's first renders
   (the real runner; a chapter is a wait of `--chapter-s`). Reported: how many chapters and seconds B's first
   chapter waited, with the claim order before this change (the oldest job of any key) and now (the key whose
   latest claim is oldest).
2. Polls: `--streams` progress streams on one running job for `--seconds`. Reported: store reads per second with one
   poll per stream (before) and one shared poll per job (now).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.jobs import runner as runner_module  # noqa: E402
from services.jobs import sql as store_sql  # noqa: E402
from services.jobs.records import ChapterRecord, JobOptions, JobRecord, job_view  # noqa: E402
from services.jobs.render import JobFiles, RenderedChapter  # noqa: E402
from services.jobs.runner import JobRunner  # noqa: E402
from services.jobs.store import SqliteJobStore  # noqa: E402
from services.jobs.watch import JobWatch  # noqa: E402

OLD_ORDER = "created_at, id"  # the claim order before keys took turns


def record(job_id: str, key_id: str, chapters: int, created_at: float) -> JobRecord:
    return JobRecord(
        id=job_id,
        key_id=key_id,
        key_hash="0" * 64,
        title=None,
        options=JobOptions(format="wav", book_format=None),
        created_at=created_at,
        chapters=tuple(
            ChapterRecord(index=i, title=f"C{i}", text="word " * 20) for i in range(1, chapters + 1)
        ),
    )


async def turns(root: Path, order: str, chapters: int, chapter_s: float) -> tuple[int, float]:
    """(chapters rendered before B's first, seconds B waited)."""
    store_sql.TURN_ORDER = order
    store = SqliteJobStore(root / "jobs.sqlite3")
    rendered: list[str] = []
    first = asyncio.Event()
    b_started: list[float] = []

    async def render(job, chapter, **_) -> RenderedChapter:
        if job.key_id == "B":
            b_started.append(time.perf_counter())
        rendered.append(job.key_id)
        first.set()
        await asyncio.sleep(chapter_s)
        return RenderedChapter(audio_seconds=1.0, render_seconds=chapter_s, request_id="r")

    runner_module.render_chapter = render
    runner = JobRunner(
        store,
        SimpleNamespace(models=SimpleNamespace(ready=True)),  # type: ignore[arg-type]
        SimpleNamespace(authenticator=None),  # type: ignore[arg-type]
        JobFiles(root),
        write_book=lambda job, files: None,
        poll_s=0.01,
    )
    await store.create(record("a1", "A", chapters, 1.0))
    await store.create(record("a2", "A", chapters, 2.0))
    runner.start()
    await first.wait()
    submitted = time.perf_counter()
    await store.create(record("b1", "B", 1, 3.0))
    runner.wake()
    while not b_started:
        await asyncio.sleep(0.005)
    await runner.stop()
    await store.close()
    return rendered.index("B"), b_started[0] - submitted


async def polls(root: Path, streams: int, seconds: float, shared: bool) -> float:
    """Store reads per second with `streams` streams on one job."""
    store = SqliteJobStore(root / f"polls-{shared}.sqlite3")
    await store.create(record("j1", "A", 20, 1.0))
    await store.claim("p1", 3600)
    watches = [
        JobWatch(store, poll_s=0.5, per_key=streams, view=job_view) for _ in range(1 if shared else streams)
    ]

    async def follow(watch: JobWatch) -> None:
        async for _ in watch.events("j1", "A"):
            pass

    tasks = [asyncio.create_task(follow(watches[i % len(watches)])) for i in range(streams)]
    await asyncio.sleep(0.2)
    before = sum(w.reads for w in watches)
    await asyncio.sleep(seconds)
    reads = sum(w.reads for w in watches) - before
    for w in watches:
        w.close()
    await asyncio.gather(*tasks)
    await store.close()
    return reads / seconds


async def main(args: argparse.Namespace) -> None:
    now_order = store_sql.TURN_ORDER
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = []
        for label, order in (("before (oldest job first)", OLD_ORDER), ("now (key turns)", now_order)):
            (root / label[:3]).mkdir()
            waited, seconds = await turns(root / label[:3], order, args.chapters, args.chapter_s)
            rows.append(f"| {label} | {2 * args.chapters} | {waited} | {seconds:.2f} |")
        store_sql.TURN_ORDER = now_order
        print("\n### Another key's first chapter behind one key's queue\n")
        print("| claim order | key A's chapters queued | chapters before B's first | B waited (s) |")
        print("|---|---|---|---|")
        print("\n".join(rows))
        print(f"\n### Store reads with {args.streams} progress streams on one job (poll every 0.5 s)\n")
        print("| polls | reads per second |")
        print("|---|---|")
        for label, shared in (("before (one per stream)", False), ("now (one per job)", True)):
            rate = await polls(root, args.streams, args.seconds, shared)
            print(f"| {label} | {rate:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", type=int, default=40)
    parser.add_argument("--chapter-s", type=float, default=0.05)
    parser.add_argument("--streams", type=int, default=250)
    parser.add_argument("--seconds", type=float, default=3.0)
    asyncio.run(main(parser.parse_args()))
