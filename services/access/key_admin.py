"""Key administration: create (the secret shown once), list, revoke, change limits and top up keys, on any store.

One class serves the operator's command line (`python -m services.keys`) and the admin API (`/v1/admin/keys`), so
both check the same way and leave the same audit trail: every change writes a row to the request log
(transport `admin`, speaker `keys.<action>`, key_id the key changed; for a top-up, text_length is the credits added)
and one log line. Secrets and hashes are never logged or returned after creation.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from services.keys.records import ApiKeyRecord, generate_api_key, hash_key, utcnow
from services.keys.stores import ADMIN_COLUMNS, KeyStore
from services.usage.request_record import RequestRecord

if TYPE_CHECKING:
    from services.access.grant import AccessServices

logger = logging.getLogger("services.access.key_admin")
MAX_TOP_UP = 10**12  # credits in one top-up: a typo guard, far beyond any real purchase

AuditSink = Callable[[RequestRecord], Awaitable[object]]


class KeyAdminError(ValueError):
    """A refused administration request; `code` and `status` map onto the API's error envelope."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class KeyView:
    """What administration shows of a key: everything but its hash."""

    key_id: str
    owner: str
    status: str
    expires_at: datetime | None
    rate_limit_per_minute: int | None
    max_concurrent: int | None
    credit_balance: int | None
    created_at: datetime | None

    @classmethod
    def of(cls, record: ApiKeyRecord) -> KeyView:
        return cls(
            key_id=record.key_id,
            owner=record.owner,
            status=record.status,
            expires_at=record.expires_at,
            rate_limit_per_minute=record.rate_limit_per_minute,
            max_concurrent=record.max_concurrent,
            credit_balance=record.credit_balance,
            created_at=record.created_at,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            k: v.isoformat() if isinstance(v, datetime) else v
            for k, v in self.__dict__.items()  # a frozen dataclass's fields, in order
        }


@dataclass(frozen=True)
class CreatedKey:
    key: str  # the secret: shown once, never stored
    view: KeyView


class KeyAdmin:
    """Administration over one key store, audited through `audit` (the request log's submit) when given."""

    def __init__(
        self, store: KeyStore, audit: AuditSink | None = None, on_change: Callable[[], None] | None = None
    ) -> None:
        self.store = store
        self.audit = audit
        # This process's cached key records are dropped at each change (others see it within TTS_KEY_CACHE_TTL_S).
        self.on_change = on_change

    @classmethod
    def of(cls, access: AccessServices) -> KeyAdmin | None:
        """The administration of a running server's key store; None with auth off (no store)."""
        if access.authenticator is None:
            return None
        return cls(
            access.authenticator.store, access.request_logger.submit_async, access.authenticator.invalidate
        )

    async def create(self, owner: str, **limits: Any) -> CreatedKey:
        checked = _checked_changes(limits)
        raw = generate_api_key()
        record = ApiKeyRecord(
            key_id="key_" + secrets.token_hex(8),
            key_hash=hash_key(raw),
            owner=_checked_owner(owner),
            created_at=utcnow(),
            **checked,
        )
        await self.store.insert_key(record)
        await self._audited("create", record.key_id)
        return CreatedKey(raw, KeyView.of(record))

    async def list(self) -> list[KeyView]:
        return [KeyView.of(r) for r in await self.store.list_keys()]

    async def get(self, key_id: str) -> KeyView:
        record = await self.store.get_key(key_id)
        if record is None:
            raise _unknown(key_id)
        return KeyView.of(record)

    async def update(self, key_id: str, **changes: Any) -> KeyView:
        """Change a key's owner, status or limits; None for a limit means the service default (unlimited credits)."""
        checked = _checked_changes(changes)
        if "owner" in changes:
            checked["owner"] = _checked_owner(changes["owner"])
        if not checked:
            raise KeyAdminError(
                "VALIDATION_ERROR", 400, "Nothing to change: give a status, an owner or a limit."
            )
        record = await self.store.update_key(key_id, checked)
        if record is None:
            raise _unknown(key_id)
        await self._audited("revoke" if checked.get("status") == "revoked" else "update", key_id)
        return KeyView.of(record)

    async def revoke(self, key_id: str) -> KeyView:
        return await self.update(key_id, status="revoked")

    async def top_up(self, key_id: str, amount: object) -> KeyView:
        if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= MAX_TOP_UP:
            raise KeyAdminError(
                "VALIDATION_ERROR", 400, f"A top-up is a whole number of credits from 1 to {MAX_TOP_UP}."
            )
        current = await self.get(key_id)
        if current.credit_balance is None:
            raise KeyAdminError(
                "VALIDATION_ERROR",
                409,
                f"Key {key_id} has no balance (unlimited): set one with credit_balance instead of topping up.",
            )
        await self.store.top_up(key_id, amount)
        await self._audited("top_up", key_id, amount)
        return await self.get(key_id)

    async def _audited(self, action: str, key_id: str, amount: int = 0) -> None:
        if self.on_change is not None:
            self.on_change()
        logger.info("api key " + action, extra={"key_id": key_id, "credits_added": amount or None})
        if self.audit is None:
            return
        now = utcnow()
        await self.audit(
            RequestRecord(
                request_id=f"admin-{uuid.uuid4().hex}",
                speaker=f"keys.{action}",
                text_length=amount,
                status="completed",
                key_id=key_id,
                transport="admin",
                created_at=now,
                completed_at=now,
            )
        )


def _unknown(key_id: str) -> KeyAdminError:
    return KeyAdminError("NOT_FOUND", 404, f"No key has the id {key_id!r}.")


def _checked_owner(owner: Any) -> str:
    if not isinstance(owner, str) or len(owner) > 200 or not owner.isprintable():
        raise KeyAdminError("VALIDATION_ERROR", 400, "owner is printable text of at most 200 characters.")
    return owner


def _checked_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The limits and status among `changes`, checked; unknown names refused, owner left to its own check."""
    unknown = set(changes) - ADMIN_COLUMNS
    if unknown:
        raise KeyAdminError(
            "VALIDATION_ERROR",
            400,
            f"Unknown field {sorted(unknown)[0]!r}; accepted: {', '.join(sorted(ADMIN_COLUMNS))}.",
        )
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "owner":
            continue
        if name == "status":
            if value not in ("active", "suspended", "revoked"):
                raise KeyAdminError("VALIDATION_ERROR", 400, "status is active, suspended or revoked.")
        elif name == "expires_at":
            value = _checked_time(value)
        elif value is not None:
            positive = name != "credit_balance"
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or value < (1 if positive else 0)
                or value > MAX_TOP_UP
            ):
                raise KeyAdminError(
                    "VALIDATION_ERROR",
                    400,
                    f"{name} is a whole number from {1 if positive else 0} to {MAX_TOP_UP}, or null for the default.",
                )
        out[name] = value
    return out


def _checked_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise KeyAdminError(
            "VALIDATION_ERROR", 400, "expires_at is an ISO 8601 time with its zone (2027-01-31T00:00:00Z)."
        ) from None
    if parsed.tzinfo is None:
        raise KeyAdminError(
            "VALIDATION_ERROR", 400, "expires_at needs its time zone (for example a trailing Z)."
        )
    return parsed
