"""The voice library: `POST /v1/audio/voices` (a reference recording as multipart, an exported voice as JSON, or the
voice of a recent synthesis as JSON `{"from_request_id", "name"}`),
`GET /v1/audio/voices` (built-in voices and the caller's custom ones), `GET` and `DELETE /v1/audio/voices/{id}`.

A custom voice is visible only to the API key that made it (others get 404); `X-Admin-Key` sees and deletes all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from api.client_gone import until_client_leaves
from api.delivery import Delivery
from api.deps import Grant, Library, Model, OptionalVoiceCaller, RecentRequests, Speech, VoiceCallerDep
from api.errors import ApiError
from api.http.respond import arrival_of
from api.voice_schemas import (
    AUDIO_FIELD,
    VoiceDesign,
    VoiceFromRequest,
    VoiceImport,
    VoiceUpload,
    VoiceView,
)
from core.clone import ReferenceTokens
from processing.voice_description import VoiceAttributes
from services.access.entrance import open_accounted
from services.continuity import Continuity
from services.pipeline.speech import SpeechRequest
from services.pipeline.synthesis import NATIVE_RATE, SamplingOptions
from services.voice_library import VoiceLibrary, VoiceRecord

router = APIRouter(tags=["voices"])
MAX_PAGE = 100

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad field or reference audio (not audio, too short or long, silent)"},
    401: {"description": "Missing or invalid API key"},
    404: {"description": "No such voice for this key"},
    413: {"description": "Upload too large"},
    415: {"description": "Unsupported audio codec or body type"},
    501: {"description": "This checkpoint cannot encode references (import still works)"},
}
_CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [AUDIO_FIELD, "name"],
                    "properties": {
                        AUDIO_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "1-30 s reference recording",
                        },
                        **VoiceUpload.model_json_schema()["properties"],
                    },
                }
            },
            "application/json": {
                "schema": {"anyOf": [VoiceImport.model_json_schema(), VoiceFromRequest.model_json_schema()]}
            },
        },
    }
}


@router.post(
    "/v1/audio/voices",
    status_code=201,
    responses=ERRORS,
    openapi_extra=_CREATE_BODY,
    summary="Create a custom voice from a reference recording (multipart) or import one (JSON)",
)
async def create_voice(
    request: Request, caller: VoiceCallerDep, library: Library, recent: RecentRequests
) -> JSONResponse:
    if caller.key_id is None:
        raise ApiError(
            "FORBIDDEN",
            "A voice belongs to the API key that creates it: send an API key "
            "(Authorization: Bearer), not only the admin key.",
            status=403,
        )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in (
        "multipart/form-data",
        "application/x-www-form-urlencoded",
    ):  # the latter lacks the file
        if caller.check_balance is not None:
            await caller.check_balance()  # before the upload is decoded or encoded
        upload, audio = await VoiceUpload.read(request)
        # A client that hangs up while its recording waits for the encoder or is encoded gives its slot back.
        record = await until_client_leaves(
            request.receive, library.create(upload.to_new_voice(), audio, caller.key_id)
        )
    elif content_type == "application/json" and (
        kept := VoiceFromRequest.parse(body := await request.body())
    ):
        record = await keep_voice(kept, caller.key_id, recent, library)
    elif content_type == "application/json":
        imported = VoiceImport.parse(body)
        record = await library.import_voice(
            imported.to_new_voice(),
            imported.tokens(),
            caller.key_id,
            reference_seconds=imported.reference_seconds,
            audio_sha256=imported.audio_sha256,
        )
    else:
        raise ApiError(
            "UNSUPPORTED_MEDIA_TYPE",
            f"Invalid 'Content-Type': {content_type or 'none'}; send "
            f"multipart/form-data (file '{AUDIO_FIELD}', 'name', optional 'transcript' and 'consent') or "
            "application/json (an exported voice with 'global_tokens').",
            param="Content-Type",
        )
    return JSONResponse(
        VoiceView.of(record, admin=caller.admin).to_json(),
        status_code=201,
        headers={"Location": f"/v1/audio/voices/{record.voice_id}"},
    )


async def keep_voice(
    kept: VoiceFromRequest, key_id: str, recent: Continuity | None, library: VoiceLibrary
) -> VoiceRecord:
    """A voice from a recent synthesis of this key: exactly its 32 global tokens (404 for another key's request)."""
    if recent is None:
        raise ApiError(
            "VALIDATION_ERROR",
            "Invalid 'from_request_id': this server keeps no recent requests.",
            param="from_request_id",
        )
    tokens = await recent.keep_voice_tokens(kept.from_request_id, key_id)
    return await library.import_voice(kept.to_new_voice(), ReferenceTokens(global_tokens=tokens), key_id)


@router.post(
    "/v1/audio/voices/design",
    status_code=201,
    responses=ERRORS,
    summary="Create a custom voice from gender, pitch and speed labels (generated once, then kept)",
)
async def design_voice(
    body: VoiceDesign, request: Request, grant: Grant, library: Library, speech: Speech
) -> Response:
    """One controllable generation of `text` in the labelled voice; its 32 global tokens become the voice, so every
    later request in it sounds the same (a clone prompt with exactly those tokens). The generation is a speech
    request: its credits are reserved before it and debited after, with its request-log row (one money model,
    services/usage/accounting.py); a key without credits, or already keeping its most voices, is refused first."""
    if grant.key_id is None:
        raise ApiError(
            "FORBIDDEN",
            "A voice belongs to the API key that creates it: send an API key (Authorization: Bearer).",
            status=403,
        )
    asked = SpeechRequest(
        text=body.text,
        voice=None,
        voice_attributes=VoiceAttributes(body.gender, body.pitch, body.speed_level),
        audio_format="pcm",
        sample_rate=NATIVE_RATE,
        sampling=SamplingOptions.with_defaults(speech.settings, seed=body.seed),
        stream=False,
    )
    # Room for the voice is held from before the generation until it is kept: designs at once at the voice cap
    # generate (and charge) only as many as there is room for.
    release_room: Callable[[], None] | None = None

    async def before_generation() -> (
        None
    ):  # a key without credits, or without room for a voice, generates nothing
        nonlocal release_room
        await grant.check_balance()
        release_room = await library.hold_room(grant.key_id)

    try:
        accounted = await open_accounted(
            speech,
            asked,
            grant,
            arrival_of(request),
            buffered=True,
            first=before_generation,
        )
        delivery = Delivery.of(accounted, speech, headers={})
        made = await delivery.complete_response(
            request.receive
        )  # settled (debit, request-log row) as speech is
        if made.status_code != 200:
            return made  # the client left: the generation stopped and was settled as a hang-up
        tokens = accounted.job.global_tokens
        if tokens is None:
            raise ApiError(
                "GENERATION_FAILED",
                "The model did not produce a voice for this text; try another text or seed.",
            )
        record = await library.import_voice(
            body.to_new_voice(), ReferenceTokens(global_tokens=tokens), grant.key_id, holding=True
        )
    finally:
        if release_room is not None:
            release_room()
    return JSONResponse(
        VoiceView.of(record, admin=False).to_json(),
        status_code=201,
        headers={"Location": f"/v1/audio/voices/{record.voice_id}", **grant.headers},
    )


@router.get(
    "/v1/audio/voices", summary="Voices this key can use: built-in and its custom voices, a page at a time"
)
async def list_voices(
    model: Model,
    caller: OptionalVoiceCaller,
    library: Library,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="custom voices per page")] = MAX_PAGE,
    after: Annotated[str | None, Query(description="the previous page's next_after")] = None,
) -> JSONResponse:
    # Built-in voices come with the first page only; custom voices page oldest first.
    builtin = [] if model.voices is None or after else [{**v, "type": "builtin"} for v in model.voices.list()]
    custom, next_after = (
        ([], None) if caller is None else await library.page(caller, limit=limit, after=after)
    )
    admin = caller is not None and caller.admin
    return JSONResponse(
        {
            "voices": builtin + [VoiceView.of(r, admin=admin).listed() for r in custom],
            "next_after": next_after,
            "default": None if model.voices is None else model.voices.default_voice_id,
        }
    )


@router.get(
    "/v1/audio/voices/{voice_id}", responses=ERRORS, summary="One custom voice, with its tokens (export)"
)
async def get_voice(voice_id: str, caller: VoiceCallerDep, library: Library) -> JSONResponse:
    record = await library.get(voice_id, caller)
    return JSONResponse(VoiceView.of(record, admin=caller.admin).to_json())


@router.delete(
    "/v1/audio/voices/{voice_id}", status_code=204, responses=ERRORS, summary="Delete a custom voice"
)
async def delete_voice(voice_id: str, caller: VoiceCallerDep, library: Library) -> Response:
    await library.delete(voice_id, caller)
    return Response(status_code=204)
