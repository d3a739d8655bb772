"""``/openapi.json``, built from the table of endpoints the app routes by.

Each :class:`Endpoint` says what its route takes and answers; the body and response
schemas come from schema.py, where the body checks come from too. Nothing here is
written by hand a second time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .. import __version__
from . import schema
from .schema import Body


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Callable[[Request], Awaitable[Response]]
    summary: str
    body: Body | None = None
    query: tuple[tuple[str, dict[str, Any], str], ...] = ()
    ok: tuple[int, ...] = (200,)
    result: str = "Track"  # a component's name, or a media type
    errors: tuple[int, ...] = ()
    name: str | None = None  # the operationId, when not the handler's name


_OK_TEXT = {200: "OK", 201: "Registered"}
_ERROR_TEXT = {
    400: "Invalid input; nothing changed",
    401: "A token is needed",
    403: "The token does not allow this; or a write from another site; or, without a "
    "token, a client beyond loopback",
    404: "The job has no track (state unknown)",
    408: "The body did not arrive in time",
    409: "The job's state refuses this; nothing changed",
    413: "The body is over 64 KiB",
    415: "The body, or the Content-Type given, is not application/json",
    421: "A Host this server does not answer for",
    503: "Redis does not answer",
}
#: What guard.py may refuse on any route, and on a write besides.
_GUARDED = (403, 421)
_GUARDED_WRITE = (408, 415)
_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": r"^([0-9]{1,18}(-[0-9]{1,18})?)?$"},
    "description": "Resume after this event.",
}
_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def document(endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``endpoints``."""
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tracker",
            "version": __version__,
            "description": "A Redis-backed job tracker (see SPEC section 6).",
        },
        "paths": paths,
        "components": {
            "schemas": schema.COMPONENTS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
    }


def _operation(e: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": e.summary, "operationId": e.name or e.handler.__name__}
    params: list[dict[str, Any]] = []
    if "{jid}" in e.path:
        params.append({"name": "jid", "in": "path", "required": True, "schema": schema.NAME})
    for name, value, description in e.query:
        params.append(
            {"name": name, "in": "query", "required": False, "schema": value,
             "description": description}
        )  # fmt: skip
    if e.result == "text/event-stream":
        params.append(_LAST_EVENT_ID)
    if params:
        op["parameters"] = params
    if e.body is not None:
        ref = {"$ref": f"#/components/schemas/{e.body.name}"}
        op["requestBody"] = {
            "required": any(spec.required for spec in e.body.fields.values()),
            "content": {"application/json": {"schema": ref}},
        }
    if "/" in e.result:
        content: dict[str, Any] = {e.result: {"schema": {"type": "string"}}}
    else:
        content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{e.result}"}}}
    responses: dict[str, Any] = {
        str(status): {"description": _OK_TEXT.get(status, "OK"), "content": content}
        for status in e.ok
    }
    guarded = _GUARDED if e.method == "GET" else (*_GUARDED, *_GUARDED_WRITE)
    for status in sorted({*e.errors, *guarded}):
        responses[str(status)] = {"description": _ERROR_TEXT[status], "content": _PROBLEM}
    op["responses"] = responses
    return op
