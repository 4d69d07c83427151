"""Typed dependencies: what a route may ask for, read from the app's state in one place.

`create_app` puts one `Services` bundle on `app.state.services`; routes take `Annotated` aliases
(`SettingsDep`, `Model`, `Pinning`, `Access`, `Speech`, `Grant`, `Library`, `VoiceCallerDep`) instead of reaching
into `app.state` themselves. The model is seen through `ServingModel` (services/model_status.py), never as the
runtime: only `create_app` (start-up) holds that.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection
from starlette.types import Scope

from api.errors import ApiError
from services.access import AccessGrant, AccessServices, Authenticator
from services.continuity import Continuity
from services.errors import ServiceError
from services.jobs import JobService
from services.model_status import ServingModel, VoicePinning
from services.pipeline.speech import SpeechService
from services.pronunciation import PronunciationDictionaries
from services.sessions.entrance import SessionEntrance
from services.voice_library import Caller, VoiceLibrary
from shared.settings import Settings


@dataclass(frozen=True)
class Services:
    """Everything a request may use, built once per app."""

    settings: Settings
    model: ServingModel  # the loaded model as the edge reads it (the runtime, behind a narrow interface)
    pinning: VoicePinning
    access: AccessServices
    speech: SpeechService
    sessions: SessionEntrance  # every socket transport opens its sessions here
    library: VoiceLibrary
    continuity: Continuity | None = (
        None  # recent requests per key (keep a voice); None: this server keeps none
    )
    dictionaries: PronunciationDictionaries | None = None  # None: this server keeps none
    jobs: JobService | None = None  # None: jobs disabled (TTS_JOBS_ENABLED=false)


def services_of(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services


async def _settings(connection: HTTPConnection) -> Settings:
    return services_of(connection).settings


async def _model(connection: HTTPConnection) -> ServingModel:
    return services_of(connection).model


async def _pinning(connection: HTTPConnection) -> VoicePinning:
    return services_of(connection).pinning


async def _continuity(connection: HTTPConnection) -> Continuity | None:
    return services_of(connection).continuity


async def _access(connection: HTTPConnection) -> AccessServices:
    return services_of(connection).access


async def _speech(connection: HTTPConnection) -> SpeechService:
    return services_of(connection).speech


async def _library(connection: HTTPConnection) -> VoiceLibrary:
    return services_of(connection).library


# Declared for the OpenAPI schema, so /docs can authorise with either form; the key itself is read from the request
# by AccessServices (one code path with the WebSocket handshake).
_BEARER = HTTPBearer(auto_error=False, description="API key as `Authorization: Bearer <key>`.")
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key in the X-API-Key header.")


async def require_access(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
    _api_key: Annotated[str | None, Security(_API_KEY)] = None,
) -> AsyncIterator[AccessGrant]:
    """Authenticate, take a concurrency slot and count the request; give both back if it never starts."""
    grant = await _grant(request)
    try:
        yield grant
    finally:
        # FastAPI validates the body after this dependency ran: a request refused there (or failing in the
        # route before its accounting took over) must give its concurrency slot back, or the key locks up.
        if grant.accounting is None:
            await grant.abandon()


# The scope's state key of a grant taken before the request's body was read (api/upload_grant.py), until claimed.
UPLOAD_GRANT = "upload_grant"


async def _grant(request: Request) -> AccessGrant:
    access = services_of(request).access
    state = request.scope.get("state", {})
    taken: AccessGrant | None = state.pop(UPLOAD_GRANT, None)
    if (
        taken is not None
    ):  # authenticated, counted and holding its slot since before its body: now the route's
        taken.request_id = state.get("request_id")
        return taken
    try:
        grant = await access.grant(
            request.headers, request.client.host if request.client else None, state.get("client_request_id")
        )
    except ServiceError as exc:
        raise ApiError.from_service(exc) from None
    grant.request_id = state.get("request_id")
    state["key_id"] = grant.key_id  # for the request's access-log line (api/access_log.py)
    return grant


async def voice_caller(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
    _api_key: Annotated[str | None, Security(_API_KEY)] = None,
) -> AsyncGenerator[Caller, None]:
    """The voice library's caller: the admin with `X-Admin-Key` (every voice), else an API key, authenticated,
    rate-limited and holding a concurrency slot for the request as on every route (its own voices)."""
    if "x-admin-key" in request.headers:
        if not is_admin_key(request, request.headers["x-admin-key"]):
            raise ApiError(
                "FORBIDDEN",
                "Wrong X-Admin-Key (the admin key is TTS_ADMIN_KEY; with none set there is "
                "no admin); send an API key instead to manage that key's voices.",
                status=403,
            )
        yield Caller(key_id=None, admin=True)
        return
    grant = await _grant(request)
    try:
        yield Caller(key_id=grant.key_id, check_balance=grant.check_balance)
    finally:
        await grant.abandon()  # no synthesis: the slot goes back as the request ends


async def optional_voice_caller(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
    _api_key: Annotated[str | None, Security(_API_KEY)] = None,
) -> AsyncGenerator[Caller | None, None]:
    """As `voice_caller`, but None for a request with no credentials at all on a server with auth (the voice list
    then shows the built-in voices, as it did before the library existed). A wrong key still gets 401."""
    credentials = any(
        name in request.headers for name in ("authorization", "x-api-key", "xi-api-key", "x-admin-key")
    )
    if services_of(request).settings.access.auth_enabled and not credentials:
        yield None
        return
    callers = voice_caller(request)
    try:
        yield await anext(callers)
    finally:
        await callers.aclose()


async def require_admin(request: Request) -> None:
    """Dependency of the admin routes (async: FastAPI would run a plain def in a worker thread): `check_admin`."""
    check_admin(request)


def check_admin(request: Request) -> None:
    """Admin routes: the admin key in X-Admin-Key or Authorization: Bearer. Disabled when no admin key is set."""
    admin_key = services_of(request).settings.access.admin_key
    if not admin_key:
        raise ApiError("NOT_FOUND", "Debug routes are disabled (set TTS_ADMIN_KEY to enable them).")
    given = request.headers.get("x-admin-key") or Authenticator.extract_key(request.headers) or ""
    if not is_admin_key(request, given):
        raise ApiError("FORBIDDEN", "This route needs the admin key (X-Admin-Key).", status=403)


def is_admin_key(request: HTTPConnection, given: str) -> bool:
    """Compare `given` with TTS_ADMIN_KEY under a brute-force throttle: after too many wrong ones from an address
    (or the same wrong one from anywhere), 429 without comparing, so further guesses learn nothing."""
    admin_key = services_of(request).settings.access.admin_key
    throttle = services_of(request).access.admin_throttle
    address = request.client.host if request.client else "unknown"
    wait = throttle.retry_after(address, given or None)
    if wait is not None:
        raise ApiError(
            "RATE_LIMIT_EXCEEDED",
            f"Too many wrong admin keys from this address; retry in {wait} s.",
            headers={"Retry-After": str(wait)},
        )
    if not admin_key or not hmac.compare_digest(given.encode(), admin_key.encode()):
        throttle.failed(address, given or None)
        return False
    throttle.succeeded(given)
    return True


async def check_upload_credentials(scope: Scope) -> None:
    """Before a body is read on a route that needs a key (api.middleware.BodySizeLimitMiddleware): what the route will
    check, the admin key or an API key, so missing or wrong ones are refused without holding the body."""
    connection = HTTPConnection(scope)
    if "x-admin-key" in connection.headers:
        if not is_admin_key(connection, connection.headers["x-admin-key"]):
            raise ApiError("FORBIDDEN", "Wrong X-Admin-Key; send an API key instead.", status=403)
        return
    address = connection.client.host if connection.client else None
    try:
        record = await services_of(connection).access.authenticate(connection.headers, address)
    except ServiceError as exc:
        raise ApiError.from_service(exc) from None
    scope.setdefault("state", {})["key_id"] = record.key_id  # the access-log line names the key


SettingsDep = Annotated[Settings, Depends(_settings)]
Model = Annotated[ServingModel, Depends(_model)]
Pinning = Annotated[VoicePinning, Depends(_pinning)]
Access = Annotated[AccessServices, Depends(_access)]
RecentRequests = Annotated[Continuity | None, Depends(_continuity)]
Speech = Annotated[SpeechService, Depends(_speech)]
Grant = Annotated[AccessGrant, Depends(require_access)]
Library = Annotated[VoiceLibrary, Depends(_library)]
VoiceCallerDep = Annotated[Caller, Depends(voice_caller)]
OptionalVoiceCaller = Annotated[Caller | None, Depends(optional_voice_caller)]
Admin = Depends(require_admin)
