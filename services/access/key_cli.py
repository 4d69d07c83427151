"""The operator's key command line, on the store the server is configured with (TTS_KEY_BACKEND and its settings):

    python -m services.access.key_cli create --owner "Acme" --credits 100000 --rate-limit 120
    python -m services.access.key_cli list
    python -m services.access.key_cli show KEY_ID
    python -m services.access.key_cli set KEY_ID --max-concurrent 8 --credits unlimited --expires never
    python -m services.access.key_cli top-up KEY_ID 50000
    python -m services.access.key_cli revoke KEY_ID

`create` prints the new key once (it is stored only as its SHA-256). Every change is audited in the request log
(TTS_REQUEST_LOG_SINK) as the admin API's are. With the static backend the changes are written to TTS_API_KEYS_FILE
(a running server reads that file at start). Output is JSON; exit status 2 for a refused command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from services.access.authenticator import build_key_store
from services.access.key_admin import KeyAdmin, KeyAdminError
from services.keys.records import KeyConfigError
from services.usage.request_record import RequestRecord
from services.usage.request_sinks import build_request_sink
from shared.settings import Settings, get_settings

_DEFAULT = {"default", "unlimited", "never", "none"}  # a limit's service default: null in the store


def _limit(text: str) -> int | None:
    return None if text.lower() in _DEFAULT else int(text)


def _time(text: str) -> str | None:
    return None if text.lower() in _DEFAULT else text


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m services.access.key_cli", description=__doc__.splitlines()[0]
    )
    commands = top.add_subparsers(dest="command", required=True)

    def limits(command: argparse.ArgumentParser) -> None:
        command.add_argument("--credits", type=_limit, help="credit balance; 'unlimited' for none")
        command.add_argument(
            "--rate-limit", type=_limit, help="requests per minute; 'default' for the service's"
        )
        command.add_argument(
            "--max-concurrent", type=_limit, help="streams at once; 'default' for the service's"
        )
        command.add_argument("--expires", type=_time, help="ISO 8601 time with its zone; 'never'")

    create = commands.add_parser("create", help="make a key and print it once")
    create.add_argument("--owner", required=True)
    limits(create)
    commands.add_parser("list", help="every key, without secrets")
    for name in ("show", "revoke"):
        commands.add_parser(name).add_argument("key_id")
    change = commands.add_parser("set", help="change a key's owner, status or limits")
    change.add_argument("key_id")
    change.add_argument("--owner")
    change.add_argument("--status", choices=["active", "suspended", "revoked"])
    limits(change)
    top_up = commands.add_parser("top-up", help="add credits to a key's balance")
    top_up.add_argument("key_id")
    top_up.add_argument("amount", type=int)
    return top


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    given = {
        "owner": getattr(args, "owner", None),
        "status": getattr(args, "status", None),
        "credit_balance": args.credits,
        "rate_limit_per_minute": args.rate_limit,
        "max_concurrent": args.max_concurrent,
        "expires_at": args.expires,
    }
    # argparse leaves an absent option None, and "unlimited" parses to None too: tell them apart by the argv.
    named = {"credit_balance": "--credits", "rate_limit_per_minute": "--rate-limit"}
    named |= {"max_concurrent": "--max-concurrent", "expires_at": "--expires", "owner": "--owner"}
    named |= {"status": "--status"}
    return {k: v for k, v in given.items() if named[k] in args.argv}


async def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any] | list[dict[str, Any]]:
    store = build_key_store(settings)
    sink = build_request_sink(settings)

    async def audit(record: RequestRecord) -> None:
        await sink.write([record])

    admin = KeyAdmin(store, audit)
    try:
        if args.command == "create":
            changes = _changes(args)
            changes.pop("owner", None)
            created = await admin.create(args.owner, **changes)
            return {"key": created.key, **created.view.as_json()}
        if args.command == "list":
            return [view.as_json() for view in await admin.list()]
        if args.command == "show":
            return (await admin.get(args.key_id)).as_json()
        if args.command == "revoke":
            return (await admin.revoke(args.key_id)).as_json()
        if args.command == "set":
            return (await admin.update(args.key_id, **_changes(args))).as_json()
        return (await admin.top_up(args.key_id, args.amount)).as_json()
    finally:
        await store.close()
        await sink.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.argv = argv
    settings = get_settings()
    if settings.access.key_backend == "static" and not settings.access.api_keys_file:
        print(
            "error: the static key backend keeps keys in TTS_API_KEYS_FILE; set it (a JSON file this command "
            "writes) or use TTS_KEY_BACKEND=postgres|supabase",
            file=sys.stderr,
        )
        return 2
    keys_file = settings.access.api_keys_file
    if settings.access.key_backend == "static" and keys_file is not None and not keys_file.exists():
        keys_file.write_text('{"keys": []}\n', encoding="utf-8")  # the first key of a new file
    try:
        result = asyncio.run(run(args, settings))
    except (KeyAdminError, KeyConfigError) as err:  # a key file it cannot use: said, not a traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
