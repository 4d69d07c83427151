"""A stand-in for a Supabase project's REST API (PostgREST under /rest/v1), backed by the real test PostgreSQL.

Supabase's hosted API cannot run here, so this answers the few PostgREST request shapes the service sends, and
answers them the way PostgREST does: each request becomes one SQL statement on the real tables and functions
(deploy/sql), so filters, updates, defaults, constraints and the credit functions behave as they do on Supabase.
What it covers, and nothing more:

- `GET /rest/v1/<table>?select=a,b&order=c.asc,d.desc&limit=&offset=&<col>=eq.<v>` (also `is.null`): rows as a
  JSON array, at most `max_rows` of them (Supabase's "Max rows" setting, 1,000 by default) whatever the limit;
- `POST /rest/v1/<table>` (an object or an array): an INSERT of the columns given (the others take their defaults);
- `PATCH /rest/v1/<table>?<col>=eq.<v>`: an UPDATE of the columns given;
- `POST /rest/v1/rpc/<function>` with named arguments: a set-returning function answers an array of objects, a
  scalar one its bare value, as PostgREST does.

Writes answer the rows (`Prefer: return=representation`) or nothing (`return=minimal`, the default). Every request
must carry the service key as `apikey` (else 401, as Supabase's gateway). PostgreSQL errors answer PostgREST's
error object (`code`, `message`) with 400 for bad data, 409 for a unique violation, 404 for an unknown function.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from tests.http_stub import json_server

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_RESERVED = {"select", "order", "on_conflict", "columns", "limit", "offset"}


class PostgrestError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _name(text: str) -> str:
    if not _NAME.match(text):
        raise PostgrestError(400, "PGRST100", f"not a plain identifier: {text!r}")
    return f'"{text}"'


@dataclass
class FakePostgrest:
    """The server's state: its URL, the service key it accepts, and the requests it answered (method, path)."""

    dsn: str
    service_key: str
    url: str = ""
    max_rows: int = 1000  # a Supabase project's default API setting "Max rows"
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _pool: Any = None

    def run(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    # --- the request shapes ------------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, query: list[tuple[str, str]], body: Any, prefer: str = ""
    ) -> tuple[int, Any]:
        if not path.startswith("/rest/v1/"):
            raise PostgrestError(404, "PGRST125", f"no route {path}")
        target = path.removeprefix("/rest/v1/")
        if target.startswith("rpc/") and method == "POST":
            return self.run(self._rpc(target.removeprefix("rpc/"), body or {}))
        table = _name(target)
        params = dict(query)
        where, args = self._filters(query)
        if method == "GET":
            columns = ", ".join(_name(c) for c in params.get("select", "*").split(",") if c != "*") or "*"
            order = ""
            if "order" in params:
                terms = [term.split(".") for term in params["order"].split(",")]
                order = " ORDER BY " + ", ".join(
                    f"t.{_name(t[0])} {'DESC' if 'desc' in t[1:] else 'ASC'}" for t in terms
                )
            # Supabase's `max_rows` caps every answer, whatever limit the request asked for.
            limit = min(int(params.get("limit", self.max_rows)), self.max_rows)
            page = f" LIMIT {limit} OFFSET {int(params.get('offset', 0))}"
            sql = f"SELECT to_jsonb(x) FROM (SELECT {columns} FROM {table} AS t{where}{order}{page}) x"
            return 200, self.run(self._rows(sql, *args))
        if method == "POST":
            rows = body if isinstance(body, list) else [body]
            columns = ", ".join(_name(c) for c in rows[0])
            sql = (
                f"INSERT INTO {table} AS t ({columns}) SELECT {columns} FROM "
                f"json_populate_recordset(NULL::{table}, $1::json) RETURNING to_jsonb(t.*)"
            )
            inserted = self.run(self._rows(sql, json.dumps(rows)))
            return (201, inserted) if "return=representation" in prefer else (201, None)
        if method == "PATCH":
            if not where:
                raise PostgrestError(
                    400, "21000", "UPDATE requires a WHERE clause"
                )  # PostgREST's safe update
            sets = ", ".join(f"{_name(c)} = r.{_name(c)}" for c in body)
            n = len(args) + 1
            sql = (
                f"UPDATE {table} AS t SET {sets} FROM json_populate_record(NULL::{table}, ${n}::json) AS r"
                f"{where} RETURNING to_jsonb(t.*)"
            )
            updated = self.run(self._rows(sql, *args, json.dumps(body)))
            return (200, updated) if "return=representation" in prefer else (204, None)
        raise PostgrestError(405, "PGRST117", f"unsupported {method}")

    @staticmethod
    def _filters(query: list[tuple[str, str]]) -> tuple[str, list[str]]:
        clauses, args = [], []
        for column, value in query:
            if column in _RESERVED:
                continue
            op, _, operand = value.partition(".")
            if op == "eq":
                args.append(operand)
                clauses.append(f"t.{_name(column)}::text = ${len(args)}")
            elif op == "is" and operand == "null":
                clauses.append(f"t.{_name(column)} IS NULL")
            else:
                raise PostgrestError(400, "PGRST100", f"unsupported filter {column}={value}")
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    async def _rows(self, sql: str, *args: Any) -> list[Any]:
        async with self._pool.acquire() as conn:
            return [json.loads(r[0]) for r in await conn.fetch(sql, *args)]

    async def _rpc(self, function: str, named: dict[str, Any]) -> tuple[int, Any]:
        async with self._pool.acquire() as conn:
            found = await conn.fetchrow(
                "SELECT pg_get_function_identity_arguments(p.oid) AS args, p.proretset, "
                "p.proargmodes IS NOT NULL AS has_out FROM pg_proc p WHERE p.proname = $1",
                function,
            )
            if found is None:
                raise PostgrestError(404, "PGRST202", f"Could not find the function public.{function}")
            params = [a.split(" ", 1) for a in found["args"].split(", ") if a]
            if {p[0] for p in params} != set(named):
                raise PostgrestError(404, "PGRST202", f"no {function} with arguments {sorted(named)}")
            call = f"{_name(function)}(" + ", ".join(
                f"{_name(n)} := ($1::jsonb -> '{n}')::text::{t}"
                if t in ("json", "jsonb")
                else f"{_name(n)} := ($1::jsonb ->> '{n}')::{t}"
                for n, t in params
            )
            call += ")"
            if found["proretset"] or found["has_out"]:
                rows = await conn.fetch(
                    f"SELECT to_jsonb(x) FROM (SELECT * FROM {call}) x", json.dumps(named)
                )
                values = [json.loads(r[0]) for r in rows]
                return 200, values if found["proretset"] else (values[0] if values else None)
            value = await conn.fetchval(f"SELECT to_jsonb({call})", json.dumps(named))
            return 200, None if value is None else json.loads(value)


