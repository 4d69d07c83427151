"""The Wyoming TCP server: started with the service when TTS_WYOMING_ENABLED is set (api/app.py's lifespan) or on
its own (`python -m api.protocols.wyoming`), on the same app state as the HTTP routes.

Wyoming has no authentication, so every connection runs as one configured key (TTS_WYOMING_API_KEY: its credits,
limits and rate apply) or, without one, unkeyed; then only a loopback address may be bound, and anything else is
refused at start-up. `describe` is answered with the built-in voices (Spark-TTS speaks English and Chinese).

As every listener: connections are capped (TTS_WYOMING_MAX_CONNECTIONS, at most a quarter of the open-file limit, so
HTTP health and keyed requests always find a socket) and shared per address (TTS_WYOMING_MAX_CONNECTIONS_PER_ADDRESS,
at most half the cap, so one client never holds every slot); a connection over the cap waits a little
(TTS_WYOMING_ADMISSION_WAIT_S) while idle connections are closed sooner (TTS_WYOMING_CONTENDED_IDLE_TIMEOUT_S
instead of the sockets' idle timeout), so idle sockets cannot lock a client out. Events are budgeted as the WebSocket
dialects' messages (TTS_WS_MESSAGES_PER_S, TTS_WS_MESSAGE_BURST, TTS_WS_MESSAGE_CHARS_PER_S) per connection, per
address (a part of the key's bucket) and, as one key's, for all connections together; a connection over its budget
gets an error event and is closed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import logging
import resource
import time
from typing import TYPE_CHECKING, Any

from wyoming.info import Attribution, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncTcpServer

from api.errors import ApiError
from api.protocols.wyoming.handler import WyomingHandler
from api.socket_guard import KEY_BURST_CONNECTIONS
from services.access.socket_limits import AddressSlots, KeyBuckets, MessageLimiter, TokenBucket
from services.errors import ServiceError
from services.keys.records import ApiKeyRecord, AuthError, anonymous_record
from shared.settings import APP_VERSION, Settings

if TYPE_CHECKING:
    from api.deps import Services

logger = logging.getLogger("api.wyoming")  # the name logs have always carried

LANGUAGES = ["en", "zh"]  # what Spark-TTS was trained to speak, whichever voice
ATTRIBUTION = Attribution(name="SparkAudio", url="https://github.com/SparkAudio/Spark-TTS")


class WyomingConfigError(RuntimeError):
    """The Wyoming settings cannot be served as given (said at start-up)."""


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any address


# How long an address whose connection went over its event budget waits before it may connect again: a flooder that
# reconnects at once would otherwise get a fresh burst of events each time. Bounded memory: MAX_COOLING_ADDRESSES.
FLOOD_COOLDOWN_S = 2.0
MAX_COOLING_ADDRESSES = 4096


def connection_cap(wanted: int) -> int:
    """`wanted`, but at most a quarter of the process's open-file limit: the rest stays for HTTP, files, models."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return wanted if soft == resource.RLIM_INFINITY else max(1, min(wanted, soft // 4))


def check_settings(settings: Settings) -> None:
    """Refuse to serve unkeyed on anything but loopback: Wyoming clients cannot send a key. A key with auth off is
    not checked (every connection runs unkeyed), so it does not count."""
    wyoming = settings.wyoming
    if wyoming.wyoming_api_key and not settings.access.auth_enabled and not is_loopback(wyoming.wyoming_host):
        raise WyomingConfigError(
            f"TTS_WYOMING_HOST={wyoming.wyoming_host} with TTS_AUTH_ENABLED=false: TTS_WYOMING_API_KEY is not "
            "checked without authentication, so every Wyoming connection would run unkeyed on a public address. "
            "Turn authentication on, or set TTS_WYOMING_HOST=127.0.0.1."
        )
    if not wyoming.wyoming_api_key and not is_loopback(wyoming.wyoming_host):
        raise WyomingConfigError(
            f"TTS_WYOMING_HOST={wyoming.wyoming_host} without TTS_WYOMING_API_KEY: the Wyoming protocol has no "
            "authentication, so without a key the server binds only a loopback address (127.0.0.1, ::1). Set "
            "TTS_WYOMING_API_KEY to the API key its requests run as, or TTS_WYOMING_HOST=127.0.0.1."
        )


