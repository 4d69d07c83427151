"""What a flooding WebSocket client costs the server, in server CPU (tests/integration/test_flood_isolation.py).

    export $(scripts/start_services)   # the test PostgreSQL: keys and credits as in production
    .venv/bin/python bench/bench_flood_cost.py [--label NAME] [--handshakes N] [--sockets N]

A real uvicorn server (bench/harness.py: the demo checkpoint on CPU, the service's HTTP protocol as scripts/serve
runs it, keys in PostgreSQL, credits on, the test's per-key cap) and a raw-socket client that writes pre-built
frames as the test's flood does. Server CPU is read from /proc around each phase, minus the idle server's own CPU
over the same wall time:

  1. burst: a fresh key's socket sends its opener and 900 "-" frames (inside the 1,000-message burst): CPU per
     accepted message.
  2. flood: a fresh key's socket sends 5,000 frames as fast as it can (the test's socket): CPU for the whole socket
     until the server closed it (1008), and per frame sent.
  3. refused: that key now cools down; N handshakes, 200 at a time, each refused (429): the event loop thread's CPU
     per refusal (all of a refusal's work runs there).
  4. wrong key: handshakes on our socket with a wrong key until the address's failed-key limit answers 429 (the
     first ones 401), then N more, 200 at a time, each refused 429: the event loop thread's CPU per refusal (a
     wrong-key flood).

Writes bench/results/flood_cost/<label>.json and prints the table (docs/benchmarks.md quotes it).
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

from bench import flood_client  # noqa: E402
from bench.flood_client import client_frame, read_until_close, server_cpu_s  # noqa: E402
from bench.harness import app_command, keyed_postgres_env, start_server, stop_server  # noqa: E402
from tests.integration.conftest import create_credit_key  # noqa: E402

PATH = "/v1/text-to-speech/fixed/multi-stream-input?output_format=pcm_16000"
WRONG_KEY_PATH = "/v1/tts/ws?api_key=sk-not-a-key"
BURST_FRAMES = 900
AT_ONCE = 200  # refused handshakes at a time (--handshakes: a multiple of it; under the per-address cap)
FLOOD_FRAMES = 5_000
BATCH = 250


OPENER = client_frame(json.dumps({"text": " ", "context_id": "f"}).encode())
DASH = client_frame(json.dumps({"text": "-", "context_id": "f"}).encode())


class Meter:
    """Server CPU over a phase, less the idle server's CPU rate over the same wall time; `event_loop`: the event
    loop's thread only (a refused handshake's whole cost, measured apart from the idle threads' noise)."""

    def __init__(self, pid: int, event_loop: bool = False) -> None:
        self.pid = pid
        self.event_loop = event_loop
        self.idle_rate = 0.0

    def cpu(self) -> float:
        return server_cpu_s(self.pid, main_thread_only=self.event_loop)

    def calibrate(self, seconds: float = 2.0) -> None:
        c0, t0 = self.cpu(), time.monotonic()
        time.sleep(seconds)
        self.idle_rate = (self.cpu() - c0) / (time.monotonic() - t0)

    async def quiet(self, settle_s: float = 0.3) -> None:
        """Wait until the server has stopped working (its CPU no longer moves beyond idle)."""
        last = self.cpu()
        while True:
            await asyncio.sleep(settle_s)
            now = self.cpu()
            if now - last <= self.idle_rate * settle_s + 0.002:
                return
            last = now


