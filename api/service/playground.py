"""`GET /playground`: a web page that streams speech, shows its numbers and clones voices (no build step).

Served by the app itself from api/static/playground/ with a strict Content-Security-Policy: scripts, styles and
connections to this origin only, no inline code, no third-party requests. `/` redirects here. TTS_PLAYGROUND_ENABLED
=false removes both routes (404). `/favicon.ico` is served either way (`icon_router`): every browser asks for it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from api.errors import ApiError

router = APIRouter(include_in_schema=False)
icon_router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).resolve().parents[1] / "static" / "playground"
ASSETS = {
    "playground.js": "text/javascript",
    "keep_voice.js": "text/javascript",
    "voices.js": "text/javascript",
    "words.js": "text/javascript",
    "playground.css": "text/css",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@router.get("/")
async def root() -> Response:
    return RedirectResponse("/playground", status_code=307)


@router.get("/playground")
async def page() -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=SECURITY_HEADERS)


@router.get("/playground/{asset}")
async def asset(asset: str) -> Response:
    if asset not in ASSETS:  # a fixed list: no path from the request reaches the file system
        raise ApiError("NOT_FOUND", f"No playground asset {asset!r}.")
    return FileResponse(STATIC / asset, media_type=ASSETS[asset], headers=SECURITY_HEADERS)


@icon_router.get("/favicon.ico")
async def favicon() -> Response:
    return FileResponse(
        STATIC / "favicon.ico", media_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"}
    )
