"""Errors as ``application/problem+json`` (RFC 9457): one handler per error class.

Endpoints raise; these handlers alone turn exceptions into responses, so no
endpoint holds a try/except.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import Conflict, InvalidInput, NotFound, StoreUnavailable, TrackerError

log = logging.getLogger("tracker.web")

MEDIA_TYPE = "application/problem+json"


class HTTPProblem(Exception):
    """A refusal of the HTTP layer itself (auth, size, media type)."""

    status = 400

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class BodyTooLarge(HTTPProblem):
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over {limit // 1024} KiB")


class Unauthorized(HTTPProblem):
    status = 401


class Forbidden(HTTPProblem):
    status = 403


def problem(
    status: int, detail: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    phrase = HTTPStatus(status).phrase
    body = {
        "type": "about:blank",
        "title": phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


async def invalid_input(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidInput)
    return problem(400, str(exc), field=exc.field)


async def not_found(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NotFound)
    return problem(404, str(exc), state=exc.state)


async def conflict(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Conflict)
    if exc.attempt is not None:
        return problem(409, str(exc), state=exc.state, attempt=exc.attempt)
    return problem(409, str(exc), state=exc.state)


async def unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StoreUnavailable)
    return problem(503, str(exc), headers={"Retry-After": "1"})


async def tracker_error(request: Request, exc: Exception) -> JSONResponse:
    return problem(400, str(exc))


async def http_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPProblem)
    return problem(exc.status, exc.detail, headers=exc.headers)


async def http_exception(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own refusals (no such route, method not allowed)."""
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, exc.detail, headers=exc.headers)


class EncodedSlashGuard:
    """Refuses a jid with an encoded ``/`` (``/jobs/a%2Fcancel``) before routing: the
    router reads the path decoded, so it would take it for another path (there, POST
    /jobs/a/cancel) instead of the invalid jid it is (SPEC section 2)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path: bytes = (scope.get("raw_path") or b"") if scope["type"] == "http" else b""
        if raw_path.startswith(b"/jobs/"):
            segment = raw_path[len(b"/jobs/") :].split(b"/", 1)[0].split(b"?", 1)[0]
            if b"%2f" in segment.lower():
                jid = unquote(segment.decode("latin-1"))[:64]
                refused = InvalidInput("jid", f"'/' is not a jid character, got {jid!r}")
                await (await invalid_input(Request(scope), refused))(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem(500, "an unexpected error; it was logged")


HANDLERS: dict[Any, Any] = {
    InvalidInput: invalid_input,
    NotFound: not_found,
    Conflict: conflict,
    StoreUnavailable: unavailable,
    TrackerError: tracker_error,
    HTTPProblem: http_problem,
    HTTPException: http_exception,
    Exception: server_error,
}
