"""Bearer tokens: ``TRACKER_API_TOKEN`` guards writes, ``TRACKER_READ_TOKEN`` reads.

An ASGI middleware, so no endpoint can forget it. Health probes and the dashboard's
static assets (code, no data) stay open. A browser's EventSource cannot send a
header, so reads also take the token as ``?token=``; a browser opening the dashboard
without a good one gets a page with a form asking for it (static/token.html).
"""

from __future__ import annotations

import hmac
from importlib import resources
from string import Template
from urllib.parse import parse_qs

from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .problems import problem

STATIC = resources.files("tracker") / "web" / "static"
OPEN_PATHS = frozenset({"/livez", "/heartbeat", "/readyz"})
OPEN_PREFIXES = ("/static/",)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TokenAuth:
    def __init__(self, app: ASGIApp, api_token: str | None, read_token: str | None) -> None:
        self.app = app
        self.api_token = api_token.encode() if api_token else None
        self.read_token = read_token.encode() if read_token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._open(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["method"] in READ_METHODS:
            accepted = (
                [t for t in (self.read_token, self.api_token) if t] if self.read_token else []
            )
            what = "reading"
        else:
            accepted = [self.api_token] if self.api_token else []
            what = "writing"
        if not accepted:
            await self.app(scope, receive, send)
            return
        given = _bearer(scope)
        if given is None and what == "reading":
            given = _query_token(scope)
        if given is None:
            status, detail = 401, f"{what} needs a token: send 'Authorization: Bearer <token>'"
        elif not any(hmac.compare_digest(given, token) for token in accepted):
            status, detail = 403, f"the token given does not allow {what}"
        else:
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/" and _wants_html(scope):
            response: Response = _token_page(status)
        else:
            challenge = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            response = problem(status, detail, headers=challenge)
        await response(scope, receive, send)

    @staticmethod
    def _open(path: str) -> bool:
        return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def _wants_html(scope: Scope) -> bool:
    """A browser opening the dashboard, rather than a client reading the API."""
    return any(name == b"accept" and b"text/html" in value for name, value in scope["headers"])


def _token_page(status: int) -> HTMLResponse:
    """The dashboard's door: a form asking for the token, saying why it is asked."""
    if status == 401:
        title, detail = "This dashboard needs a token", "Enter the token its server was given."
    else:
        title, detail = "That token was refused", "It does not allow reading: try another."
    page = Template((STATIC / "token.html").read_text(encoding="utf-8"))
    return HTMLResponse(page.substitute(title=title, detail=detail), status_code=status)


def _bearer(scope: Scope) -> bytes | None:
    value: bytes
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return b""  # a malformed header is a wrong token, not a missing one
    return None


def _query_token(scope: Scope) -> bytes | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0].encode() if values else None
