"""Another key's first audio under each flood, as ratios of its own baseline: the timing side of fairness between
keys (the behaviour is tested: tests/unit/services/device/test_fair_share_floods.py and test_admission_share.py,
tests/unit/api/test_socket_guard.py).

    export $(scripts/start_services)   # the test PostgreSQL: keys and credits as in production
    python -m bench flood_fairness [--seconds 30] [--label NAME] [--cost-model bench/cost_models/h100-tf32.json]

A real uvicorn server (bench/harness.py: the demo checkpoint on CPU with the service's HTTP protocol as
scripts/serve runs it, or with `--cost-model` the device stand-in with admission on; keys in PostgreSQL, credits on,
8 sockets per key). Key B makes one short one-shot request on our socket after another, `--gap` seconds apart (a
conversation's turns), and times its first audio; key A (or a client with wrong keys) floods from a process of its own
(its own interpreter and GIL). Per flood, B is measured alone for half of `--seconds` (the flood not started), then
under the flood for `--seconds`:

  message     A's 8 sockets each send their opener and "-" frames as fast as they can, reconnecting whenever the
              server closes one (the message budget, 1008) or refuses its handshake (the cool-down, 429).
  synthesis   A's 4 ElevenLabs sockets each run a loop inside every per-key limit (the server allows 60,000
              requests a minute per key here): a context with one character, flush, close_context, wait for
              isFinal, again.
  handshake   16 connections at a time upgrade on our socket with a wrong key, read the 401, close, again.
  burn        the control (not run by default): the flooding process spins on one core and sends nothing, so B's
              ratio under it is what the machine's contention alone costs (no work for the server).

Prints per flood B's first-audio median and p90 under the flood over alone (ratios), B's refusals, and what the
flood did; writes bench/results/flood_fairness/<label>.json (docs/benchmarks.md quotes the table). Timings on a
shared machine move with its other load: the ratios are for comparing runs on one machine, not for a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import flood_client  # noqa: E402
from bench.flood_client import client_frame  # noqa: E402
from bench.harness import (  # noqa: E402
    app_command,
    keyed_postgres_env,
    results_path,
    standin_command,
    start_server,
    stop_server,
    write_results,
)

REQUEST = {
    "text": "Hello there, this is key B.",
    "speaker": "fixed",
    "seed": 1,
    "format": "pcm",
    "max_tokens": 60,
}
EL_PATH = "/v1/text-to-speech/fixed/multi-stream-input?output_format=pcm_16000"
WRONG_KEY_PATH = "/v1/tts/ws?api_key=sk-not-a-key"  # refused 401 before the upgrade
SOCKETS_PER_KEY = 8
# Requests a minute per key on the bench server: a high plan, so that the synthesis flood's loop is all synthesis
# (at the default 60 a minute nearly all of its contexts are refused RATE_LIMIT_EXCEEDED at once).
RATE_LIMIT_PER_MINUTE = 60_000
FRAMES_PER_SOCKET = 5_000
BATCH = 250
SYNTH_SOCKETS = 4
HANDSHAKE_CONCURRENCY = 16
FLOODS = ("message", "synthesis", "handshake")
CONTROL = "burn"
# Key B's pause between requests: a conversation's turns are seconds apart, so B uses a small share of the engine.
# Back to back (0), B alone saturates the engine itself, and an equal share under a flood halves its speed by design.
GAP_S = 0.5


async def _message_socket(port: int, key: str, stop: Any, stats: dict) -> None:
    opener = client_frame(json.dumps({"text": " ", "context_id": "f"}).encode())
    batch = client_frame(json.dumps({"text": "-", "context_id": "f"}).encode()) * BATCH
    while not stop.is_set():
        try:
            reader, writer, head = await flood_client.handshake("127.0.0.1", port, EL_PATH, key)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            stats["failed_handshakes"] += 1
            await asyncio.sleep(0.1)
            continue
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            stats["refused_handshakes"] += 1  # the cool-down or the per-key cap: try again soon
            await asyncio.sleep(0.1)
            continue
        stats["connections"] += 1
        going = lambda: not stop.is_set()  # noqa: E731
        await flood_client.burst(
            reader,
            writer,
            opener,
            batch,
            batches=FRAMES_PER_SOCKET // BATCH,
            frames_per_batch=BATCH,
            keep_going=going,
            wait_for_close=going,
            stats=stats,
        )


async def _synthesis_socket(port: int, key: str, stop: Any, stats: dict, index: int) -> None:
    while not stop.is_set():
        try:
            reader, writer, head = await flood_client.handshake("127.0.0.1", port, EL_PATH, key)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            stats["failed_handshakes"] += 1
            await asyncio.sleep(0.1)
            continue
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            stats["refused_handshakes"] += 1
            await asyncio.sleep(0.1)
            continue
        stats["connections"] += 1
        try:
            n = 0
            while not stop.is_set():
                cid = f"s{index}-{n}"
                n += 1
                for message in (
                    {"text": " ", "context_id": cid},
                    {"text": "a", "context_id": cid, "flush": True},
                    {"context_id": cid, "close_context": True},
                ):
                    writer.write(client_frame(json.dumps(message).encode()))
                await writer.drain()
                error = None
                while True:
                    opcode, payload = await asyncio.wait_for(flood_client.read_frame(reader), timeout=30)
                    if opcode == 0x8:
                        raise ConnectionError("closed by the server")
                    if opcode == 0x1 and b'"error"' in payload:
                        error = str(json.loads(payload).get("code", "?"))
                    if opcode == 0x1 and b'"isFinal":true' in payload.replace(b" ", b""):
                        break
                if error is None:
                    stats["contexts"] += 1  # spoken
                else:
                    stats["errors"][error] = stats["errors"].get(error, 0) + 1
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        writer.close()


async def _handshake_loop(port: int, stop: Any, stats: dict) -> None:
    while not stop.is_set():
        try:
            reader, writer, head = await flood_client.handshake(
                "127.0.0.1", port, WRONG_KEY_PATH, "sk-not-a-key"
            )
            status = head.split(b" ", 2)[1].decode()
            await reader.read()  # the server closes after its answer
            writer.close()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, IndexError):
            status = "failed"
        stats["statuses"][status] = stats["statuses"].get(status, 0) + 1


def _flood(kind: str, port: int, key: str, stop: Any, results: Any) -> None:
    """The flooding process: `kind`'s tasks until the parent sets `stop`; puts its counts on `results`."""

    async def main() -> dict:
        stats: dict[str, Any] = {
            "connections": 0,
            "frames": 0,
            "contexts": 0,
            "refused_handshakes": 0,
            "failed_handshakes": 0,
            "close_codes": {},
            "errors": {},
            "statuses": {},
        }
        if kind == CONTROL:
            spins = 0
            while not stop.is_set():
                for _ in range(100_000):
                    spins += 1
            return {"spins": spins}
        if kind == "message":
            tasks = [_message_socket(port, key, stop, stats) for _ in range(SOCKETS_PER_KEY)]
        elif kind == "synthesis":
            tasks = [_synthesis_socket(port, key, stop, stats, i) for i in range(SYNTH_SOCKETS)]
        else:
            tasks = [_handshake_loop(port, stop, stats) for _ in range(HANDSHAKE_CONCURRENCY)]
        await asyncio.gather(*tasks)
        return {k: v for k, v in stats.items() if v}

    results.put(asyncio.run(main()))


