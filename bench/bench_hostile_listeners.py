"""Another key's first audio, job submissions and health under the alias-rule, Markdown, rule-folding, reader and
Wyoming attacks, before and after, in one run.

    python -m bench hostile_listeners --before-tree /tmp/before [--seconds 20] [--label NAME]

`--before-tree`: a checkout of the code to compare with (`git archive BASE | tar -x -C DIR`); without it only this
tree is measured. Each tree serves the demo checkpoint on CPU (uvicorn, static keys A and B, the Wyoming server on
loopback, the open-file limit set to 4,096 so the connection attack reaches it in bounded time). Key B sends one
short streamed `POST /v1/tts/generate` after another and times its first audio bytes; a prober times
`GET /v1/tts/health` every 100 ms (5 s timeout). Per tree: B alone for half of `--seconds`, then under each attack,
run from a process of its own, for `--seconds`:

  plain     the control: key A sends one 10,000-character request after another, no dictionaries (what any
            such request costs; the bench lifts the per-key rate limit for both keys).
  alias     key A's three stored dictionaries of 1,000 rules of 200 characters, named by one 10,000-character
            request after another (ElevenLabs `with-timestamps`; refused for its giant word once the rules ran).
  markdown  key A sends one free `POST /v1/tts/normalize` of a 40,000-character line of `![` after another
            (issue 98: the link pattern rescanned the line from every `[`, n^2 steps holding the interpreter).
  folding   key A's three stored dictionaries of 1,000 capitalisations of one 200-letter word (case-insensitive,
            whole words), named by one 10,000-character request of that letter after another (issue 98: every
            match looped over the 1,000 rules behind the one key while the candidate budget counted one).
  reader    key A keeps four uploads (its concurrency) of a 45 KB PDF in flight, one after another: a 400,000-character
            page searched for 20 outline titles of 2,000 characters (issue 98: each held a reader for the whole 60 s
            timeout, and every key's job submission, JSON text included, waited behind them). Alone and under it, key
            B also uploads a short PDF and then submits a JSON text job, one pair after another, and times each
            answer (jobs deleted at once, A's too); B's first audio then carries its own submissions' work too.
  flood     one Wyoming connection sends `synthesize-start` and then empty `synthesize-chunk` events as fast as it
            can, reconnecting when closed.
  conns     5,000 Wyoming connections opened and held (past the server's open-file limit).
  idle      one address (127.0.0.3) keeps 64 idle Wyoming connections open (the default cap), opening another
            whenever one is closed (issue 98: the cap counted idle connections and had no share per address).
  idle4     the same from four addresses (127.0.0.3-6), 64 each: together they can fill the cap, so what keeps
            Home Assistant in is that idle connections are closed sooner while it waits.

For `idle` and `idle4` the probe is Home Assistant's instead of key B's: a Wyoming client from another address
(127.0.0.2) connects, sends one `synthesize` and times its first audio chunk (connecting included), one after another;
its control (`alone wyoming`) runs once before them.

Prints B's first-audio median and p90, B's upload and JSON job medians (alone and reader), health's median and worst
(and timeouts), and what each attack did; writes
bench/results/hostile_listeners/<label>.json. Timings on a shared machine move with its other load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import demo_env, free_port, results_path, write_results  # noqa: E402
from tests.pdf_files import minimal_pdf, word_flood  # noqa: E402

KEY_A, KEY_B = "bench-attacker-key", "bench-prober-key"
RULES, RULE_CHARS, TEXT_CHARS = 1000, 200, 10_000
CONNECTIONS, SERVER_FILES = 5000, 4096
REQUEST = {
    "text": "Hello there, this is key B.",
    "speaker": "fixed",
    "seed": 1,
    "stream": True,
    "format": "pcm",
}
ATTACKS = ("plain", "alias", "markdown", "folding", "reader", "flood", "conns", "idle", "idle4")
WYOMING_ATTACKS = {"idle": 1, "idle4": 4}  # attacking addresses
HOGS_PER_ADDRESS, HOME_ADDRESS = 64, "127.0.0.2"
READERS_A = 4  # key A's concurrent uploads (its concurrency)
MARKDOWN_LINE = "![" * 20_000


def _rules(d: int) -> list[dict[str, str]]:
    tail = lambda i: f"{d}x{i:05d}"[:8].ljust(8, "z")  # noqa: E731
    return [
        {"type": "alias", "string_to_replace": "a" * (RULE_CHARS - 8) + tail(i), "alias": "b"}
        for i in range(RULES)
    ]


def _variants(d: int) -> list[dict[str, Any]]:
    """1,000 capitalisations of one 200-letter word, case-insensitive: one Aho-Corasick key behind them all."""
    word = "a" * RULE_CHARS
    return [
        {
            "type": "alias",
            "string_to_replace": "".join(
                ch.upper() if (i >> (n % 10)) & 1 else ch for n, ch in enumerate(word)
            ),
            "alias": f"b{d}",
            "case_sensitive": False,
        }
        for i in range(RULES)
    ]


def _slow_pdf() -> bytes:
    """400,000 characters on one page and 20 outline titles that match it everywhere but their last word."""
    return minimal_pdf([word_flood(200_000)], [(" ".join(["a"] * 1_000) + " b", 0)] * 20)


def _short_pdf() -> bytes:
    return minimal_pdf([word_flood(400)], [("One", 0)])


async def _submit(client: httpx.AsyncClient, key: str, **body: Any) -> int:
    """One job submission as `key`; an accepted job is cancelled and removed at once (nothing renders)."""
    answer = await client.post("/v1/tts/jobs", headers={"Authorization": f"Bearer {key}"}, **body)
    if answer.status_code == 202:
        job = f"/v1/tts/jobs/{answer.json()['id']}"
        for _ in range(2):  # cancel, then remove
            await client.delete(job, headers={"Authorization": f"Bearer {key}"})
    return answer.status_code


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (SERVER_FILES, SERVER_FILES))


def _serve(tree: Path, log: Path, wyoming_port: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_")}
    env.update(
        demo_env(
            ROOT / "var" / "test-demo-model",
            TTS_AUTH_ENABLED="true",
            TTS_API_KEYS=f"{KEY_A},{KEY_B}",
            TTS_VOICE_DIR=str(log.parent / "voices"),
            TTS_WYOMING_ENABLED="true",
            TTS_WYOMING_PORT=str(wyoming_port),
            TTS_JOBS_DIR=str(log.parent / "jobs"),
            TTS_RATE_LIMIT_PER_MINUTE="100000",
            TTS_LOG_LEVEL="WARNING",
            OMP_NUM_THREADS="1",
        )
    )
    command = [sys.executable, "-m", "uvicorn", "--factory", "api:create_app", "--port", str(port)]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--no-access-log"],
            cwd=tree,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_limit_files,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            if httpx.get(f"{url}/v1/tts/ready", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "server not ready"
        time.sleep(0.3)


# ------------------------------------------------------------------------------------------------ attacks
def _attack(
    kind: str,
    url: str,
    wyoming_port: int,
    locators: list[dict[str, str]],
    stop: Any,
    out: Any,
    folded: list[dict[str, str]] | None = None,
) -> None:
    """One attack in this (child) process until `stop` is set; puts what it did on `out`."""
    stats: dict[str, int] = {}

    def count(name: str, n: int = 1) -> None:
        stats[name] = stats.get(name, 0) + n

    async def alias(locators: list[dict[str, str]] = locators) -> None:
        body: dict[str, Any] = {"text": "a" * TEXT_CHARS}
        if locators:
            body["pronunciation_dictionary_locators"] = locators
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            while not stop.is_set():
                answer = await client.post(
                    "/v1/text-to-speech/default/with-timestamps", headers={"xi-api-key": KEY_A}, json=body
                )
                count(f"answers {answer.status_code}")

    async def flood() -> None:
        from wyoming.client import AsyncTcpClient
        from wyoming.event import async_write_events
        from wyoming.tts import SynthesizeChunk, SynthesizeStart

        batch = [SynthesizeChunk(text="").event()] * 500
        while not stop.is_set():
            client = AsyncTcpClient("127.0.0.1", wyoming_port)
            try:
                await client.connect()
                assert client._writer is not None  # noqa: SLF001 - connect() opened it
                count("connections")
                await client.write_event(SynthesizeStart().event())
                while not stop.is_set():
                    await async_write_events(batch, client._writer)  # noqa: SLF001 - one write per batch
                    count("events", len(batch))
            except OSError:
                await asyncio.sleep(0.05)
            finally:
                try:
                    await client.disconnect()
                except OSError:
                    pass

    async def conns() -> None:
        held = []
        for _ in range(CONNECTIONS):
            if stop.is_set():
                break
            try:
                held.append(await asyncio.wait_for(asyncio.open_connection("127.0.0.1", wyoming_port), 2))
                count("opened")
            except (OSError, TimeoutError):
                count("failed to open")
        while not stop.is_set():
            await asyncio.sleep(0.2)
        # A connection the server refused has its error and end waiting here; one it holds has nothing to read.
        reads = [asyncio.ensure_future(reader.read()) for reader, _ in held]
        done, pending = await asyncio.wait(reads, timeout=3) if reads else (set(), set())
        for read in pending:
            read.cancel()
        count("closed by the server", sum(1 for read in done if read.exception() is None))
        for _, writer in held:
            writer.close()

    async def idle(addresses: int) -> None:
        async def hold(address: str) -> None:
            while not stop.is_set():
                try:
                    reader, writer = await asyncio.open_connection(
                        "127.0.0.1", wyoming_port, local_addr=(address, 0)
                    )
                except OSError:
                    await asyncio.sleep(0.5)
                    continue
                opened = time.monotonic()
                count("opened")
                try:
                    while not stop.is_set() and not reader.at_eof():  # idle: sends nothing
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(reader.read(65536), 0.5)
                except OSError:
                    pass
                writer.close()
                if not stop.is_set():
                    held = time.monotonic() - opened
                    count("closed by the server" if held >= 1 else "refused by the server")
                    await asyncio.sleep(0 if held >= 1 else 1.0)  # a refused one retries after a second

        slots = [f"127.0.0.{3 + a}" for a in range(addresses) for _ in range(HOGS_PER_ADDRESS)]
        await asyncio.gather(*(hold(address) for address in slots))

    resource.setrlimit(
        resource.RLIMIT_NOFILE, (CONNECTIONS + 1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    )

    async def markdown() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            while not stop.is_set():
                answer = await client.post(
                    "/v1/tts/normalize",
                    headers={"Authorization": f"Bearer {KEY_A}"},
                    json={"text": MARKDOWN_LINE},
                )
                count(f"answers {answer.status_code}")

    async def reader() -> None:
        data = _slow_pdf()

        async def one() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=600) as client:
                while not stop.is_set():
                    files = {"file": ("slow.pdf", data, "application/pdf")}
                    count(f"answers {await _submit(client, KEY_A, files=files)}")

        await asyncio.gather(*(one() for _ in range(READERS_A)))

    plain = lambda: alias([])  # noqa: E731 - the control: the same requests without dictionaries
    folding = lambda: alias(folded or [])  # noqa: E731
    attacks = {"alias": alias, "plain": plain, "markdown": markdown, "folding": folding, "flood": flood}
    attacks["reader"] = reader
    if kind in WYOMING_ATTACKS:
        asyncio.run(idle(WYOMING_ATTACKS[kind]))
    else:
        asyncio.run({**attacks, "conns": conns}[kind]())
    out.put(stats)


# ------------------------------------------------------------------------------------------------ probes
async def _first_audio(client: httpx.AsyncClient) -> float | str:
    started = time.perf_counter()
    try:
        async with client.stream(
            "POST", "/v1/tts/generate", json=REQUEST, headers={"Authorization": f"Bearer {KEY_B}"}
        ) as answer:
            if answer.status_code != 200:
                return f"HTTP {answer.status_code}"
            async for chunk in answer.aiter_raw():
                if chunk:
                    return time.perf_counter() - started
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return "no audio"


async def _wyoming_first_audio(port: int) -> float | str:
    """Home Assistant's request from its own address: connect, one `synthesize`, the first audio chunk."""
    from wyoming.error import Error
    from wyoming.event import async_read_event, async_write_event
    from wyoming.tts import Synthesize

    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(HOME_ADDRESS, 0))
    except OSError as exc:
        return type(exc).__name__
    try:
        async with asyncio.timeout(60):
            await async_write_event(Synthesize(text=str(REQUEST["text"])).event(), writer)
            while (event := await async_read_event(reader)) is not None:
                if event.type == "audio-chunk":
                    return time.perf_counter() - started
                if Error.is_type(event.type):
                    return Error.from_event(event).code or "error"
            return "closed"
    except (OSError, TimeoutError) as exc:
        return type(exc).__name__
    finally:
        writer.close()


