"""Limits before bodies: an upload route's key is authenticated, its concurrency slot taken, its request counted
against its rate and its balance checked from the headers alone, before one byte of the body is read
(api.middleware.BodySizeLimitMiddleware calls `grant_before_upload`). A key over any of them is answered at once and
holds no body: 64 uploads of 48 MB at once from one key were all read whole before 60 were refused.

The grant taken here is the one the route gets (api.deps `_grant` claims it from the scope's state), so a request is counted
once; one the route never claims (refused while its body arrived, a client gone) is given back when it ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection
from starlette.types import Scope

from api.deps import UPLOAD_GRANT, check_upload_credentials, services_of
from api.errors import ApiError
from services.access import AccessGrant
from services.errors import ServiceError


async def grant_before_upload(scope: Scope) -> Callable[[], Awaitable[None]] | None:
    """Take the request's grant before its body (ApiError: refused). Returns what gives it back when the request
    ends unclaimed; None where there is nothing to hold (the admin key, checked as the route will)."""
    connection = HTTPConnection(scope)
    if "x-admin-key" in connection.headers:
        await check_upload_credentials(scope)
        return None
    access = services_of(connection).access
    state = scope.setdefault("state", {})
    try:
        grant = await access.grant(
            connection.headers,
            connection.client.host if connection.client else None,
            state.get("client_request_id"),
        )
    except ServiceError as exc:
        raise ApiError.from_service(exc) from None
    balance = grant.key.credit_balance
    if access.ledger.enabled and balance is not None and balance <= 0:
        await grant.abandon()
        raise ApiError(
            "INSUFFICIENT_CREDITS", "This key has no credits left; top it up before uploading.", status=403
        )
    state[UPLOAD_GRANT] = grant

    async def give_back() -> None:
        unclaimed: AccessGrant | None = state.pop(UPLOAD_GRANT, None)
        if unclaimed is not None:
            await unclaimed.abandon()

    return give_back
