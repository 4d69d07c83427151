"""ElevenLabs' voice routes: `GET /v1/voices` (every voice this key can use), `GET /v1/voices/{voice_id}` and
`GET /v2/voices` (searched, filtered, sorted and paged as ElevenLabs' SDK asks: `client.voices.search()`).

Built-in voices are ElevenLabs' `premade` ("default" voice type), a key's library voices its `cloned` ("personal").
`next_page_token` is the position of the page's first voice in the filtered list; a token that is not one, like
any parameter value ElevenLabs does not define, is refused in ElevenLabs' error shape."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api.deps import Library, Model, OptionalVoiceCaller
from api.errors import ApiError
from api.voice_listing import all_voices, one_voice, starts_a_word
from core.voices import Voice
from services.model_status import ServingModel
from services.voice_library import Caller, VoiceLibrary, VoiceRecord

router = APIRouter(tags=["elevenlabs"])
MAX_PAGE = 100  # ElevenLabs' page_size limit
VoiceType = Literal["default", "personal", "workspace", "non-default", "non-community", "saved", "community"]
VOICE_TYPES: dict[
    str, tuple[str, ...]
] = {  # ElevenLabs' voice_type -> the categories it takes (the rest: library copies, workspaces)
    "default": ("premade",),
    "personal": ("cloned",),
    "workspace": ("cloned",),
    "non-default": ("cloned",),
    "non-community": ("cloned",),
    "saved": ("cloned",),
    "community": (),
}


def _builtin(voice: Voice) -> dict[str, Any]:
    labels = {"gender": voice.gender} if voice.gender else {}
    return {
        "voice_id": voice.id,
        "name": voice.name,
        "category": "premade",
        "labels": {**labels, "pitch": voice.pitch, "speed": voice.speed},
        "description": voice.description or None,
        "settings": None,
        "is_owner": False,
        "created_at_unix": None,
    }


def _custom(record: VoiceRecord) -> dict[str, Any]:
    return {
        "voice_id": record.voice_id,
        "name": record.name,
        "category": "cloned",
        "labels": {},
        "description": None,
        "settings": None,
        "is_owner": True,
        "created_at_unix": int(record.created_at.timestamp()),
    }


async def _all_voices(
    model: ServingModel, caller: Caller | None, library: VoiceLibrary
) -> list[dict[str, Any]]:
    return await all_voices(model, caller, library, _builtin, _custom)


@router.get("/v1/voices", summary="ElevenLabs: voices this key can use")
async def voices(model: Model, caller: OptionalVoiceCaller, library: Library) -> JSONResponse:
    return JSONResponse({"voices": await _all_voices(model, caller, library)})


@router.get("/v1/voices/{voice_id}", summary="ElevenLabs: one voice")
async def voice(voice_id: str, model: Model, caller: OptionalVoiceCaller, library: Library) -> JSONResponse:
    return JSONResponse(await one_voice(voice_id, model, caller, library, _builtin, _custom, "voice_id"))


def _matches(voice: dict[str, Any], search: str | None) -> bool:
    """Whether the search term starts a word of the voice's name, description, category or labels: "male" finds
    "Male, low pitch" and not "female"; "fem" finds "female"."""
    fields = [voice["name"], voice["description"] or "", voice["category"], *voice["labels"].values()]
    return starts_a_word(search, " ".join(fields))


@router.get("/v2/voices", summary="ElevenLabs: voices searched, filtered, sorted and paged")
async def search_voices(
    model: Model,
    caller: OptionalVoiceCaller,
    library: Library,
    search: Annotated[str | None, Query(max_length=200)] = None,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 10,
    next_page_token: Annotated[str | None, Query(max_length=20)] = None,
    sort: Literal["created_at_unix", "name"] | None = None,
    sort_direction: Literal["asc", "desc"] | None = None,
    voice_type: VoiceType | None = None,
    category: Literal["premade", "cloned", "generated", "professional"] | None = None,
    gender: Annotated[str | None, Query(max_length=40)] = None,
    voice_ids: Annotated[list[str] | None, Query(max_length=MAX_PAGE)] = None,
    include_total_count: bool = True,  # accepted: the count is always there (the SDK's model requires it)
) -> JSONResponse:
    found = [
        v
        for v in await _all_voices(model, caller, library)
        if _matches(v, search)
        and (voice_type is None or v["category"] in VOICE_TYPES[voice_type])
        and (category is None or v["category"] == category)
        and (gender is None or v["labels"].get("gender") == gender.lower())
        and (not voice_ids or v["voice_id"] in voice_ids)
    ]
    if sort is not None:
        newest_first = (sort_direction or ("desc" if sort == "created_at_unix" else "asc")) == "desc"
        found.sort(
            key=lambda v: v["name"].casefold() if sort == "name" else v["created_at_unix"] or 0,
            reverse=newest_first,
        )
    start = _position(next_page_token, len(found))
    page = found[start : start + page_size]
    more = start + page_size < len(found)
    return JSONResponse(
        {
            "voices": page,
            "has_more": more,
            "total_count": len(found),
            "next_page_token": str(start + page_size) if more else None,
        }
    )


def _position(token: str | None, count: int) -> int:
    if token is None:
        return 0
    # ASCII digits only: "²".isdigit() is true and int("²") raises (a 500 before).
    if not (token.isascii() and token.isdigit()) or int(token) >= max(count, 1):
        raise ApiError(
            "VALIDATION_ERROR",
            f"Invalid 'next_page_token' {token!r}: pass the next_page_token of the previous page.",
            param="next_page_token",
        )
    return int(token)
