"""GET /playground: a page to try the API in a browser (docs/playground.md).

Paste a key, pick a model, send a prompt, watch its answer stream over the WebSocket API, cancel
it, see the thread's earlier turns and the recent prompts. The page is plain HTML, CSS and
JavaScript in `playground/` beside this module, served as they are (no build step).

These are the API's only routes without a key, on purpose: they serve static files and no data
(the page's one setting, the WebSocket API's client URL, is not a secret: it is a stack output).
Every data call the page makes carries the key the user pasted, in the `Authorization` header of
the API's routes and in the WebSocket's `token` query parameter, both authenticated as always.

Cold start: nothing is read at import. Each file is read once, on its first request, and kept.
"""

import html
from functools import cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from promptsvc.api import deps
from promptsvc.settings import Settings

STATIC = Path(__file__).with_name("playground")
WS_URL_MARK = "{{websocket_url}}"  # in index.html, replaced with the HTML-escaped setting
_ORIGIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")

# Unauthenticated by design (see above): no `principal` dependency; not in the OpenAPI document.
router = APIRouter(prefix="/playground", include_in_schema=False)

SettingsDep = Annotated[Settings, Depends(deps.settings)]


@cache
def _read(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def websocket_origin(url: str) -> str:
    """The origin (`ws://host:port`) of a ws:// or wss:// URL, for the page's Content-Security-Policy;
    empty when the URL is not one (or holds anything an origin does not)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return ""
    if parts.scheme not in ("ws", "wss") or not parts.netloc or not set(parts.netloc) <= _ORIGIN_CHARS:
        return ""
    return f"{parts.scheme}://{parts.netloc}"


def security_headers(websocket_url: str) -> dict[str, str]:
    """Scripts, styles and images only from this origin (no inline script or style, no eval);
    requests only to this origin and the WebSocket API's; no framing, no referrer."""
    connect = " ".join(filter(None, ("'self'", websocket_origin(websocket_url))))
    policy = "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",  # data: the empty favicon (index.html)
            f"connect-src {connect}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Cache-Control": "no-cache",
    }


@router.get("")
def page(settings: SettingsDep) -> Response:
    url = settings.websocket_url.strip() if websocket_origin(settings.websocket_url) else ""
    body = _read("index.html").replace(WS_URL_MARK, html.escape(url, quote=True))
    return Response(body, media_type="text/html; charset=utf-8", headers=security_headers(url))


@router.get("/app.js")
def script(settings: SettingsDep) -> Response:
    return _static("app.js", "text/javascript; charset=utf-8", settings)


@router.get("/style.css")
def style(settings: SettingsDep) -> Response:
    return _static("style.css", "text/css; charset=utf-8", settings)


def _static(name: str, media_type: str, settings: Settings) -> Response:
    return Response(_read(name), media_type=media_type, headers=security_headers(settings.websocket_url))
