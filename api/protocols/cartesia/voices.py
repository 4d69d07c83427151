"""Cartesia's voice routes, as its SDK reads them (`client.voices.list()`, `client.voices.get(id)`): `GET /voices`, a
cursor page (`data`, `has_more`; `limit`, `starting_after`, `ending_before`, `q`, `gender`, `is_owner`) and
`GET /voices/{id}`. Built-in voices are public, a key's library voices its own; errors in Cartesia's shape
(`errors.py`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api.deps import Library, Model, OptionalVoiceCaller
from api.errors import ApiError
from core.voices import Voice
from services.errors import voice_not_found
from services.voice_library import VoiceRecord

router = APIRouter(tags=["cartesia"])
MAX_PAGE = 100  # Cartesia's `limit` range: 1-100
_GENDERS = {"female": "feminine", "male": "masculine"}  # ours -> Cartesia's gender presentation
_BUILT_IN_AT = datetime(
    2025, 1, 1, tzinfo=UTC
).isoformat()  # built-in voices have no creation time of their own
Gender = Literal["masculine", "feminine", "gender_neutral"]


def _voice(
    voice_id: str, name: str, description: str, *, owned: bool, created_at: str, gender: str | None
) -> dict[str, Any]:
    return {
        "id": voice_id,
        "name": name,
        "description": description,
        "tagline": "",
        "is_owner": owned,
        "access": "private" if owned else "public",
        "visibility": "owner" if owned else "all",
        "created_at": created_at,
        "language": "en",
        "locales": [{"locale": "en-US", "is_native": True}],
        "gender": _GENDERS.get(gender or ""),
    }


def _builtin(voice: Voice) -> dict[str, Any]:
    return _voice(
        voice.id, voice.name, voice.description, owned=False, created_at=_BUILT_IN_AT, gender=voice.gender
    )


def _custom(record: VoiceRecord) -> dict[str, Any]:
    return _voice(
        record.voice_id, record.name, "", owned=True, created_at=record.created_at.isoformat(), gender=None
    )


def _page(
    voices: list[dict[str, Any]], limit: int, starting_after: str | None, ending_before: str | None
) -> dict[str, Any]:
    ids = [v["id"] for v in voices]
    for cursor, name in ((starting_after, "starting_after"), (ending_before, "ending_before")):
        if cursor is not None and cursor not in ids:
            raise ApiError(
                "VALIDATION_ERROR", f"Invalid '{name}': no voice '{cursor}' in this list", param=name
            )
    if ending_before is not None:
        end = ids.index(ending_before)
        return {"data": voices[max(0, end - limit) : end], "has_more": end - limit > 0}
    start = ids.index(starting_after) + 1 if starting_after is not None else 0
    return {"data": voices[start : start + limit], "has_more": start + limit < len(voices)}


@router.get("/voices", summary="Cartesia: voices this key can use, a page at a time")
async def list_voices(
    model: Model,
    caller: OptionalVoiceCaller,
    library: Library,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 10,
    starting_after: Annotated[str | None, Query(max_length=128)] = None,
    ending_before: Annotated[str | None, Query(max_length=128)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    gender: Gender | None = None,
    is_owner: bool | None = None,
) -> JSONResponse:
    builtin = [] if model.voices is None else [_builtin(v) for v in model.voices.voices.values()]
    custom = [] if caller is None else [_custom(r) for r in await library.list(caller)]
    voices = [
        v
        for v in builtin + custom
        if (not q or q.casefold() in f"{v['id']} {v['name']} {v['description']}".casefold())
        and (gender is None or v["gender"] == gender)
        and (is_owner is None or v["is_owner"] == is_owner)
    ]
    return JSONResponse(_page(voices, limit, starting_after, ending_before))


@router.get("/voices/{voice_id}", summary="Cartesia: one voice")
async def get_voice(
    voice_id: str, model: Model, caller: OptionalVoiceCaller, library: Library
) -> JSONResponse:
    if model.voices is not None and voice_id in model.voices.voices:
        return JSONResponse(_builtin(model.voices.voices[voice_id]))
    if caller is None:
        raise ApiError.from_service(voice_not_found(voice_id, "id"))
    return JSONResponse(_custom(await library.get(voice_id, caller)))
