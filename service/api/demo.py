"""The live demo page: `GET /demo` and its three static files (plain HTML, JS and CSS from `service/static`).

The page asks for the webcam, streams JPEG frames over `/ws/stream` and draws the results. Only the files listed
here are served (no directory listing, no path from the request reaches the file system); a strict Content
Security Policy allows scripts, styles and connections from this origin only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service.core.errors import NotFound

router = APIRouter(tags=["demo"])

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS = {"demo.js": "text/javascript; charset=utf-8", "demo.css": "text/css; charset=utf-8"}
# 'self' covers ws:// and wss:// to this origin in CSP Level 3; the schemes are listed for older browsers
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
       "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache", "Permissions-Policy": "camera=(self), microphone=()"}


@router.get("/demo", summary="Live demo: your webcam through /ws/stream, drawn as it streams",
            response_class=FileResponse, responses={200: {"content": {"text/html": {}}}})
async def demo() -> FileResponse:
    return FileResponse(STATIC / "demo.html", media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/demo/{asset}", include_in_schema=False)
async def demo_asset(asset: str) -> FileResponse:
    if asset not in ASSETS:
        raise NotFound(f"no demo file {asset!r}")
    return FileResponse(STATIC / asset, media_type=ASSETS[asset], headers=HEADERS)
