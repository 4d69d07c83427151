"""/docs can authorise (security schemes in the OpenAPI schema) and /metrics carries process metrics."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api import create_app
from shared.settings import Settings


def test_openapi_declares_both_key_forms_on_the_speaking_routes() -> None:
    client = TestClient(create_app(Settings(auth_enabled=True, api_keys="k")))  # no lifespan: nothing loads
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= schemes["HTTPBearer"].items()
    assert schemes["APIKeyHeader"]["in"] == "header" and schemes["APIKeyHeader"]["name"] == "X-API-Key"
    for path in ("/v1/tts/generate", "/v1/audio/speech", "/v1/tts/normalize"):
        security = schema["paths"][path]["post"]["security"]
        assert {"HTTPBearer": []} in security and {"APIKeyHeader": []} in security, path


def test_metrics_carry_process_metrics() -> None:
    client = TestClient(create_app(Settings(auth_enabled=False, admin_key="")))
    text = client.get("/metrics").text
    assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text
    assert "python_info" in text
