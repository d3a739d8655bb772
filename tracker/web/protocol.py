"""The HTTP/1.1 protocol ``tracker serve`` runs: uvicorn's h11 protocol, with a deadline
on a request's headers, its own refusals in problem+json, and open responses (event
streams) ended at once when the server stops.

uvicorn waits for a request's headers as long as the client takes (its keep-alive
timeout covers only the quiet between requests), so a client that sends half its
headers, or connects and says nothing, would hold its connection for good. The app
cannot help: it sees a request only once its headers are in (it bounds the body itself,
see guard.py). ``uvicorn server:app --http server:http`` runs this protocol too.
"""

from __future__ import annotations

import asyncio
import contextlib
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .problems import problem


class TrackerProtocol(H11Protocol):
    """uvicorn's h11 protocol; :func:`protocol` makes one with its deadline."""

    read_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_due: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_clock()

    def data_received(self, data: bytes) -> None:
        self._start_header_clock()  # a next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # its headers are in
            self._stop_header_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_clock()
        super().connection_lost(exc)

    def _start_header_clock(self) -> None:
        if self._headers_due is None and self.conn.their_state is h11.IDLE:
            self._headers_due = self.loop.call_later(self.read_timeout, self._headers_late)

    def _stop_header_clock(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _headers_late(self) -> None:
        self._headers_due = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:  # part of a request came: say why it ends
            self._refuse(408, f"the request headers did not arrive within {self.read_timeout:g} s")
        else:
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """h11 refused the request itself (raw non-ASCII in its line, a malformed header
        or chunk)."""
        if self.conn.our_state is h11.SEND_BODY:  # amid a response: no room for another
            self.transport.close()
            return
        self._refuse(400, "not a valid HTTP/1.1 request (its request line or a header)")

    def _refuse(self, status: int, detail: str) -> None:
        """Answer ``status`` in problem+json and close, whatever h11's state."""
        response = problem(status, detail, headers={"Connection": "close"})
        head = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()
        fields = b"".join(name + b": " + value + b"\r\n" for name, value in response.raw_headers)
        self.transport.write(head + fields + b"\r\n" + bytes(response.body))
        self.transport.close()

    def shutdown(self) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            # an open response (an event stream) would hold the shutdown until uvicorn
            # cancels it, with a traceback: end it now, as if its client had gone
            cycle.disconnected = True
            cycle.message_event.set()
            with contextlib.suppress(h11.LocalProtocolError):
                self.transport.write(self.conn.send(h11.EndOfMessage()))
            self.transport.close()
            return
        super().shutdown()


def protocol(read_timeout: float) -> type[TrackerProtocol]:
    """The protocol class, with ``read_timeout`` seconds for a request's headers."""
    return type("TrackerProtocol", (TrackerProtocol,), {"read_timeout": read_timeout})
