"""ElevenLabs' pronunciation dictionary routes (services/pronunciation): `POST /v1/pronunciation-dictionaries/
add-from-rules` and `.../add-from-file` (a PLS file), `GET /v1/pronunciation-dictionaries` and `.../{id}`,
`GET .../{id}/{version_id}/download` (the PLS file), and `DELETE .../{id}`. Answers in ElevenLabs' field names,
errors in its shape (`requests.py:http_error`). The key (or the admin, every key's) from the usual headers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from api.deps import VoiceCallerDep, services_of
from api.errors import ApiError
from processing.lexicon import AliasRule
from services.pronunciation import PronunciationDictionaries
from services.pronunciation.dictionaries import Owner
from services.pronunciation.records import MAX_PLS_BYTES, MAX_RULES, PHONEME_REFUSAL, checked_rule

router = APIRouter(tags=["elevenlabs"])
PREFIX = "/v1/pronunciation-dictionaries"


async def _dictionaries(request: Request) -> PronunciationDictionaries:
    dictionaries = services_of(request).dictionaries
    if dictionaries is None:
        raise ApiError("NOT_FOUND", "This server keeps no pronunciation dictionaries.")
    return dictionaries


Dictionaries = Annotated[PronunciationDictionaries, Depends(_dictionaries)]


class RuleBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["alias", "phoneme"]
    string_to_replace: str = Field(..., min_length=1)
    alias: str | None = None
    phoneme: str | None = None
    alphabet: str | None = None
    case_sensitive: bool = True
    word_boundaries: bool = True


class FromRulesBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(..., min_length=1)
    rules: list[RuleBody] = Field(..., max_length=MAX_RULES)
    description: str | None = None
    workspace_access: str | None = None  # accepted; a dictionary belongs to its key


def _rules(body: FromRulesBody) -> list[AliasRule]:
    rules = []
    for index, rule in enumerate(body.rules):
        where = f"rules.{index}"
        if rule.type == "phoneme":
            raise ApiError(
                "VALIDATION_ERROR",
                f"Invalid '{where}' ({rule.string_to_replace}): {PHONEME_REFUSAL}.",
                param=where,
            )
        if rule.alias is None:
            raise ApiError(
                "VALIDATION_ERROR", f"Invalid '{where}': an alias rule needs 'alias'.", param=where
            )
        rules.append(
            checked_rule(rule.string_to_replace, rule.alias, rule.case_sensitive, rule.word_boundaries, where)
        )
    return rules


def _owner(caller: Any) -> Owner:
    return Owner(caller.key_id, caller.admin)


@router.post(f"{PREFIX}/add-from-rules", summary="ElevenLabs: a pronunciation dictionary from alias rules")
async def add_from_rules(
    body: FromRulesBody, caller: VoiceCallerDep, dictionaries: Dictionaries
) -> JSONResponse:
    record = await dictionaries.create(_owner(caller), body.name, _rules(body), body.description)
    return JSONResponse(record.created())


@router.post(f"{PREFIX}/add-from-file", summary="ElevenLabs: a pronunciation dictionary from a PLS file")
async def add_from_file(request: Request, caller: VoiceCallerDep, dictionaries: Dictionaries) -> JSONResponse:
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise ApiError(
            "UNSUPPORTED_MEDIA_TYPE",
            "Send multipart/form-data with 'name' and the PLS file in 'file'.",
            status=415,
        )
    async with request.form(max_files=1, max_fields=8) as form:
        name, description, upload = form.get("name"), form.get("description"), form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(
                "VALIDATION_ERROR", "Invalid 'file': send the PLS file as the form's 'file'.", param="file"
            )
        data = await upload.read(MAX_PLS_BYTES + 1)
    if not isinstance(name, str) or not name.strip():
        raise ApiError("VALIDATION_ERROR", "Invalid 'name': a dictionary needs a name.", param="name")
    record = await dictionaries.create_from_pls(
        _owner(caller), name, data, description if isinstance(description, str) and description else None
    )
    return JSONResponse(record.created())


@router.get(PREFIX, summary="ElevenLabs: this key's pronunciation dictionaries")
async def list_dictionaries(caller: VoiceCallerDep, dictionaries: Dictionaries) -> JSONResponse:
    records = await dictionaries.list(_owner(caller))
    return JSONResponse(
        {"pronunciation_dictionaries": [r.summary() for r in records], "next_cursor": None, "has_more": False}
    )


@router.get(f"{PREFIX}/{{dictionary_id}}", summary="ElevenLabs: one pronunciation dictionary")
async def get_dictionary(
    dictionary_id: str, caller: VoiceCallerDep, dictionaries: Dictionaries
) -> JSONResponse:
    record = await dictionaries.get(_owner(caller), dictionary_id)
    summary = record.summary()
    summary["rules"] = [
        {
            "type": "alias",
            "string_to_replace": r.text,
            "alias": r.alias,
            "case_sensitive": r.case_sensitive,
            "word_boundaries": r.word_boundaries,
        }
        for r in record.rules
    ]
    return JSONResponse(summary)


@router.get(
    f"{PREFIX}/{{dictionary_id}}/{{version_id}}/download",
    summary="ElevenLabs: a dictionary version as a PLS file",
)
async def download(
    dictionary_id: str, version_id: str, caller: VoiceCallerDep, dictionaries: Dictionaries
) -> Response:
    document = await dictionaries.pls(_owner(caller), dictionary_id, version_id)
    return Response(
        document,
        media_type="application/pls+xml",
        headers={"Content-Disposition": f'attachment; filename="{dictionary_id}.pls"'},
    )


@router.delete(f"{PREFIX}/{{dictionary_id}}", summary="Delete a pronunciation dictionary")
async def delete_dictionary(
    dictionary_id: str, caller: VoiceCallerDep, dictionaries: Dictionaries
) -> JSONResponse:
    await dictionaries.delete(_owner(caller), dictionary_id)
    return JSONResponse({"status": "ok"})
