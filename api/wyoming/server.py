"""The Wyoming TCP server: started with the service when TTS_WYOMING_ENABLED is set (api/app.py's lifespan) or on
its own (`python -m api.wyoming`), on the same app state as the HTTP routes.

Wyoming has no authentication, so every connection runs as one configured key (TTS_WYOMING_API_KEY: its credits,
limits and rate apply) or, without one, unkeyed; then only a loopback address may be bound, and anything else is
refused at start-up. `describe` is answered with the built-in voices (Spark-TTS speaks English and Chinese).
"""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from wyoming.info import Attribution, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncTcpServer

from api.errors import ApiError
from api.wyoming.handler import WyomingHandler
from services.errors import ServiceError
from services.keys.records import ApiKeyRecord, anonymous_record
from shared.settings import APP_VERSION, Settings

if TYPE_CHECKING:
    from api.deps import Services

logger = logging.getLogger("api.wyoming")

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


def check_settings(settings: Settings) -> None:
    """Refuse to serve unkeyed on anything but loopback: Wyoming clients cannot send a key."""
    wyoming = settings.wyoming
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

    async def start(self) -> None:
        check_settings(self.services.settings)
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