async def handshake(port: int, key: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    return await flood_client.handshake("127.0.0.1", port, PATH, key)


async def burst(port: int, key: str, meter: Meter) -> float:
    """CPU per accepted message (the socket stays inside its burst)."""
    reader, writer, head = await handshake(port, key)
    assert head.startswith(b"HTTP/1.1 101"), head
    await meter.quiet()
    t0, c0 = time.monotonic(), meter.cpu()
    writer.write(OPENER + DASH * BURST_FRAMES)
    await writer.drain()
    await meter.quiet()
    used = meter.cpu() - c0 - meter.idle_rate * (time.monotonic() - t0)
    writer.close()
    return used / (BURST_FRAMES + 1)


async def flood(port: int, key: str, meter: Meter) -> tuple[float, int, int | None]:
    """CPU for one flooding socket from its handshake until the server is done with it; frames written; close code."""
    await meter.quiet()
    t0, c0 = time.monotonic(), meter.cpu()
    reader, writer, head = await handshake(port, key)
    assert head.startswith(b"HTTP/1.1 101"), head
    closed = asyncio.create_task(read_until_close(reader))
    sent = 0
    batch = DASH * BATCH
    try:
        writer.write(OPENER)
        while sent < FLOOD_FRAMES and not closed.done():
            writer.write(batch)
            await writer.drain()
            sent += BATCH
    except ConnectionError:
        pass
    code = await asyncio.wait_for(closed, timeout=20)
    writer.close()
    await meter.quiet()
    used = meter.cpu() - c0 - meter.idle_rate * (time.monotonic() - t0)
    return used, sent, code


async def refused(port: int, key: str, meter: Meter, count: int) -> tuple[float, str]:
    """CPU per refused handshake of a cooling key, one after another."""
    await meter.quiet()
    t0, c0 = time.monotonic(), meter.cpu()
    statuses: list[str] = []

    async def one() -> None:
        reader, writer, head = await handshake(port, key)
        statuses.append(head.split(b"\r\n", 1)[0].decode())
        await reader.read()  # the server closes the connection after its answer
        writer.close()

    for _ in range(0, count, AT_ONCE):  # the server holds each answer (api/http_protocol.py REFUSAL_HOLD_S)
        await asyncio.gather(*(one() for _ in range(AT_ONCE)))
    status = statuses[-1]
    await meter.quiet()
    used = meter.cpu() - c0 - meter.idle_rate * (time.monotonic() - t0)
    return used / count, status


async def wrong_key(port: int, meter: Meter, count: int) -> tuple[float, int, str]:
    """CPU per refused wrong-key handshake once the address is throttled; the 401s before the throttle."""
    answered_401 = 0

    async def one() -> str:
        reader, writer, head = await flood_client.handshake("127.0.0.1", port, WRONG_KEY_PATH, "sk-not-a-key")
        await reader.read()  # the server closes the connection after its answer
        writer.close()
        return head.split(b"\r\n", 1)[0].decode()

    status = await one()
    while " 401 " in status + " " and answered_401 < 1_000:
        answered_401 += 1
        status = await one()
    await meter.quiet()
    t0, c0 = time.monotonic(), meter.cpu()
    for _ in range(0, count, AT_ONCE):
        status = (await asyncio.gather(*(one() for _ in range(AT_ONCE))))[-1]
    await meter.quiet()
    used = meter.cpu() - c0 - meter.idle_rate * (time.monotonic() - t0)
    return used / count, answered_401, status


def served_command(port: int) -> list[str]:
    """The app as scripts/serve runs it: uvicorn with the service's HTTP protocol (api/http_protocol.py)."""
    return [*app_command(port), "--http", "api.http_protocol:HeadDeadline"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="current")
    parser.add_argument("--handshakes", type=int, default=400)
    parser.add_argument(
        "--sockets", type=int, default=5, help="flooding sockets (fresh keys), one after another"
    )
    args = parser.parse_args()
    dsn, env = keyed_postgres_env(TTS_WS_MAX_CONNECTIONS_PER_KEY="8")
    log = Path(tempfile.mkdtemp(prefix="flood-bench-")) / "server.log"
    server = start_server(served_command, env, log)
    port = server.port
    meter, loop_meter = Meter(server.process.pid), Meter(server.process.pid, event_loop=True)
    try:
        meter.calibrate()
        loop_meter.calibrate()
        keys = [
            create_credit_key(dsn, "flood-bench", credit_balance=100_000_000)[0]
            for _ in range(2 * args.sockets)
        ]

        async def run() -> dict:
            await burst(port, keys[-1], meter)  # warm: the key cache, the code paths
            per_message = [await burst(port, keys[args.sockets + i], meter) for i in range(args.sockets - 1)]
            floods = [await flood(port, keys[i], meter) for i in range(args.sockets)]
            per_refusal, status = await refused(port, keys[0], loop_meter, args.handshakes)
            per_wrong, answered_401, wrong_status = await wrong_key(port, loop_meter, args.handshakes)
            return {
                "per_refused_wrong_key_ms": 1e3 * per_wrong,
                "wrong_key_401s": answered_401,
                "wrong_key_status": wrong_status,
                "per_accepted_message_ms": [1e3 * x for x in per_message],
                "flood_socket_ms": [1e3 * f[0] for f in floods],
                "flood_frames_sent": [f[1] for f in floods],
                "flood_close_codes": [f[2] for f in floods],
                "per_refused_handshake_ms": 1e3 * per_refusal,
                "refusal_status": status,
            }

        result = asyncio.run(run())
    finally:
        stop_server(server)
    result.update({"label": args.label, "idle_cpu_share": meter.idle_rate, "handshakes": args.handshakes})
    out = ROOT / "bench" / "results" / "flood_cost" / f"{args.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    per_frame = [ms / n for ms, n in zip(result["flood_socket_ms"], result["flood_frames_sent"], strict=True)]
    print(f"\n{args.label}: server CPU (idle server's {meter.idle_rate:.1%} of a core subtracted)")
    print("| what | server CPU |")
    print("|---|---|")
    print(
        f"| accepted message (inside the burst) | {statistics.median(result['per_accepted_message_ms']):.3f} ms |"
    )
    print(
        f"| flooding socket, handshake to close ({statistics.median(result['flood_frames_sent']):.0f} frames "
        f"sent, close {result['flood_close_codes']}) | {statistics.median(result['flood_socket_ms']):.0f} ms "
        f"({statistics.median(per_frame):.3f} ms per frame sent) |"
    )
    print(
        f"| refused handshake of a cooling key ({result['refusal_status']}; the event loop's thread) | "
        f"{result['per_refused_handshake_ms']:.3f} ms |"
    )
    print(
        f"| refused wrong-key handshake past the address's limit ({result['wrong_key_status']}; "
        f"{result['wrong_key_401s']} answered 401 first; the event loop's thread) | "
        f"{result['per_refused_wrong_key_ms']:.3f} ms |"
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
