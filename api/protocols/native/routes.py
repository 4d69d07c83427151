"""`POST /v1/tts/generate`: streaming and non-streaming synthesis (JSON, or multipart/form-data with a reference
recording to clone)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import Grant, SettingsDep, Speech
from api.form_body import FormAsJsonRoute
from api.http.fields import name_ignored_fields, unknown_fields
from api.http.respond import ERROR_RESPONSES, respond
from api.protocols.native.schemas import TTSGenerateRequest

router = APIRouter(tags=["tts"], route_class=FormAsJsonRoute)


# The multipart form of the same body (FormAsJsonRoute): every JSON field as a form field, the reference as a file.
_FORM_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string"},
                        "reference_audio": {"type": "string", "format": "binary"},
                        "reference_text": {"type": "string"},
                    },
                    "additionalProperties": True,
                }
            }
        }
    }
}


@router.post(
    "/v1/tts/generate",
    responses=ERROR_RESPONSES,
    openapi_extra=_FORM_BODY,
    summary="Synthesise speech (streaming or complete file)",
)
async def generate(
    body: TTSGenerateRequest, request: Request, service: Speech, grant: Grant, settings: SettingsDep
) -> Response:
    ignored = unknown_fields(body)
    return name_ignored_fields(
        await respond(
            request,
            body.to_speech_request(settings),
            service,
            grant,
            captions=body.captions,
            how_to_stream='"stream": true',
        ),
        ignored,
    )
