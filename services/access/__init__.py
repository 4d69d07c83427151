"""Access control: the authenticator (`authenticator`), rate and socket limits, the gate, and what one request
holds and settles (`grant`). Key records and their stores live in services/keys; they are named here too, for the
callers that check keys."""

from services.access.authenticator import (
    Authenticator,
    FailedAuthThrottle,
    build_authenticator,
    build_key_store,
)
from services.access.gate import AccessGate
from services.access.grant import AccessGrant, AccessServices
from services.keys.records import (
    KEY_STATUSES,
    MAX_KEY_CHARS,
    ApiKeyRecord,
    AuthError,
    DebitResult,
    KeyConfigError,
    KeyStoreUnavailable,
    anonymous_record,
    derive_key_id,
    generate_api_key,
    hash_key,
    utcnow,
)
from services.keys.stores import (
    KeyStore,
    PostgresKeyStore,
    StaticKeyStore,
    SupabaseKeyStore,
    make_supabase_client,
)

__all__ = [
    "KEY_STATUSES",
    "MAX_KEY_CHARS",
    "AccessGate",
    "AccessGrant",
    "AccessServices",
    "ApiKeyRecord",
    "AuthError",
    "Authenticator",
    "DebitResult",
    "FailedAuthThrottle",
    "KeyStore",
    "KeyConfigError",
    "KeyStoreUnavailable",
    "PostgresKeyStore",
    "StaticKeyStore",
    "SupabaseKeyStore",
    "anonymous_record",
    "build_authenticator",
    "build_key_store",
    "derive_key_id",
    "generate_api_key",
    "hash_key",
    "make_supabase_client",
    "utcnow",
]