async def _probe(
    url: str, seconds: float, wyoming_port: int | None = None, jobs: bool = False
) -> dict[str, Any]:
    """Key B's first audio over HTTP, or with `wyoming_port` Home Assistant's over Wyoming; health beside it; `jobs`:
    also B's short-PDF upload and JSON job, timed."""
    audio: list[float] = []
    health: list[float] = []
    timed: dict[str, list[float]] = {"upload": [], "json": []}
    refused: dict[str, int] = {}
    end = time.monotonic() + seconds

    async def speak() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            while time.monotonic() < end or not audio:
                got = await (
                    _first_audio(client) if wyoming_port is None else _wyoming_first_audio(wyoming_port)
                )
                if isinstance(got, float):
                    audio.append(got)
                else:
                    refused[got] = refused.get(got, 0) + 1
                    await asyncio.sleep(0.2)
                if time.monotonic() > end + 120:
                    break

    async def ask_health() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            while time.monotonic() < end:
                started = time.perf_counter()
                try:
                    ok = (await client.get("/v1/tts/health")).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    health.append(time.perf_counter() - started)
                else:
                    refused["health failed"] = refused.get("health failed", 0) + 1
                await asyncio.sleep(0.1)

    async def submit() -> None:
        pdf = _short_pdf()
        bodies: dict[str, dict[str, Any]] = {
            "upload": {"files": {"file": ("short.pdf", pdf, "application/pdf")}},
            "json": {"json": {"text": "A short job of key B."}},
        }
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            while jobs and time.monotonic() < end:
                for name, body in bodies.items():
                    started = time.perf_counter()
                    status: int | str
                    try:
                        status = await _submit(client, KEY_B, **body)
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    if status == 202:
                        timed[name].append(time.perf_counter() - started)
                    else:
                        refused[f"{name} {status}"] = refused.get(f"{name} {status}", 0) + 1
                await asyncio.sleep(0.5)

    await asyncio.gather(speak(), ask_health(), submit())
    return {"first_audio_s": audio, "health_s": health, "refused": refused, "jobs_s": timed}


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]


