"""Continuity against a real uvicorn server with curl: a request's X-Server-Request-ID is continued by the next one
(`previous_request_ids`) and its voice kept (`POST /v1/audio/voices {"from_request_id"}`); an unknown id is 404."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import RunningServer
from tests.e2e.test_generate import curl_post

pytestmark = pytest.mark.e2e


def test_curl_stitches_requests_and_keeps_a_voice(server: RunningServer, tmp_path: Path) -> None:
    def post(name: str, body: dict, path: str = "/v1/tts/generate"):
        (tmp_path / name).mkdir()
        return curl_post(server, body, tmp_path / name, path)

    first = post(
        "first", {"text": "The first part of the story.", "speaker": "default", "stream": True, "seed": 9}
    )
    assert first.status == 200
    request_id = first.headers["x-server-request-id"]
    second = post(
        "second",
        {
            "text": "And the second part.",
            "stream": True,
            "previous_request_ids": [request_id],
            "next_text": "The end.",
        },
    )
    assert second.status == 200 and len(second.body) > 44
    kept = post("kept", {"from_request_id": request_id, "name": "From curl"}, "/v1/audio/voices")
    assert kept.status == 201, kept.body
    unknown = post("unknown", {"text": "Next.", "previous_request_ids": ["f" * 32]})
    assert unknown.status == 404 and b"REQUEST_NOT_FOUND" in unknown.body
