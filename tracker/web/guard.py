"""What a request must be before any endpoint sees it (SPEC section 10, "Hosts and
origins"): for a host this server answers for, from a client it may serve, a write
from no other site, with a JSON body, and its body in time.

An ASGI middleware in the app itself, so ``uvicorn server:app`` is guarded as
``tracker serve`` is. Browsers send ``Origin`` and ``Sec-Fetch-Site`` on every
cross-site write, and a page cannot forge them; curl and scripts send neither, so a
bare ``curl -X POST`` passes. A page can send ``text/plain`` or a form without asking
(no CORS preflight), never ``application/json``: so a body must be JSON. The ``Host``
check stops DNS rebinding: a page of ``attacker.example``, resolved to 127.0.0.1,
still sends ``Host: attacker.example``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import READ_METHODS
from .problems import HTTPProblem, problem

#: The names every server answers for, besides its own address and TRACKER_ALLOWED_HOSTS.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_HOST = re.compile(r"(?P<name>[a-z0-9.\-]+|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<host>[^/]+)")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SAME_SITE = frozenset({"same-origin", "none"})


class RequestTimeout(HTTPProblem):
    status = 408

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the request body did not arrive within {seconds:g} s", headers={"Connection": "close"}
        )


class RequestGuard:
    """Refuses, before routing: a foreign ``Host`` (421); a client beyond loopback when
    writes need no token and the server was not told ``insecure`` (403); a write from
    another site (403); a write with a body that is not ``application/json`` (415).
    A write's body must then arrive within ``read_timeout`` seconds (408)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Iterable[str],
        serves_anyone: bool,
        read_timeout: float,
    ) -> None:
        self.app = app
        self.hosts = frozenset((*LOOPBACK_NAMES, *(h.lower() for h in allowed_hosts)))
        self.serves_anyone = serves_anyone
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
        elif scope["method"] in READ_METHODS:  # their bodies are never read
            await self.app(scope, receive, send)
        else:
            await self.app(scope, _in_time(receive, self.read_timeout), send)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        host = headers.get("host")
        if host is not None and not self._answers_for(host, scope.get("server")):
            return problem(
                421,
                f"this server does not answer for the host {host[:64]!r} "
                "(add it to TRACKER_ALLOWED_HOSTS)",
            )
        if not self.serves_anyone and not _loopback_client(scope.get("client")):
            return problem(
                403,
                "without TRACKER_API_TOKEN this server serves its own machine only "
                "(set a token, or TRACKER_INSECURE=1)",
            )
        if scope["method"] in READ_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None and not _same_origin(origin, scope.get("scheme", "http"), host):
            return problem(403, f"a write from another origin ({origin[:64]!r}) is refused")
        site = headers.get("sec-fetch-site")
        if site is not None and site.lower() not in _SAME_SITE:
            return problem(
                403, f"a write from another site (Sec-Fetch-Site: {site[:32]!r}) is refused"
            )
        media = headers.get("content-type")
        if media is not None and media.split(";")[0].strip().lower() != "application/json":
            return problem(415, f"a write's body must be application/json, got {media[:64]!r}")
        if media is None and _has_body(headers):
            return problem(415, "a write's body needs Content-Type: application/json")
        return None

    def _answers_for(self, host: str, server: object) -> bool:
        parsed = _split_host(host)
        if parsed is None:
            return False
        name = parsed[0]
        own = server[0] if isinstance(server, list | tuple) and server else None
        return name in self.hosts or name == own


def _split_host(value: str) -> tuple[str, int | None] | None:
    """A ``Host`` header (or an origin's host) as its name, without brackets, and port."""
    match = _HOST.fullmatch(value.strip().lower())
    if match is None:
        return None
    port = match["port"]
    return match["name"].strip("[]"), None if port is None else int(port)


def _same_origin(origin: str, scheme: str, host: str | None) -> bool:
    """Whether ``origin`` is this request's own: its scheme, host name and port."""
    match = _ORIGIN.fullmatch(origin.strip().lower())
    if match is None or host is None or match["scheme"] != scheme:
        return False  # "null" included: a sandboxed frame, a file, a redirect
    theirs, ours = _split_host(match["host"]), _split_host(host)
    if theirs is None or ours is None:
        return False
    default = _DEFAULT_PORTS[scheme]
    return theirs[0] == ours[0] and (theirs[1] or default) == (ours[1] or default)


def _loopback_client(client: object) -> bool:
    if not isinstance(client, list | tuple) or not client:
        return True  # a Unix socket: only this machine reaches it
    try:
        return ipaddress.ip_address(str(client[0])).is_loopback
    except ValueError:
        return False


def _has_body(headers: Headers) -> bool:
    length = headers.get("content-length")
    return "transfer-encoding" in headers or (length is not None and length.strip() != "0")


def _in_time(receive: Receive, seconds: float) -> Receive:
    """``receive``, refusing a body that has not all arrived ``seconds`` from now."""
    deadline = asyncio.get_running_loop().time() + seconds
    complete = False

    async def receive_in_time() -> Message:
        nonlocal complete
        if complete:  # what follows the body is only the disconnect
            return await receive()
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            raise RequestTimeout(seconds) from None
        complete = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    return receive_in_time
