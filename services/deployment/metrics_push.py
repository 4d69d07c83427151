"""Push this process's metrics to a Prometheus Pushgateway: fleet-correct numbers on Modal.

Prometheus scraping the Modal URL reaches one random container per scrape, so the counters of different containers
interleave and every rate() is wrong. With TTS_METRICS_PUSH_URL set, each process PUTs its whole registry to the
gateway every TTS_METRICS_PUSH_INTERVAL_S under its own group (job, instance = the Modal task id); Prometheus scrapes
the gateway with `honor_labels: true`, so it keeps one series per container and the dashboard sums them. At shutdown
the process pushes once more, leaves that push up TTS_METRICS_PUSH_LINGER_S for a scrape, then deletes its group so a
stopped container is no longer summed as live. A process killed without that (SIGKILL) leaves its group behind: the
alert TTSMetricsPushGroupStale and the dashboard's gauge filter read the gateway's `push_time_seconds` for it
(deploy/RUNBOOK.md §5).

HTTP goes through prometheus_client's own push_to_gateway / delete_from_gateway, in one daemon thread (urllib
blocks): a gateway that is down or slow never delays a request. Failures are counted
(veena3_tts_metrics_push_failures_total{operation}) and logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import (
    basic_auth_handler,
    default_handler,
    delete_from_gateway,
    push_to_gateway,
)

from services.usage.request_spool import instance_name
from shared import metrics
from shared.settings import Settings

logger = logging.getLogger("services.deployment.metrics_push")

PUSH_TIMEOUT_S = 5.0  # one HTTP call; a hung gateway only delays the next push
LOG_EVERY_S = 60.0  # a gateway outage logs one line a minute, not one per push


@dataclass(frozen=True)
class PushTarget:
    """Where and as what this process pushes. `url` carries no credentials (it may be logged)."""

    url: str
    job: str
    instance: str
    interval_s: float
    linger_s: float
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PushTarget | None:
        """None when pushing is off (TTS_METRICS_PUSH_URL empty). Raises ValueError on a URL that is not http(s),
        without repeating it (it may hold a password)."""
        raw = settings.deployment.metrics_push_url.strip()
        if not raw:
            return None
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "TTS_METRICS_PUSH_URL must look like http(s)://[user:password@]host[:port][/prefix]"
            )
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = f"{host}:{parts.port}" if parts.port else host
        return cls(
            url=urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")),
            job=settings.deployment.metrics_push_job,
            instance=settings.deployment.metrics_push_instance.strip() or instance_name(),
            interval_s=settings.deployment.metrics_push_interval_s,
            linger_s=settings.deployment.metrics_push_linger_s,
            username=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )


class MetricsPusher:
    """Pushes `registry` to one gateway group on a thread; `close` ends with a final push and a delete."""

    def __init__(
        self,
        target: PushTarget,
        registry: CollectorRegistry = metrics.REGISTRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self._registry = registry
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = threading.Lock()  # one call at a time: the final push must not race a periodic one
        self._closing = threading.Lock()
        self._closed = False
        self._last_logged: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MetricsPusher | None:
        target = PushTarget.from_settings(settings)
        return None if target is None else cls(target)

    # ------------------------------------------------------------------ one HTTP call each
    def push(self) -> bool:
        """PUT the whole registry (the group's previous series are replaced). True when the gateway took it."""
        return self._call(
            "push",
            lambda: push_to_gateway(
                self.target.url,
                self.target.job,
                self._registry,
                grouping_key={"instance": self.target.instance},
                timeout=PUSH_TIMEOUT_S,
                handler=self._handler,
            ),
        )

    def delete(self) -> bool:
        """DELETE this process's group, so it is no longer summed as a live container."""
        return self._call(
            "delete",
            lambda: delete_from_gateway(
                self.target.url,
                self.target.job,
                grouping_key={"instance": self.target.instance},
                timeout=PUSH_TIMEOUT_S,
                handler=self._handler,
            ),
        )

    def _handler(
        self, url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        if self.target.username is None:
            return default_handler(url, method, timeout, headers, data)
        return basic_auth_handler(
            url, method, timeout, headers, data, self.target.username, self.target.password
        )

    def _call(self, operation: str, call: Callable[[], None]) -> bool:
        with self._http:
            try:
                call()
            except Exception as exc:  # noqa: BLE001 - metrics must never fail the service; counted and logged
                metrics.METRICS_PUSH_FAILURES.labels(operation).inc()
                now = self._clock()
                if self._last_logged is None or now - self._last_logged >= LOG_EVERY_S:
                    self._last_logged = now
                    logger.warning(
                        "metrics push failed",
                        extra={
                            "operation": operation,
                            "gateway": self.target.url,
                            "error": f"{type(exc).__name__}: {exc}",
                        },
                    )
                return False
        return True

    # ------------------------------------------------------------------ lifetime
    def start(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name="metrics-push", daemon=True)
            self._thread.start()
            logger.info(
                "pushing metrics",
                extra={
                    "gateway": self.target.url,
                    "job": self.target.job,
                    "instance": self.target.instance,
                    "interval_s": self.target.interval_s,
                },
            )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.push()
            self._stop.wait(self.target.interval_s)

    def close(self) -> None:
        """Stop the thread, push once more, let it linger for a scrape, delete the group. Blocking; idempotent (the
        app's lifespan and Modal's exit both call it)."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=PUSH_TIMEOUT_S + 1.0)
        if self.push() and self.target.linger_s > 0:
            time.sleep(self.target.linger_s)
        deleted = self.delete()
        logger.info(
            "metrics push stopped", extra={"instance": self.target.instance, "group_deleted": deleted}
        )

    async def aclose(self) -> None:
        """`close` off the event loop."""
        await asyncio.to_thread(self.close)
