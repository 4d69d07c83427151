"""What a flood measurement needs: a bare WebSocket client (pre-built frames written straight to a TCP socket, many
per system call, so the flooding side costs next to no CPU while the server parses every frame; a real client
library would spend more CPU per frame than the server it measures) and the server's CPU time. Used by
bench/bench_flood_cost.py, bench/bench_flood_fairness.py and tests/integration/test_flood_isolation.py."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def client_frame(payload: bytes) -> bytes:
    """One masked client text frame (a client must mask; a zero mask leaves the payload as it is)."""
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


async def handshake(
    host: str, port: int, path: str, key: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Open a connection and send the upgrade with `key` as `xi-api-key`; returns the response head as well (the
    caller checks for 101)."""
    reader, writer = await asyncio.open_connection(host, port)
    nonce = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\nxi-api-key: {key}\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
    return reader, writer, head


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload)."""
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(size)


async def read_until_close(reader: asyncio.StreamReader, errors: list[dict] | None = None) -> int | None:
    """Read the server's frames until its close; returns the close code (None: the connection just ended). Text
    frames that carry an error event go to `errors`."""
    try:
        while True:
            opcode, payload = await read_frame(reader)
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            if errors is not None and opcode == 0x1 and b"error" in payload:
                errors.append(json.loads(payload))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


async def burst(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    opener: bytes,
    batch: bytes,
    *,
    batches: int,
    frames_per_batch: int,
    keep_going: Callable[[], bool],
    wait_for_close: Callable[[], bool],
    stats: dict[str, Any],
    errors: list[dict] | None = None,
) -> int | None:
    """One flooding socket after its handshake: the opener, then up to `batches` batches while `keep_going()` and the
    server has not closed it (`stats["frames"]` counts them); then its close code, waited for 10 s while
    `wait_for_close()` (else 0.01 s), counted in `stats["close_codes"]`."""
    closed = asyncio.create_task(read_until_close(reader, errors))
    try:
        writer.write(opener)
        for _ in range(batches):
            if not keep_going() or closed.done():
                break
            writer.write(batch)
            await writer.drain()
            stats["frames"] += frames_per_batch
    except ConnectionError:
        pass
    try:
        code = await asyncio.wait_for(closed, timeout=10 if wait_for_close() else 0.01)
    except TimeoutError:
        code = None
    writer.close()
    stats["close_codes"][str(code)] = stats["close_codes"].get(str(code), 0) + 1
    return code


def server_cpu_s(pid: int, main_thread_only: bool = False) -> float:
    """CPU seconds of all of a process's threads at nanosecond resolution (Linux schedstat; /proc/PID/stat counts
    10 ms ticks, too coarse for a refused handshake). 0 where /proc is missing. `main_thread_only`: the thread
    whose id is the pid's (uvicorn's event loop)."""
    total = 0
    try:
        tasks = (
            [Path(f"/proc/{pid}/task/{pid}")]
            if main_thread_only
            else list(Path(f"/proc/{pid}/task").iterdir())
        )
    except OSError:
        return 0.0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # a thread that ended meanwhile
    return total / 1e9