def _summary(probe: dict[str, Any]) -> dict[str, Any]:
    audio, health = probe["first_audio_s"], probe["health_s"]
    return {
        "first_audio_median_s": statistics.median(audio) if audio else None,
        "first_audio_p90_s": _p90(audio) if audio else None,
        "health_median_ms": statistics.median(health) * 1000 if health else None,
        "health_max_ms": max(health) * 1000 if health else None,
        "probes": len(audio),
        "refused": probe["refused"],
        **{
            f"{name}_median_s": statistics.median(times) if times else None
            for name, times in probe.get("jobs_s", {}).items()
        },
    }


def _dictionaries(url: str, name: str, rules: Any) -> list[dict[str, str]]:
    """Key A's three stored dictionaries of `rules(d)`, as request locators."""
    locators = []
    for d in range(3):
        made = httpx.post(
            f"{url}/v1/pronunciation-dictionaries/add-from-rules",
            headers={"xi-api-key": KEY_A},
            json={"name": f"{name} {d}", "rules": rules(d)},
            timeout=120,
        ).json()
        locators.append({"pronunciation_dictionary_id": made["id"], "version_id": made["version_id"]})
    return locators


def measure_tree(tree: Path, seconds: float, only: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as folder:
        wyoming_port = free_port()
        process, url = _serve(tree, Path(folder) / "server.log", wyoming_port)
        try:
            locators = _dictionaries(url, "attack", _rules)
            folded = _dictionaries(url, "folding", _variants)
            results["alone"] = _summary(asyncio.run(_probe(url, seconds / 2)))
            if any(kind in WYOMING_ATTACKS for kind in only):
                results["alone wyoming"] = _summary(asyncio.run(_probe(url, seconds / 2, wyoming_port)))
            if "reader" in only:  # B's job submissions alone, apart: its first audio alone stays without them
                timed = _summary(asyncio.run(_probe(url, seconds / 2, jobs=True)))
                results["alone"].update(
                    upload_median_s=timed["upload_median_s"], json_median_s=timed["json_median_s"]
                )
            context = multiprocessing.get_context("spawn")
            for kind in only:
                stop, out = context.Event(), context.Queue()
                attacker = context.Process(
                    target=_attack, args=(kind, url, wyoming_port, locators, stop, out, folded)
                )
                attacker.start()
                time.sleep(2.0)  # the attack under way
                probe = asyncio.run(
                    _probe(
                        url, seconds, wyoming_port if kind in WYOMING_ATTACKS else None, jobs=kind == "reader"
                    )
                )
                stop.set()
                attacker.join(timeout=180)
                if attacker.is_alive():
                    attacker.kill()
                did = out.get(timeout=5) if not out.empty() else {}
                results[kind] = {**_summary(probe), "attack": did}
                time.sleep(3.0)  # the server settles before the next attack
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    return results


def _fmt(value: float | None, scale: str = "{:.3f}") -> str:
    return "-" if value is None else scale.format(value)


def _ratio(value: float | None, alone: float | None) -> str:
    return "-" if value is None or not alone else f"{value / alone:.1f}x"


def table(result: dict[str, Any]) -> str:
    """The markdown table: per tree and attack, B's first audio (and as a ratio of B alone on that tree), health;
    for the Wyoming idle attacks Home Assistant's first audio (and as a ratio of it alone)."""
    lines = [
        "| tree | attack | B first audio median s (x alone) | p90 s (x alone) | B probes | "
        "B upload / JSON job median s (x alone) | health median ms | worst ms | refused or failed | attack did |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in result.items():
        if not isinstance(runs, dict):
            continue
        for kind, row in runs.items():
            wyoming = (
                kind in WYOMING_ATTACKS or kind == "alone wyoming"
            )  # Home Assistant's probe, its own control
            alone = runs.get("alone wyoming" if wyoming else "alone", {})
            median, p90 = row["first_audio_median_s"], row["first_audio_p90_s"]
            upload, json_job = row.get("upload_median_s"), row.get("json_median_s")
            jobs = (
                f"{_fmt(upload)} ({_ratio(upload, alone.get('upload_median_s'))}) / "
                f"{_fmt(json_job)} ({_ratio(json_job, alone.get('json_median_s'))})"
                if upload is not None or json_job is not None
                else "-"
            )
            lines.append(
                f"| {name} | {kind} | {_fmt(median)} ({_ratio(median, alone.get('first_audio_median_s'))}) | "
                f"{_fmt(p90)} ({_ratio(p90, alone.get('first_audio_p90_s'))}) | {row['probes']} | {jobs} | "
                f"{_fmt(row['health_median_ms'], '{:.1f}')} | {_fmt(row['health_max_ms'], '{:.0f}')} | "
                f"{row['refused'] or '-'} | {row.get('attack', '-')} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-tree", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--seconds", type=float, default=20.0, help="each attack's length (alone: half)")
    parser.add_argument("--only", default=",".join(ATTACKS))
    parser.add_argument("--label", default="cpu-demo")
    parser.add_argument("--table", type=Path, help="only print the table of a results file written before")
    args = parser.parse_args()
    if args.table is not None:
        print(table(json.loads(args.table.read_text())))
        return
    only = [a for a in args.only.split(",") if a]
    trees = ([("before", args.before_tree.resolve())] if args.before_tree else []) + [("after", ROOT)]
    result = {name: measure_tree(tree, args.seconds, only) for name, tree in trees}
    print("\n" + table(result))
    write_results(
        results_path("hostile_listeners", f"{args.label}.json"), {"seconds": args.seconds, **result}
    )


if __name__ == "__main__":
    main()
