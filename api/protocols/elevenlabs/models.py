"""`GET /v1/models` as ElevenLabs answers it (a JSON list of models, `client.models.list()`), for ElevenLabs' clients;
OpenAI's clients get OpenAI's list from the same path (api/protocols/openai/routes.py).

A client is ElevenLabs' when it sends its key in `xi-api-key` or names itself ElevenLabs' SDK (`User-Agent:
elevenlabs/...`, `X-Fern-SDK-Name: elevenlabs`). There is one model: every `model_id` a request names is accepted and
speaks with it."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers

from api.http.fields import MAX_TEXT_CHARS

MODEL_ID = "spark-tts"
LANGUAGES = (("en", "English"), ("zh", "Chinese"))  # what Spark-TTS was trained to speak


def is_elevenlabs_client(headers: Headers) -> bool:
    return (
        "xi-api-key" in headers
        or headers.get("x-fern-sdk-name", "").lower() == "elevenlabs"
        or headers.get("user-agent", "").lower().startswith("elevenlabs")
    )


def model_list(model_version: str) -> list[dict[str, Any]]:
    return [
        {
            "model_id": MODEL_ID,
            "name": "Spark-TTS",
            "description": f"Spark-TTS ({model_version}); any model_id a request names speaks with it.",
            "can_be_finetuned": False,
            "can_do_text_to_speech": True,
            "can_do_voice_conversion": False,
            "can_use_style": False,
            "can_use_speaker_boost": False,
            "serves_pro_voices": False,
            "token_cost_factor": 1.0,
            "requires_alpha_access": False,
            "max_characters_request_free_user": MAX_TEXT_CHARS,
            "max_characters_request_subscribed_user": MAX_TEXT_CHARS,
            "maximum_text_length_per_request": MAX_TEXT_CHARS,
            "languages": [{"language_id": code, "name": name} for code, name in LANGUAGES],
        }
    ]
