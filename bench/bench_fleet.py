"""Two replicas behind the stand-in for Modal's router: is a stream a full replica refuses served by the other?

    export $(scripts/start_services)        # TTS_TEST_DATABASE_URL, TTS_TEST_REDIS_URL
    python -m bench fleet [--clients 8] [--hold 2] [--hold-s 4]

Two service processes on the device stand-in (`bench.standin.serve --cost-model`, the demo checkpoint), one
PostgreSQL (keys, credits, the request log) and one Redis (limits), behind `bench.standin.router` (a request goes to
the first replica with a free input slot, as Modal hands an input to a container with one). Replica A's device holds
`--hold` streams (bench/standin/fleet.py), B's is open. `--clients` streams arrive at once through the router; each
client retries a refusal after its Retry-After, twice at most (the OpenAI SDK's default), and keeps its stream for
`--hold-s`. Twice in one run, on the same replicas: the router reading each replica's input slots (the input gate:
services/deployment/input_gate.py) and ignoring them (Modal's counts without the gate). Prints, per mode, the
streams served by A and by B and those never served, A's refusals, the try that was served, and the time to first audio
(from the first try, retries included); then the key's balance against the sum of what both replicas charged.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn

from bench.harness import (
    ROOT,
    Server,
    free_port,
    keyed_postgres_env,
    spawn_server,
    standin_command,
    stop_server,
    wait_ready,
)
from bench.standin.fleet import SlotsFile
from bench.standin.router import REPLICA_HEADER, Replica, create_router

COST_MODEL = ROOT / "bench" / "cost_models" / "h200-graphs-vllm-step.json"
TEXT = " ".join(["The quick brown fox jumps over the lazy dog near the riverbank today."] * 12)
RETRIES = 2


@dataclass
class Outcome:
    replica: str | None = None  # who served it (None: never)
    tries: int = 0
    first_audio_s: float | None = None


@dataclass
class Mode:
    name: str
    outcomes: list[Outcome] = field(default_factory=list)
    refusals: int = 0


def replica_command(slots: Path, hold: int | None) -> Callable[[int], list[str]]:
    held = ["--hold-streams", str(hold)] if hold is not None else []
    return standin_command(COST_MODEL, extra=["--slots-file", str(slots), *held])


class RouterThread:
    """The router on a free loopback port, served by uvicorn in a thread."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_router(replicas), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="router", daemon=True)

    def __enter__(self) -> RouterThread:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


async def client(router: str, key: str, hold_s: float) -> Outcome:
    outcome = Outcome()
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=60) as http:
        for _ in range(1 + RETRIES):
            outcome.tries += 1
            request = http.build_request(
                "POST",
                f"{router}/v1/tts/generate",
                headers={"Authorization": f"Bearer {key}"},
                json={"text": TEXT, "stream": True},
            )
            response = await http.send(request, stream=True)
            try:
                if response.status_code == 503:
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                response.raise_for_status()
                chunks = response.aiter_bytes()
                await anext(chunks)
                outcome.first_audio_s = time.monotonic() - started
                outcome.replica = response.headers[REPLICA_HEADER]
                await asyncio.sleep(hold_s)  # a listener playing: the stream stays on its replica
                return outcome
            finally:
                await response.aclose()
    return outcome


def refusals(server: Server) -> int:
    return server.log_path.read_text(errors="replace").count('"event": "admission_refused"')


async def run_mode(mode: Mode, router: str, key: str, clients: int, hold_s: float) -> None:
    mode.outcomes = list(await asyncio.gather(*(client(router, key, hold_s) for _ in range(clients))))


async def charges(dsn: str, key_id: str, expected: int) -> tuple[int, int, int]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + 30
        while True:
            rows = await conn.fetch("SELECT credits_charged FROM tts_requests WHERE key_id = $1", key_id)
            if len(rows) >= expected or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        balance = await conn.fetchval("SELECT credit_balance FROM api_keys WHERE key_id = $1", key_id)
    finally:
        await conn.close()
    return len(rows), sum(r["credits_charged"] or 0 for r in rows), balance


