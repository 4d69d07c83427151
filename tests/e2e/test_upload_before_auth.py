"""Bounded before authentication, against a real uvicorn server: an upload with missing or wrong
credentials is answered before its body is read. The client sends only the headers of a 19 MiB upload and waits:
the server answers 401/403 at once (before, it waited for the body: 408 after TTS_BODY_TIMEOUT_S, or buffered
19 MiB for each of 40 such uploads and kept 0.8 GB)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.e2e.conftest import RunningServer, start_server, stop_server

KEY, ADMIN = "upload-key", "upload-admin-key"
SIZE = 19 * 2**20


@pytest.fixture(scope="module")
def auth_server(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        demo_model_dir,
        tmp_path_factory.mktemp("preauth") / "server.log",
        {
            "TTS_AUTH_ENABLED": "true",
            "TTS_API_KEYS": KEY,
            "TTS_ADMIN_KEY": ADMIN,
            "TTS_BODY_TIMEOUT_S": "3",
            "TTS_VOICE_DIR": str(tmp_path_factory.mktemp("voices")),
        },
    )
    try:
        yield running
    finally:
        stop_server(running)


def headers_only(
    server: RunningServer, credentials: str, path: str = "/v1/audio/voices", size: int = SIZE
) -> tuple[int, dict]:
    """Send the request line and headers of a multipart upload (19 MiB), no body; read the answer."""
    url = urlparse(server.base_url)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.hostname}\r\n{credentials}"
        f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {size}\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
        sock.sendall(head.encode())
        answer = b""
        while piece := sock.recv(65536):  # every refusal here ends with Connection: close
            answer += piece
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1] or b"{}")


@pytest.mark.parametrize(
    ("credentials", "status", "code"),
    [
        ("", 401, "INVALID_API_KEY"),
        ("Authorization: Bearer wrong-key\r\n", 401, "INVALID_API_KEY"),
        ("X-Admin-Key: wrong-admin\r\n", 403, "FORBIDDEN"),
    ],
    ids=["missing", "wrong-key", "wrong-admin-key"],
)
def test_an_upload_without_valid_credentials_is_refused_before_its_body(
    auth_server: RunningServer, credentials: str, status: int, code: str
) -> None:
    got, body = headers_only(auth_server, credentials)
    assert (got, body["error"]["code"]) == (status, code)


def test_an_upload_with_a_valid_key_is_read_as_before(auth_server: RunningServer) -> None:
    got, body = headers_only(auth_server, f"Authorization: Bearer {KEY}\r\n")
    assert (got, body["error"]["code"]) == (408, "REQUEST_TIMEOUT")  # it waited for the body it was promised


@pytest.mark.parametrize("path", ["/v1/tts/generate", "/v1/audio/speech", "/v1/tts/normalize"])
def test_every_route_that_needs_a_key_refuses_before_the_body(auth_server: RunningServer, path: str) -> None:
    got, body = headers_only(auth_server, "Authorization: Bearer wrong-key\r\n", path, size=900_000)
    assert (got, body["error"]["code"]) == (401, "INVALID_API_KEY")


DIALECT_ROUTES = [
    "/v1/text-to-speech/alloy",
    "/v1/text-to-speech/alloy/stream",
    "/v1/text-to-speech/alloy/with-timestamps",
    "/v1/text-to-speech/alloy/stream/with-timestamps",
    "/tts/sse",
    "/tts/bytes",
]


def dialect_code(body: dict) -> str:
    """The error code of a dialect's refusal, in its vendor's shape (api/protocols/http_errors.py)."""
    if "detail" in body:  # ElevenLabs
        return body["detail"]["code"]
    return body["error_code"]  # Cartesia


@pytest.mark.parametrize("path", DIALECT_ROUTES)
@pytest.mark.parametrize(
    "credentials",
    ["", "xi-api-key: wrong-key\r\n", "X-API-Key: wrong-key\r\n", "Authorization: Bearer wrong-key\r\n"],
    ids=["missing", "xi-api-key", "x-api-key", "bearer"],
)
def test_the_dialect_routes_refuse_before_the_body(
    auth_server: RunningServer, path: str, credentials: str
) -> None:
    """The ElevenLabs and Cartesia HTTP routes, with each of their key headers: a wrong or missing key is answered
    at once, without the 900 kB body it announced (before, the server waited for it: 408)."""
    got, body = headers_only(
        auth_server, credentials.replace("wrong-key", f"wrong-{path}"), path, size=900_000
    )
    # 429: the failed-login throttle (by address and by key) answers repeated wrong keys, also before the body.
    eleven = path.startswith("/v1/")
    refused = {
        (401, "missing_api_key" if eleven and not credentials else "invalid_api_key"),
        (429, "rate_limit_exceeded"),
    }
    assert (got, dialect_code(body)) in refused, body


@pytest.mark.parametrize(
    ("path", "credentials"),
    [("/v1/text-to-speech/alloy/stream", f"xi-api-key: {KEY}\r\n"), ("/tts/bytes", f"X-API-Key: {KEY}\r\n")],
)
def test_a_dialect_route_with_a_valid_key_reads_the_body(
    auth_server: RunningServer, path: str, credentials: str
) -> None:
    got, body = headers_only(auth_server, credentials, path, size=900_000)
    assert got == 408 and dialect_code(body) == (
        "bad_request" if path.startswith("/v1/") else "request_timeout"
    )