async def _first_audio_s(url: str, key: str) -> float | str:
    """Seconds from opening the connection to the first audio of one short one-shot request; the error code when
    the request was refused."""
    from websockets.asyncio.client import connect

    started = time.perf_counter()
    async with connect(url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=60) as ws:
        await ws.send(json.dumps(REQUEST))
        while True:
            message = await asyncio.wait_for(ws.recv(), timeout=120)
            if isinstance(message, bytes):
                return time.perf_counter() - started
            event = json.loads(message)
            if event.get("type") == "error":
                return str(event.get("error", {}).get("code", "error"))


def _measure(url: str, key: str, seconds: float, gap_s: float = 0.0) -> tuple[list[float], dict[str, int]]:
    """B's requests one after another for `seconds`, `gap_s` apart: first-audio times, and refusals by code."""

    async def main() -> tuple[list[float], dict[str, int]]:
        times: list[float] = []
        refused: dict[str, int] = {}
        end = time.monotonic() + seconds
        while time.monotonic() < end or len(times) < 3:
            try:
                got = await _first_audio_s(url, key)
            except Exception as exc:  # noqa: BLE001 - a handshake refused or a connection cut: counted, not fatal
                got = type(exc).__name__
            if isinstance(got, float):
                times.append(got)
                await asyncio.sleep(gap_s)
            else:
                refused[got] = refused.get(got, 0) + 1
                await asyncio.sleep(0.2)
        return times, refused

    return asyncio.run(main())


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]


