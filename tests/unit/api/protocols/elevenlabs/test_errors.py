"""ElevenLabs' socket refusal (api/protocols/elevenlabs/errors.py) in the shape its SDK types."""

from __future__ import annotations

import json

from elevenlabs.types import TextToDialogueWebsocketError

from api.errors import ApiError
from api.protocols.elevenlabs.errors import MISSING_KEY, socket_refusal


def test_a_refusal_carries_message_error_id_and_close_code() -> None:
    body = json.loads(socket_refusal(ApiError("INVALID_API_KEY", "Invalid API key."), 1008))
    assert body == {"message": "Invalid API key.", "error": "invalid_api_key", "code": 1008}
    assert TextToDialogueWebsocketError.model_validate(body).code == 1008


def test_a_refusal_names_the_field_at_fault() -> None:
    err = ApiError("VALIDATION_ERROR", "Invalid 'output_format': unknown", param="output_format")
    body = json.loads(socket_refusal(err, 1008))
    assert body["param"] == "output_format" and body["error"] == "validation_error"


def test_a_missing_key_names_elevenlabs_headers() -> None:
    body = json.loads(socket_refusal(ApiError("INVALID_API_KEY", "No API key was sent."), 1008))
    assert body["error"] == "invalid_api_key" and body["message"] == MISSING_KEY
