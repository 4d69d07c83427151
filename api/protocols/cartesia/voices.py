"""Cartesia's voice routes, as its SDK calls them (`client.voices.list()`, `client.voices.get(id)`): `GET /voices`
(the voices this key can use, paged by voice id with `starting_after` / `ending_before` and `limit`, searched by
`q`, filtered by `gender` and `is_owner`) and `GET /voices/{id}`. Refusals are in Cartesia's error shape
(errors.py).

Built-in voices are Cartesia's public voices (`is_owner` false), a key's library voices its own private ones. Each
speaks the languages Spark-TTS speaks, English first; a voice's `gender` is Cartesia's `masculine` / `feminine`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api.deps import Library, Model, OptionalVoiceCaller
from api.errors import ApiError
from api.voice_listing import all_voices, one_voice, starts_a_word
from core.voices import Voice
from services.model_status import ServingModel
from services.voice_library import Caller, VoiceLibrary, VoiceRecord

router = APIRouter(tags=["cartesia"])
MAX_PAGE = 100  # Cartesia's `limit` range is 1-100
_GENDERS = {"male": "masculine", "female": "feminine"}
_EPOCH = datetime(2025, 1, 1, tzinfo=UTC).isoformat()  # built-in voices have no creation time of their own
_LOCALES = [{"locale": "en-US", "is_native": True}, {"locale": "zh-CN", "is_native": False}]


def _builtin(voice: Voice) -> dict[str, Any]:
    return _shape(
        voice.id, voice.name, voice.description or "", _GENDERS.get(voice.gender or ""), _EPOCH, False
    )


def _custom(record: VoiceRecord) -> dict[str, Any]:
    return _shape(record.voice_id, record.name, "", None, record.created_at.isoformat(), True)


def _shape(
    voice_id: str, name: str, description: str, gender: str | None, created_at: str, own: bool
) -> dict[str, Any]:
    return {
        "id": voice_id,
        "name": name,
        "description": description,
        "tagline": "",
        "is_owner": own,
        "access": "private" if own else "public",
        "visibility": "owner" if own else "all",
        "created_at": created_at,
        "language": "en",
        "locales": _LOCALES,
        "gender": gender,
        "preview_file_url": None,
    }


async def _all_voices(
    model: ServingModel, caller: Caller | None, library: VoiceLibrary
) -> list[dict[str, Any]]:
    return await all_voices(model, caller, library, _builtin, _custom)


def _matches(voice: dict[str, Any], q: str | None) -> bool:
    """Whether `q` starts a word of the voice's name or description, or is its id (Cartesia searches those)."""
    if q is not None and " ".join(q.casefold().split()) == voice["id"].casefold():
        return True
    return starts_a_word(q, f"{voice['name']} {voice['description']}")


@router.get("/voices", summary="Cartesia: voices this key can use, paged by voice id")
async def list_voices(
    model: Model,
    caller: OptionalVoiceCaller,
    library: Library,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 10,
    starting_after: Annotated[str | None, Query(max_length=200)] = None,
    ending_before: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    gender: Literal["masculine", "feminine", "gender_neutral"] | None = None,
    is_owner: bool | None = None,
) -> JSONResponse:
    found = [
        v
        for v in await _all_voices(model, caller, library)
        if _matches(v, q)
        and (gender is None or v["gender"] == gender)
        and (is_owner is None or v["is_owner"] == is_owner)
    ]
    ids = [v["id"] for v in found]
    if starting_after is not None:
        start = _position(ids, starting_after, "starting_after") + 1
        page, more = found[start : start + limit], start + limit < len(found)
    elif ending_before is not None:
        end = _position(ids, ending_before, "ending_before")
        page, more = found[max(end - limit, 0) : end], end - limit > 0
    else:
        page, more = found[:limit], limit < len(found)
    return JSONResponse({"data": page, "has_more": more})


def _position(ids: list[str], cursor: str, param: str) -> int:
    if cursor not in ids:
        raise ApiError(
            "VALIDATION_ERROR",
            f"Invalid {param!r} {cursor!r}: pass the id of a voice from the previous page.",
            param=param,
        )
    return ids.index(cursor)


@router.get("/voices/{voice_id}", summary="Cartesia: one voice")
async def get_voice(
    voice_id: str, model: Model, caller: OptionalVoiceCaller, library: Library
) -> JSONResponse:
    return JSONResponse(await one_voice(voice_id, model, caller, library, _builtin, _custom, "id"))