def served_command(port: int) -> list[str]:
    """The app as scripts/serve runs it: uvicorn with the service's HTTP protocol (api/http_protocol.py)."""
    return [*app_command(port), "--http", "api.http_protocol:HeadDeadline"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="current")
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="each flood's length (the baseline: half)"
    )
    parser.add_argument(
        "--only",
        default=",".join(FLOODS),
        help=f"floods to run, comma-separated (also {CONTROL!r}: the control, a process that only burns CPU)",
    )
    parser.add_argument(
        "--cost-model",
        default=None,
        help="serve on the device stand-in with this cost model (bench/cost_models/h100-tf32.json), "
        "admission on; default: the demo engine on CPU",
    )
    parser.add_argument(
        "--gap",
        type=float,
        default=GAP_S,
        help="seconds key B waits between its requests (0: back to back, B itself saturates the engine)",
    )
    args = parser.parse_args()
    from tests.integration.conftest import create_credit_key

    dsn, env = keyed_postgres_env(
        TTS_WS_MAX_CONNECTIONS_PER_KEY=str(SOCKETS_PER_KEY),
        TTS_RATE_LIMIT_PER_MINUTE=str(RATE_LIMIT_PER_MINUTE),
        **({"TTS_ADMISSION": "on"} if args.cost_model else {}),
    )
    command = standin_command(args.cost_model) if args.cost_model else served_command
    server = start_server(command, env, Path(tempfile.mkdtemp(prefix="fairness-bench-")) / "server.log")
    native = server.url.replace("http://", "ws://") + "/v1/tts/ws"
    rows: list[dict[str, Any]] = []
    ctx = multiprocessing.get_context("spawn")
    try:
        key_b = create_credit_key(dsn, "fairness-b", credit_balance=100_000_000)[0]
        _measure(native, key_b, 1.0)  # warm: the voice, the key cache, the code paths
        for kind in [k for k in args.only.split(",") if k]:
            key_a = create_credit_key(dsn, f"fairness-{kind}", credit_balance=100_000_000)[0]
            alone, alone_refused = _measure(native, key_b, args.seconds / 2, args.gap)
            stop, results = ctx.Event(), ctx.Queue()
            flood = ctx.Process(target=_flood, args=(kind, server.port, key_a, stop, results), daemon=True)
            flood.start()
            time.sleep(1.0)  # the flooding process's interpreter starts
            under, under_refused = _measure(native, key_b, args.seconds, args.gap)
            stop.set()
            stats = results.get(timeout=60)
            flood.join(timeout=30)
            time.sleep(2.0)  # the server finishes the flood's last sockets
            row = {
                "flood": kind,
                "alone_s": alone,
                "under_s": under,
                "alone_refused": alone_refused,
                "under_refused": under_refused,
                "flood_stats": stats,
                "median_alone_s": statistics.median(alone),
                "median_under_s": statistics.median(under),
                "p90_alone_s": _p90(alone),
                "p90_under_s": _p90(under),
            }
            row["median_ratio"] = row["median_under_s"] / row["median_alone_s"]
            row["p90_ratio"] = row["p90_under_s"] / row["p90_alone_s"]
            rows.append(row)
            print(
                f"{kind}: B alone n={len(alone)} median {row['median_alone_s']:.3f} p90 {row['p90_alone_s']:.3f}; "
                f"under n={len(under)} median {row['median_under_s']:.3f} p90 {row['p90_under_s']:.3f}; "
                f"flood {stats}",
                flush=True,
            )
    finally:
        stop_server(server)
    write_results(
        results_path("flood_fairness", f"{args.label}.json"),
        {
            "label": args.label,
            "seconds": args.seconds,
            "gap_s": args.gap,
            "cpus": os.cpu_count(),
            "server": f"device stand-in ({args.cost_model})" if args.cost_model else "demo engine on CPU",
            "floods": rows,
        },
    )
    print(
        f"\n{args.label}: key B's first audio (our socket, one-shot) under each flood over B alone, "
        f"{args.seconds:g} s per flood, B's requests {args.gap:g} s apart"
    )
    print(
        "| flood | B alone median / p90 | B under the flood median / p90 | median ratio | p90 ratio | B refused | "
        "the flood |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['flood']} | {row['median_alone_s']:.3f} / {row['p90_alone_s']:.3f} s | "
            f"{row['median_under_s']:.3f} / {row['p90_under_s']:.3f} s | {row['median_ratio']:.2f}x | "
            f"{row['p90_ratio']:.2f}x | {sum(row['under_refused'].values())} of "
            f"{len(row['under_s']) + sum(row['under_refused'].values())} | {_flood_summary(row['flood_stats'])} |"
        )


def _flood_summary(stats: dict[str, Any]) -> str:
    parts = [f"{k.replace('_', ' ')} {v}" for k, v in stats.items() if isinstance(v, int)]
    parts += [f"{k.replace('_', ' ')} {v}" for k, v in stats.items() if isinstance(v, dict)]
    return "; ".join(parts).replace("|", "/")


if __name__ == "__main__":
    main()
