"""The Wyoming server's connection cap stays well below the process's open-file limit, and is shared per address
(api/protocols/wyoming/server.py)."""

from __future__ import annotations

import asyncio
import resource
from types import SimpleNamespace

import pytest

from api.protocols.wyoming.handler import client_group
from api.protocols.wyoming.server import WyomingServer, connection_cap
from shared.settings import Settings


@pytest.mark.parametrize(
    ("soft", "wanted", "cap"), [(1024, 64, 64), (128, 64, 32), (2, 64, 1), (resource.RLIM_INFINITY, 500, 500)]
)
def test_the_cap_leaves_three_quarters_of_the_files(
    monkeypatch: pytest.MonkeyPatch, soft: int, wanted: int, cap: int
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (soft, resource.RLIM_INFINITY))
    assert connection_cap(wanted) == cap


async def test_each_address_holds_its_share_and_one_over_the_cap_waits_for_a_slot() -> None:
    """An address holds at most half the cap, waiting connections included; one over the cap waits (the server is
    `contended` meanwhile, so idle connections close sooner) and takes the first slot given back, or is refused
    after the admission wait."""
    settings = Settings(wyoming_max_connections=4, wyoming_admission_wait_s=0.3)
    server = WyomingServer(SimpleNamespace(settings=settings))  # type: ignore[arg-type]
    tasks = [asyncio.create_task(asyncio.sleep(10)) for _ in range(6)]
    try:
        assert await server.admit(tasks[0], "10.0.0.1") is None
        assert await server.admit(tasks[1], "10.0.0.1") is None
        refused = await server.admit(tasks[2], "10.0.0.1")
        assert refused is not None and "its share" in refused.message  # 2 of 4
        assert await server.admit(tasks[2], "10.0.0.2") is None
        assert await server.admit(tasks[3], "10.0.0.3") is None
        assert not server.contended
        refused = await server.admit(tasks[4], "10.0.0.4")  # the cap, and nobody leaves
        assert refused is not None and refused.code == "TOO_MANY_CONCURRENT_REQUESTS"
        assert not server.contended and server.addresses.held("10.0.0.4") == 0
        waiter = asyncio.create_task(server.admit(tasks[4], "10.0.0.4"))
        await asyncio.sleep(0.05)
        assert server.contended and server.pressure.is_set()
        server.release(tasks[0], "10.0.0.1")
        assert await waiter is None and tasks[4] in server.connections
        assert not server.contended and not server.pressure.is_set()
        assert server.addresses.held("10.0.0.1") == 1
    finally:
        for task in tasks:
            task.cancel()


@pytest.mark.parametrize(
    ("address", "group"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # another address of the same client: the same share
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_an_ipv6_client_is_counted_by_its_slash_64(address: str, group: str) -> None:
    assert client_group(address) == group


async def test_a_connection_waiting_for_a_slot_is_refused_when_the_server_stops() -> None:
    settings = Settings(wyoming_max_connections=2, wyoming_admission_wait_s=30)
    server = WyomingServer(SimpleNamespace(settings=settings))  # type: ignore[arg-type]

    class Listener:
        async def stop(self) -> None:
            pass

    server._server = Listener()  # type: ignore[assignment]  # noqa: SLF001 - listening, as after start()
    tasks = [asyncio.create_task(asyncio.sleep(10)) for _ in range(3)]
    try:
        assert await server.admit(tasks[0], "10.0.0.1") is None
        assert await server.admit(tasks[1], "10.0.0.2") is None
        waiter = asyncio.create_task(server.admit(tasks[2], "10.0.0.3"))
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(server.stop())  # waits for the held connections (up to 10 s)
        refused = await asyncio.wait_for(waiter, 1)
        assert refused is not None and server.addresses.held("10.0.0.3") == 0 and not server.contended
        for task, address in ((tasks[0], "10.0.0.1"), (tasks[1], "10.0.0.2")):
            task.cancel()
            server.release(task, address)
        await asyncio.wait_for(stopping, 5)
    finally:
        for task in tasks:
            task.cancel()
