"""The stand-in for Modal's router in front of local replicas (the two-replica test, `bench.bench_fleet`).

    python -m bench.standin.router --port 8000 a=http://127.0.0.1:8001,var/a.slots b=http://127.0.0.1:8002,var/b.slots

Modal routes each input once, to a container with a free input slot, and holds it in the function's queue while
none has one. This does the same for HTTP requests: a request goes to the first replica (in the order given) whose
requests under way through here are fewer than its slots (the number its input gate keeps in its slots file:
bench/standin/fleet.py); while none has room it waits, up to `queue_timeout_s`, then answers 503. It never retries a
request a replica answered (Modal does not either): the client's retry is a new request. Each response names the
replica that served it in `X-Fleet-Replica`. HTTP only (no WebSocket), for loopback use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bench.standin.fleet import SlotsFile

# Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy sets itself.
DROPPED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection", "host"}
)
REPLICA_HEADER = "X-Fleet-Replica"


@dataclass
class Replica:
    name: str
    url: str
    slots: SlotsFile | None = None
    open_slots: int = 256
    in_flight: int = 0
    served: int = field(default=0)

    def has_room(self) -> bool:
        limit = self.slots.read(self.open_slots) if self.slots is not None else self.open_slots
        return self.in_flight < limit


def parse_replica(spec: str) -> Replica:
    """`NAME=URL[,SLOTS_FILE]`."""
    name, _, rest = spec.partition("=")
    url, _, slots = rest.partition(",")
    if not name or not url:
        raise ValueError(f"{spec!r}: expected NAME=URL[,SLOTS_FILE]")
    return Replica(name, url.rstrip("/"), SlotsFile(slots) if slots else None)


def create_router(
    replicas: Sequence[Replica], *, queue_timeout_s: float = 30.0, poll_s: float = 0.02
) -> Starlette:
    client = httpx.AsyncClient(timeout=httpx.Timeout(None), limits=httpx.Limits(max_connections=None))

    async def pick() -> Replica | None:
        deadline = time.monotonic() + queue_timeout_s
        while True:
            for replica in replicas:
                if replica.has_room():
                    return replica
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(poll_s)

    async def forward(request: Request) -> Response:
        body = await request.body()
        replica = await pick()
        if replica is None:
            return JSONResponse(
                {
                    "error": {
                        "code": "SERVER_OVERLOADED",
                        "message": "no replica had room within the queue timeout",
                    }
                },
                status_code=503,
                headers={"Retry-After": "1"},
            )
        replica.in_flight += 1
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in DROPPED]
        url = f"{replica.url}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
        try:
            upstream = await client.send(
                client.build_request(request.method, url, headers=headers, content=body), stream=True
            )
        except BaseException:
            replica.in_flight -= 1
            raise
        replica.served += 1

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                await upstream.aclose()
                replica.in_flight -= 1

        out = {k: v for k, v in upstream.headers.items() if k.lower() not in DROPPED}
        out[REPLICA_HEADER] = replica.name
        return StreamingResponse(relay(), status_code=upstream.status_code, headers=out)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    app = Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)
    app.state.replicas = replicas
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("replicas", nargs="+", help="NAME=URL[,SLOTS_FILE], in routing order")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--queue-timeout-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    import uvicorn

    replicas = [parse_replica(spec) for spec in args.replicas]
    for replica in replicas:
        if replica.slots is not None and not Path(replica.slots.path).parent.exists():
            parser.error(f"{replica.slots.path}: no such directory")
    app: Any = create_router(replicas, queue_timeout_s=args.queue_timeout_s)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False)


if __name__ == "__main__":
    main()
