"""The request path's set-up stays on the event loop: FastAPI runs a plain `def` dependency in a worker thread, and
under load each such hop waits for the GIL (up to a switch interval, 5 ms) before a stream's first audio."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute

from api import create_app
from shared.settings import Settings


def _runs_on_the_loop(call: Any) -> bool:
    if inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call):
        return True
    # security schemes (HTTPBearer, APIKeyHeader) are instances with an async __call__
    return not inspect.isfunction(call) and inspect.iscoroutinefunction(type(call).__call__)


def _dependencies(dependant: Dependant) -> list[Any]:
    out = []
    for sub in dependant.dependencies:
        out.append(sub.call)
        out.extend(_dependencies(sub))
    return out


def _routes(routes: list[Any]) -> list[APIRoute | APIWebSocketRoute]:
    out: list[APIRoute | APIWebSocketRoute] = []
    for route in routes:
        if isinstance(route, APIRoute | APIWebSocketRoute):
            out.append(route)
        elif getattr(route, "original_router", None) is not None:  # an included router (FastAPI 0.12x)
            out.extend(_routes(route.original_router.routes))
    return out


def test_every_dependency_of_a_route_is_async() -> None:
    app = create_app(Settings(auth_enabled=True, api_keys="k"))  # no lifespan: nothing loads
    checked = 0
    for route in _routes(app.routes):
        for call in _dependencies(route.dependant):
            checked += 1
            assert _runs_on_the_loop(call), (
                f"{route.path}: dependency {getattr(call, '__name__', call)!r} is a "
                "plain def (FastAPI runs it in a worker thread)"
            )
    assert checked > 20
