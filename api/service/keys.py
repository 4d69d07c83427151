"""Key administration over HTTP (admin key) and a key's own view of its balance and limits.

    POST   /v1/admin/keys                  create: {"owner", "credit_balance"?, "rate_limit_per_minute"?, ...}
    GET    /v1/admin/keys                  list (no secrets)
    GET    /v1/admin/keys/{key_id}         one
    PATCH  /v1/admin/keys/{key_id}         owner, status, limits (null: the service default; unlimited credits)
    POST   /v1/admin/keys/{key_id}/credits top up: {"amount"}
    DELETE /v1/admin/keys/{key_id}         revoke
    GET    /v1/tts/key                     the calling key: its balance and the limits that apply to it

The work, its checks and its audit trail are services/access/key_admin.py's, shared with the command line.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from api.deps import Access, Admin, services_of
from api.errors import ApiError
from services.access.grant import AccessServices
from services.access.key_admin import KeyAdmin, KeyAdminError, KeyView
from services.errors import ServiceError

router = APIRouter(tags=["keys"])
JsonObject = Annotated[dict[str, Any], Body()]


def _admin(access: AccessServices) -> KeyAdmin:
    admin = KeyAdmin.of(access)
    if admin is None:
        raise ApiError(
            "VALIDATION_ERROR",
            "Keys are off on this server (TTS_AUTH_ENABLED=false): there is no key store.",
            status=409,
        )
    return admin


async def _answer(work: Any, status: int = 200) -> JSONResponse:
    try:
        result = await work
    except KeyAdminError as err:
        raise ApiError(err.code, str(err), status=err.status) from None
    if isinstance(result, list):
        return JSONResponse({"keys": [view.as_json() for view in result]}, status_code=status)
    if isinstance(result, KeyView):
        return JSONResponse(result.as_json(), status_code=status)
    return JSONResponse({"key": result.key, **result.view.as_json()}, status_code=status)


@router.post("/v1/admin/keys", dependencies=[Admin], summary="Create a key; its secret is shown once (admin)")
async def create_key(access: Access, body: JsonObject) -> JSONResponse:
    fields = dict(body)
    owner = fields.pop("owner", "")
    return await _answer(_admin(access).create(owner, **fields), status=201)


@router.get("/v1/admin/keys", dependencies=[Admin], summary="Every key, without secrets (admin)")
async def list_keys(access: Access) -> JSONResponse:
    return await _answer(_admin(access).list())


@router.get("/v1/admin/keys/{key_id}", dependencies=[Admin], summary="One key (admin)")
async def get_key(access: Access, key_id: str) -> JSONResponse:
    return await _answer(_admin(access).get(key_id))


@router.patch(
    "/v1/admin/keys/{key_id}", dependencies=[Admin], summary="Change a key's owner, status or limits (admin)"
)
async def update_key(access: Access, key_id: str, body: JsonObject) -> JSONResponse:
    return await _answer(_admin(access).update(key_id, **body))


@router.post(
    "/v1/admin/keys/{key_id}/credits", dependencies=[Admin], summary="Top up a key's credits (admin)"
)
async def top_up_key(access: Access, key_id: str, body: JsonObject) -> JSONResponse:
    return await _answer(_admin(access).top_up(key_id, body.get("amount")))


@router.delete("/v1/admin/keys/{key_id}", dependencies=[Admin], summary="Revoke a key (admin)")
async def revoke_key(access: Access, key_id: str) -> JSONResponse:
    return await _answer(_admin(access).revoke(key_id))


async def own_key(request: Request) -> dict[str, Any]:
    """The calling key's balance (read from the store, not a cache) and the limits that apply to it."""
    access = services_of(request).access
    try:
        grant = await access.grant(request.headers, request.client.host if request.client else None, None)
    except ServiceError as exc:
        raise ApiError.from_service(exc) from None
    request.scope.setdefault("state", {})["key_id"] = grant.key_id
    try:
        admin = KeyAdmin.of(access)
        view = await admin.get(grant.key_id) if admin is not None else KeyView.of(grant.key)
    except KeyAdminError as err:
        raise ApiError(err.code, str(err), status=err.status) from None
    finally:
        await grant.abandon()  # nothing synthesised: the slot and any reservation go back at once
    defaults = access.settings.access
    return {
        "key_id": view.key_id,
        "owner": view.owner,
        "status": view.status,
        "credit_balance": view.credit_balance,  # null: unlimited
        "credits_enabled": access.settings.usage.credits_enabled,
        "rate_limit_per_minute": view.rate_limit_per_minute or defaults.rate_limit_per_minute,
        "max_concurrent": view.max_concurrent or defaults.max_concurrent_streams,
        "expires_at": view.as_json()["expires_at"],
    }


@router.get("/v1/tts/key", summary="The calling key's balance and limits")
async def read_own_key(request: Request) -> JSONResponse:
    return JSONResponse(await own_key(request))
