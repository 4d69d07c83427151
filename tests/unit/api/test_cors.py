"""CORS: every X- header the service answers with is exposed to pages, and openai-node's request headers pass."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from api import create_app
from api.cors import ALLOWED_REQUEST_HEADERS, EXPOSED_HEADERS
from shared.settings import Settings
from tests.conftest import PROJECT_ROOT

REQUEST_ONLY = {
    "x-api-key",
    "x-admin-key",
    "x-forwarded-for",
    "x-fern-sdk-name",
}  # read from requests, never sent back
NOT_FOR_PAGES = {"x-content-type-options", "x-accel-buffering"}  # instructions to the browser or a proxy
ORIGIN = "http://app.example.test"


def headers_in_source() -> set[str]:
    names: set[str] = set()
    for folder in ("api", "services"):
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            if path.name == "cors.py":
                continue  # the lists themselves
            names.update(
                m.lower()
                for m in re.findall(
                    r"""["'b](X-[A-Za-z0-9-]*[A-Za-z0-9])["']""", path.read_text(), flags=re.IGNORECASE
                )
            )
    return names - REQUEST_ONLY - NOT_FOR_PAGES


def test_every_x_header_the_service_sends_is_exposed() -> None:
    found = headers_in_source()
    assert {"x-request-id", "x-voice", "x-sr-applied", "x-audio-seconds", "x-ratelimit-remaining"} <= found
    assert found <= {h.lower() for h in EXPOSED_HEADERS}, found - {h.lower() for h in EXPOSED_HEADERS}


def test_a_preflight_with_openai_nodes_headers_is_allowed_and_answers_expose_the_metadata(
    demo_model_dir: Path,
) -> None:
    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=False,
        warmup=False,
        log_json=False,
        cors_origins=f" {ORIGIN} , https://other.example.test",
    )
    client = TestClient(create_app(settings))
    asked = ",".join(h.lower() for h in ALLOWED_REQUEST_HEADERS)
    preflight = client.options(
        "/v1/audio/speech",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": asked,
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"x-stainless-os", "x-stainless-retry-count", "x-stainless-timeout", "authorization"} <= allowed
    refused = client.options(
        "/v1/audio/speech",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-unknown",
        },
    )
    assert refused.status_code == 400  # a header nobody sends is not waved through
    answer = client.get("/v1/tts/health", headers={"Origin": ORIGIN})
    exposed = {h.strip().lower() for h in answer.headers["access-control-expose-headers"].split(",")}
    assert {"x-request-id", "x-voice", "x-sr-applied", "x-audio-seconds", "x-ratelimit-limit"} <= exposed
    assert "access-control-allow-credentials" not in answer.headers


def test_no_origins_means_no_cors(demo_model_dir: Path) -> None:
    client = TestClient(create_app(Settings(model_dir=demo_model_dir, auth_enabled=False, warmup=False)))
    answer = client.get("/v1/tts/health", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in answer.headers