class WyomingServer:
    """The listening socket and its connections, on one app's `Services`."""

    def __init__(self, services: Services) -> None:
        self.services = services
        settings = services.settings.wyoming
        self.host, self.port = settings.wyoming_host, settings.wyoming_port
        self.rate: int = settings.wyoming_sample_rate
        self._server: AsyncTcpServer | None = None
        self.connections: set[asyncio.Task[Any]] = set()  # each connection's task (WyomingHandler.run)
        self._zeroconf: Any = None
        self.max_connections = connection_cap(settings.wyoming_max_connections)
        self._cooling: dict[str, float] = {}  # address -> when it may connect again (after a flood)
        # Each address's share of the cap (never more than half, so one client cannot hold every slot).
        self.addresses = AddressSlots(
            max(1, min(settings.wyoming_max_connections_per_address, self.max_connections // 2))
        )
        self.waiting = 0  # connections waiting for a slot (`_wait_for_slot`)
        self.pressure = asyncio.Event()  # set while any wait: idle connections are closed sooner
        self._freed = asyncio.Event()  # a slot was given back
        self._stopping = False
        self.contended_idle_s = settings.wyoming_contended_idle_timeout_s
        ws = services.settings.websocket
        # Every connection runs as the one key: the key's message bucket of the WebSocket dialects, shared by all
        # (api/socket_guard.py), so reconnecting or flooding on many connections buys no more than one key may.
        self.messages = (
            TokenBucket(
                ws.ws_messages_per_s * max(1, ws.ws_max_connections_per_key),
                ws.ws_message_burst * KEY_BURST_CONNECTIONS,
            )
            if ws.ws_messages_per_s > 0
            else None
        )
        # Each address's part of it: half its rate and one connection's burst, so no one address's flood empties
        # the bucket the other clients (Home Assistant) need; kept across its reconnects.
        self.address_messages = (
            KeyBuckets(self.messages.rate / 2, ws.ws_message_burst, capacity=MAX_COOLING_ADDRESSES)
            if self.messages is not None
            else None
        )

    async def admit(self, task: asyncio.Task[Any], address: str | None) -> ApiError | None:
        """Take a slot for `task` (None) or say why not: its address flooded a connection moments ago, holds its
        share, or the server holds its cap for longer than the admission wait (idle connections are closed sooner
        meanwhile: `contended`). A slot taken is given back with `release`."""
        until = self._cooling.get(address) if address is not None else None
        if address is not None and until is not None:
            left = until - time.monotonic()
            if left > 0:
                return ApiError(
                    "RATE_LIMIT_EXCEEDED",
                    f"This address's last connection went over its event budget; connect again in {left:.1f} s.",
                )
            del self._cooling[address]
        # The address's share counts its waiting connections too: an address holds at most its share of sockets.
        if address is not None and not self.addresses.enter(address):
            return ApiError(
                "TOO_MANY_CONCURRENT_REQUESTS",
                f"This address holds {self.addresses.cap} Wyoming connections, its share of the server's "
                f"{self.max_connections}; close one or try again later.",
            )
        try:
            if len(self.connections) >= self.max_connections and not await self._wait_for_slot():
                if address is not None:
                    self.addresses.leave(address)
                return ApiError(
                    "TOO_MANY_CONCURRENT_REQUESTS",
                    f"{self.max_connections} Wyoming connections are open on this server; close one or try again "
                    "later.",
                )
        except BaseException:  # cancelled while waiting (the server stopping)
            if address is not None:
                self.addresses.leave(address)
            raise
        self.connections.add(task)  # no await since the count was checked
        return None

    def release(self, task: asyncio.Task[Any], address: str | None) -> None:
        self.connections.discard(task)
        if address is not None:
            self.addresses.leave(address)
        self._freed.set()

    @property
    def contended(self) -> bool:
        """A connection waits for a slot: idle ones are closed after the contended idle timeout."""
        return self.waiting > 0

    async def _wait_for_slot(self) -> bool:
        """Wait up to the admission wait for a free slot (True). At most as many wait as the cap; the rest are
        refused at once."""
        wait_s = self.services.settings.wyoming.wyoming_admission_wait_s
        if wait_s <= 0 or self.waiting >= self.max_connections:
            return False
        self.waiting += 1
        self.pressure.set()  # idle watchers switch to the contended timeout
        try:
            async with asyncio.timeout(wait_s):
                while len(self.connections) >= self.max_connections and not self._stopping:
                    self._freed.clear()
                    await self._freed.wait()
            return not self._stopping  # the server stopping takes no one in
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1
            if not self.waiting:
                self.pressure.clear()

    def cool(self, address: str | None) -> None:
        """`address` flooded its connection: it may not connect again for FLOOD_COOLDOWN_S (an attacker reconnects)."""
        if address is None:
            return
        now = time.monotonic()
        if len(self._cooling) >= MAX_COOLING_ADDRESSES:  # bounded: expired ones go first, then the oldest
            self._cooling = {a: t for a, t in self._cooling.items() if t > now}
            while len(self._cooling) >= MAX_COOLING_ADDRESSES:
                self._cooling.pop(next(iter(self._cooling)))
        self._cooling[address] = now + FLOOD_COOLDOWN_S

    def message_limiter(self, address: str | None = None) -> MessageLimiter:
        """One connection's event budget, as a WebSocket connection's (text counts as characters), beside its
        address's part of the shared bucket and the shared bucket itself."""
        ws = self.services.settings.websocket
        return MessageLimiter(
            messages_per_s=ws.ws_messages_per_s,
            message_burst=ws.ws_message_burst,
            chars_per_s=ws.ws_message_chars_per_s,
            max_chars=self.services.settings.limits.max_text_chars,
            key_bucket=self.messages,
            address_bucket=(
                self.address_messages.of(address)
                if self.address_messages is not None and address is not None
                else None
            ),
        )

    async def start(self) -> None:
        check_settings(self.services.settings)
        await (
            self.check_key()
        )  # again for `python -m api.protocols.wyoming` (twice with the app: a cached lookup)
        self._server = AsyncTcpServer(self.host, self.port)
        await self._server.start(self._handler)
        logger.info("wyoming server listening on %s:%s", self.host, self.port)
        if self.services.settings.wyoming.wyoming_zeroconf:
            await self._announce()

    async def stop(self) -> None:
        """Stop listening, end every connection (their utterances are stopped and settled) and wait for them."""
        if self._server is None:
            return
        server, self._server = self._server, None
        self._stopping = True
        self._freed.set()  # connections waiting for a slot are refused now
        await server.stop()
        if self.connections:
            await asyncio.wait(set(self.connections), timeout=10)
        if self._zeroconf is not None:
            try:
                await self._zeroconf.async_close()
            except Exception:  # noqa: BLE001 - shutting down either way
                logger.warning("zeroconf did not close cleanly", exc_info=True)
            self._zeroconf = None

    def _handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> WyomingHandler:
        return WyomingHandler(self, reader, writer)

    async def check_key(self) -> None:
        """Called by the app's start-up before anything starts. Refuse to start (WyomingConfigError, with the key store's reason) when the configured key is unknown,
        revoked, suspended or expired: every connection would be refused while the server listened and health said
        healthy. A key store unreachable now is only warned of: it may be back by the first connection."""
        access = self.services.access
        raw = self.services.settings.wyoming.wyoming_api_key
        if not raw or access.authenticator is None:
            return
        try:
            await access.authenticator.authenticate(raw)
        except AuthError as exc:
            if exc.status >= 500:
                logger.warning("the Wyoming key could not be checked at start-up: %s", exc.message)
                return
            raise WyomingConfigError(
                f"TTS_WYOMING_API_KEY is refused by the key store ({exc.code}: {exc.message}): every Wyoming "
                "connection would be refused. Set it to an active key of this service."
            ) from None

    async def key(self, address: str | None) -> ApiKeyRecord:
        """The key a connection runs as: the configured key, checked like any API key, or none (loopback only)."""
        access = self.services.access
        raw = self.services.settings.wyoming.wyoming_api_key
        if not raw or access.authenticator is None:
            return anonymous_record()
        try:
            return await access.authenticate({"authorization": f"Bearer {raw}"}, address)
        except ServiceError as exc:
            raise ApiError.from_service(exc) from None

    def info(self) -> Info:
        """`describe`'s answer: one TTS program with the built-in voices, streaming supported."""
        registry = self.services.model.voices
        voices = [] if registry is None else list(registry.voices.values())
        return Info(
            tts=[
                TtsProgram(
                    name="spark-tts",
                    description="Spark-TTS streaming text-to-speech",
                    attribution=ATTRIBUTION,
                    installed=True,
                    version=APP_VERSION,
                    voices=[
                        TtsVoice(
                            name=voice.id,
                            description=voice.description or voice.name,
                            attribution=ATTRIBUTION,
                            installed=True,
                            version=None,
                            languages=list(LANGUAGES),
                        )
                        for voice in voices
                    ],
                    supports_synthesize_streaming=True,
                )
            ]
        )

    async def _announce(self) -> None:
        """mDNS announcement for Home Assistant's discovery: `_wyoming._tcp.local.`, named by this machine's MAC
        address as wyoming's own servers are. Optional (the `zeroconf` package); a failure to announce is a warning."""
        if importlib.util.find_spec("zeroconf") is None:
            logger.warning(
                "TTS_WYOMING_ZEROCONF is set but the zeroconf package is not installed; not announced"
            )
            return
        from wyoming.zeroconf import HomeAssistantZeroconf
        from zeroconf import Error as ZeroconfError

        # wyoming's helper announces one IPv4 address: the bound one, or on a wildcard bind the one with a route
        # to the mDNS group.
        host = {"0.0.0.0": None, "::": None, "": None, "localhost": "127.0.0.1"}.get(self.host, self.host)
        try:
            zeroconf = HomeAssistantZeroconf(port=self.port, host=host)
            self._zeroconf = zeroconf._aiozc  # noqa: SLF001 - the package offers no close of its own
            await zeroconf.register_server()
        except (OSError, ZeroconfError) as exc:  # no IPv4 address or socket, or the name is taken
            logger.warning("wyoming server not announced over zeroconf: %s", exc)
            return
        logger.info(
            "wyoming server announced over zeroconf as %s on %s:%s", zeroconf.name, zeroconf.host, self.port
        )
