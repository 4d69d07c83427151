"""JSON structured logging with a request-id context variable on every line."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# The client's own X-Request-ID (api/middleware.py), on every line of its request beside the server's id.
client_request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "client_request_id", default=None
)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        client_id = client_request_id_var.get()
        if client_id is not None:
            payload["client_request_id"] = client_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key not in payload and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None) or request_id_var.get() or "-"
        base = f"{record.levelname:<7} {record.name} [{rid}] {record.getMessage()}"
        extras = {k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")}
        if extras:
            base += " " + " ".join(f"{k}={v}" for k, v in extras.items() if k != "request_id")
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return base


_SECRET_QUERY = re.compile(r"(api_key|key|token)=[^&\s\"']+", re.IGNORECASE)


class RedactSecretsFilter(logging.Filter):
    """uvicorn logs request lines with their query string; keys passed as `?api_key=` must not reach the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                _SECRET_QUERY.sub(r"\1=***", a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _SECRET_QUERY.sub(r"\1=***", record.msg)
        return True


class _DropDuplicateRejection(logging.Filter):
    """websockets logs "connection rejected (429 ...)" on uvicorn's logger for every refused handshake, after
    uvicorn's own line for it (path and status): one line per refusal is enough when a client reconnects in a loop."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "connection rejected (%d %s)"


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    """Install one stderr handler on the root logger (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_tts_handler", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else PlainFormatter())
    handler._tts_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "httpx2", "httpcore", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if (
        root.level > logging.INFO
    ):  # uvicorn sets its own loggers to INFO: a refused handshake would log two lines
        for name in ("uvicorn", "uvicorn.error"):
            logging.getLogger(name).setLevel(root.level)
    if not any(isinstance(f, _DropDuplicateRejection) for f in logging.getLogger("uvicorn.error").filters):
        logging.getLogger("uvicorn.error").addFilter(_DropDuplicateRejection())
    redact = RedactSecretsFilter()
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        target = logging.getLogger(name)
        if (
            json_lines
        ):  # uvicorn's own plain-text handlers: its lines go through the root's JSON handler instead
            for own in list(target.handlers):
                target.removeHandler(own)
            target.propagate = True
        if not any(isinstance(f, RedactSecretsFilter) for f in target.filters):
            target.addFilter(redact)
    handler.addFilter(redact)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