@contextmanager
def fake_postgrest(dsn: str, service_key: str) -> Iterator[FakePostgrest]:
    """Serve the stand-in on a free loopback port for the length of the block."""
    fake = FakePostgrest(dsn, service_key)
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
    loop_thread.start()
    fake._loop = loop

    async def open_pool() -> Any:
        return await asyncpg.create_pool(dsn, min_size=1, max_size=4)

    fake._pool = fake.run(open_pool())

    def answer(
        method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: object
    ) -> tuple[int, object]:
        pairs = [(k, v) for k, values in query.items() for v in values]
        fake.seen.append((method, path, dict(pairs)))
        try:
            if headers.get("apikey") != service_key:
                raise PostgrestError(401, "PGRST301", "Invalid API key")
            return fake.handle(method, path, pairs, body, headers.get("prefer", ""))
        except PostgrestError as err:
            return err.status, {"code": err.code, "message": err.message, "details": None}
        except asyncpg.PostgresError as err:
            status = 409 if isinstance(err, asyncpg.UniqueViolationError) else 400
            return status, {"code": err.sqlstate, "message": str(err), "details": None, "hint": None}

    try:
        with json_server(answer) as url:
            fake.url = url
            yield fake
    finally:
        fake.run(fake._pool.close())
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join(5)