async def create_key(dsn: str, balance: int) -> tuple[str, str]:
    from services.access import PostgresKeyStore

    store = PostgresKeyStore(dsn)
    try:
        raw, record = await store.create_key(
            "bench-fleet",
            key_id=f"bench-fleet-{uuid.uuid4().hex[:10]}",
            credit_balance=balance,
            max_concurrent=1000,
        )
    finally:
        await store.close()
    return raw, record.key_id


def table(modes: list[Mode]) -> str:
    lines = [
        "| router | served by A | served by B | never served | A's refusals | served on try 1 / 2 / 3 | first audio p50 / max (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in modes:
        got = [o for o in mode.outcomes if o.replica is not None]
        firsts = [o.first_audio_s for o in got if o.first_audio_s is not None]
        timing = f"{statistics.median(firsts):.2f} / {max(firsts):.2f}" if firsts else "-"
        lines.append(
            f"| {mode.name} | {sum(o.replica == 'a' for o in got)} | {sum(o.replica == 'b' for o in got)} | "
            f"{len(mode.outcomes) - len(got)} | {mode.refusals} | {' / '.join(str(sum(o.tries == t for o in got)) for t in (1, 2, 3))} | {timing} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--hold", type=int, default=2, help="streams replica A's device holds")
    parser.add_argument("--hold-s", type=float, default=4.0, help="seconds each client keeps its stream")
    args = parser.parse_args(argv)
    import os

    redis_url = os.environ.get("TTS_TEST_REDIS_URL")
    if not redis_url:
        sys.exit("TTS_TEST_REDIS_URL is not set (export $(scripts/start_services))")
    dsn, env = keyed_postgres_env(
        TTS_REDIS_URL=redis_url, TTS_REQUEST_LOG_SINK="postgres", TTS_LOG_JSON="true"
    )
    env["TTS_LOG_LEVEL"] = "INFO"  # admission's refusals, counted from the log
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    slots = {name: SlotsFile(work / f"{name}.slots") for name in ("a", "b")}
    holds = {"a": args.hold, "b": None}
    servers = {
        name: spawn_server(
            replica_command(slots[name].path, holds[name]),
            {
                **env,
                "TTS_REQUEST_LOG_SPOOL_DIR": str(work / f"spool-{name}"),
                "TTS_JOBS_DIR": str(work / "jobs"),
            },
            work / f"{name}.log",
        )
        for name in ("a", "b")
    }
    try:
        wait_ready(list(servers.values()))
        key, key_id = asyncio.run(create_key(dsn, 1_000_000))
        modes = []
        for name, gated in (("reads input slots (gate)", True), ("ignores them (no gate)", False)):
            replicas = [Replica(n, servers[n].url, slots[n] if gated else None) for n in ("a", "b")]
            mode = Mode(name)
            before = refusals(servers["a"])
            with RouterThread(replicas) as router:
                asyncio.run(run_mode(mode, router.url, key, args.clients, args.hold_s))
            mode.refusals = refusals(servers["a"]) - before
            modes.append(mode)
            time.sleep(2.0)  # the held streams over, A's gate open again
        print(
            f"{args.clients} streams at once through the router; A holds {args.hold}, B is open; "
            f"each client retries a 503 after Retry-After, {RETRIES} times at most\n"
        )
        print(table(modes))
        served = sum(o.replica is not None for m in modes for o in m.outcomes)
        rows, charged, balance = asyncio.run(charges(dsn, key_id, served))
        print(
            f"\ncredits across both replicas: {rows} requests logged, {charged} charged, balance "
            f"{balance} = 1,000,000 - {1_000_000 - balance} ({'holds' if balance == 1_000_000 - charged else 'BROKEN'})"
        )
    finally:
        for server in servers.values():
            stop_server(server)


if __name__ == "__main__":
    main()
