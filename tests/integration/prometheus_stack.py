"""A real Prometheus and a real Pushgateway (Debian's binaries) on free loopback ports, with temporary storage.

scripts/test installs both (`prometheus`, `prometheus-pushgateway`); a missing binary fails the test that needs it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.e2e.conftest import free_port


def binary(name: str) -> str:
    path = shutil.which(name)
    assert path, (
        f"{name} is not installed: scripts/test installs it (Debian packages prometheus, prometheus-pushgateway)"
    )
    return path


@dataclass
class Daemon:
    name: str
    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _start(name: str, args: list[str], port: int, log_path: Path, timeout_s: float = 60.0) -> Daemon:
    log = open(log_path, "wb")  # noqa: SIM115 - the daemon writes it until stopped
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    daemon = Daemon(name, f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{daemon.log_tail()}")
        try:
            if httpx.get(f"{daemon.url}/-/ready", timeout=2).status_code == 200:
                return daemon
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    daemon.stop()
    raise RuntimeError(f"{name} not ready in {timeout_s}s:\n{daemon.log_tail()}")


def start_pushgateway(workdir: Path) -> Daemon:
    """In-memory gateway (no persistence file): groups live until deleted or the gateway stops."""
    port = free_port()
    args = [binary("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    return _start("pushgateway", args, port, workdir / "pushgateway.log")


def start_prometheus(workdir: Path, scrape_configs: list[dict[str, Any]], interval_s: int = 1) -> Daemon:
    port = free_port()
    config = {
        "global": {
            "scrape_interval": f"{interval_s}s",
            "scrape_timeout": f"{interval_s}s",
            "evaluation_interval": f"{interval_s}s",
        },
        "scrape_configs": scrape_configs,
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    data = workdir / "prometheus-data"
    data.mkdir(exist_ok=True)
    args = [
        binary("prometheus"),
        f"--config.file={config_path}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    return _start("prometheus", args, port, workdir / "prometheus.log")


def query(prometheus: Daemon, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query; the result vector (a scalar comes back as one unlabelled sample)."""
    params: dict[str, str] = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    body = httpx.get(f"{prometheus.url}/api/v1/query", params=params, timeout=30).json()
    assert body["status"] == "success", (expr, body)
    data = body["data"]
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    return data["result"]


def values_by(result: list[dict[str, Any]], label: str | None = None) -> dict[str, float]:
    """{label value (or "" for none): sample value}."""
    return {(r["metric"].get(label, "") if label else ""): float(r["value"][1]) for r in result}


def wait_until(predicate: Any, what: str, timeout_s: float = 90.0, every_s: float = 0.5) -> None:
    """Poll `predicate()` (Prometheus scrapes every second; a loaded machine may lag) until true."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last is True:
            return
        time.sleep(every_s)
    raise AssertionError(f"{what}: not reached in {timeout_s}s (last: {last})")
