"""A TCP proxy that injects database faults between the service and a real PostgreSQL (tests only).

    proxy = FaultProxy("127.0.0.1", 5432).start()   # its own event loop in a thread
    dsn = proxy.dsn(real_dsn)                        # the same DSN through the proxy
    proxy.delay_s = 0.3                              # every answer of the database arrives 300 ms late
    proxy.drop_all()                                 # every open connection is cut (mid-statement included)
    proxy.refusing = True                            # new connections are closed at once ("restarting")

The delay is on the database's answers only: a statement reaches the database and commits on time, its answer is
late, which is the window where a client that gives up loses track of a committed debit.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from urllib.parse import urlparse, urlunparse


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.delay_s = 0.0
        self.refusing = False
        self.port = 0
        self.connections = 0  # accepted so far (tests check that faults met live traffic)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def dsn(self, dsn: str) -> str:
        """`dsn` with the proxy's address in place of the database's."""
        parsed = urlparse(dsn)
        netloc = parsed.netloc.rsplit("@", 1)
        address = f"127.0.0.1:{self.port}"
        return urlunparse(parsed._replace(netloc=f"{netloc[0]}@{address}" if len(netloc) == 2 else address))

    def drop_all(self) -> None:
        """Cut every open connection now (both sides see a reset)."""
        self._loop.call_soon_threadsafe(self._close_all)

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            self._close_all()

        self._call(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coro):  # noqa: ANN001, ANN202 - run on the proxy's loop, wait for the answer
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _close_all(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((client_writer, server_writer))
        try:
            await asyncio.gather(
                self._pipe(client_reader, server_writer, delayed=False),
                self._pipe(server_reader, client_writer, delayed=True),
            )
        finally:
            for writer in (client_writer, server_writer):
                self._writers.discard(writer)
                with contextlib.suppress(Exception):
                    writer.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delayed: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if delayed and self.delay_s > 0:
                    await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()
