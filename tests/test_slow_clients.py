"""Deadlines on slow clients, and the refusals of the HTTP protocol itself, through real
servers on raw sockets: a client that stalls in its headers or its body is cut off
within ``TRACKER_HTTP_READ_TIMEOUT``, holding nothing meanwhile; a request line that is
not HTTP gets problem+json; a stop with an event stream open ends it, without a
traceback. Then the same guards under ``uvicorn server:app``, as the README offers it."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from conftest import serving, wait_until

from tracker import Settings, Tracker
from tracker.web import create_app
from tracker.web.protocol import protocol

DEADLINE = 1.5  # the read timeout these servers run with
MARGIN = 3.0  # what a loaded machine may add to it
ROOT = Path(__file__).parent.parent  # where server.py is


@dataclass
class Server:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connect(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=DEADLINE + MARGIN)


@pytest.fixture
def store(valkey_store: Tracker) -> Tracker:
    """On the suite's Valkey only: what is tried is the HTTP layer's, whatever the backend."""
    return valkey_store


@dataclass
class Running:
    server: uvicorn.Server
    thread: threading.Thread


@pytest.fixture
def runner(valkey_url: str, store: Tracker) -> Iterator[Running]:
    """The app under uvicorn with the protocol ``tracker serve`` runs, in a thread; its
    log goes to the root logger (so to ``caplog``)."""
    settings = Settings(namespace=store.settings.namespace, http_read_timeout=DEADLINE)
    app = create_app(settings, url=valkey_url, maintenance=False)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        log_config=None,
        http=protocol(DEADLINE),
        timeout_graceful_shutdown=3,
    )
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    wait_until(lambda: served.started)
    yield Running(served, thread)
    served.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def server(runner: Running) -> Server:
    return Server("127.0.0.1", runner.server.servers[0].sockets[0].getsockname()[1])


def answer_then_close(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took; fails if
    it still holds the connection after the deadline and a margin."""
    start = time.monotonic()
    received = b""
    with sock:
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                pytest.fail(f"still open after {time.monotonic() - start:.1f} s: {received!r}")
            if not chunk:
                return received, time.monotonic() - start
            received += chunk


def problem_in(raw: bytes, status: int) -> dict[str, object]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} "), raw
    fields = {name.lower(): value.strip() for name, _, value in (f.partition(":") for f in lines)}
    assert fields["content-type"] == "application/problem+json", raw
    assert fields["connection"] == "close", raw
    problem: dict[str, object] = json.loads(body)
    assert problem["status"] == status
    return problem


def test_a_client_that_stalls_in_its_headers_gets_408_within_the_deadline(
    server: Server,
) -> None:
    sock = server.connect()
    sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half")
    raw, took = answer_then_close(sock)
    assert "headers" in str(problem_in(raw, 408)["detail"])
    assert DEADLINE * 0.8 <= took <= DEADLINE + MARGIN


def test_a_client_that_connects_and_says_nothing_is_closed_within_the_deadline(
    server: Server,
) -> None:
    raw, took = answer_then_close(server.connect())
    assert raw == b""
    assert took <= DEADLINE + MARGIN


def test_a_client_that_stalls_in_its_body_gets_408_and_changes_nothing(
    server: Server, store: Tracker
) -> None:
    store.register("j1")
    store.start("j1")
    before = store.track_get("j1")
    sock = server.connect()
    sock.sendall(
        b"POST /jobs/j1/track HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        b'{"percent": 5'
    )
    raw, took = answer_then_close(sock)
    assert "body" in str(problem_in(raw, 408)["detail"])
    assert DEADLINE * 0.8 <= took <= DEADLINE + MARGIN
    assert store.track_get("j1") == before


def test_the_next_request_on_a_kept_alive_connection_has_the_deadline_too(
    server: Server,
) -> None:
    sock = server.connect()
    sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = b""
    while not first.endswith(b'{"status":"ok"}'):
        first += sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200 "), first
    sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and no end
    raw, took = answer_then_close(sock)
    problem_in(raw, 408)
    assert took <= DEADLINE + MARGIN


def test_stalled_clients_hold_up_no_one_else(server: Server) -> None:
    stalled = [server.connect() for _ in range(20)]
    for sock in stalled:
        sock.sendall(b"POST /jobs/j1/start HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
    start = time.monotonic()
    assert httpx.get(f"{server.url}/livez", timeout=DEADLINE).status_code == 200
    assert time.monotonic() - start < DEADLINE  # served while they still stall
    for sock in stalled:
        sock.close()


@pytest.mark.parametrize(
    "line",
    [
        "GET /jobs/j\u00f6b HTTP/1.1".encode(),
        b"GET /jobs/\xff HTTP/1.1",
        b"GET /jobs/a b HTTP/1.1",
        b"\x00\x01\x02",
    ],
)
def test_a_request_that_is_not_http_gets_problem_json(server: Server, line: bytes) -> None:
    sock = server.connect()
    sock.sendall(line + b"\r\nHost: 127.0.0.1\r\n\r\n")
    raw, _ = answer_then_close(sock)
    problem_in(raw, 400)


def test_a_stop_with_an_event_stream_open_ends_it_without_a_traceback(
    runner: Running, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with httpx.stream("GET", f"{server.url}/events", timeout=10) as response:
        lines = response.iter_lines()
        assert next(lines) == "retry: 1000"  # subscribed
        start = time.monotonic()
        runner.server.should_exit = True
        rest = list(lines)  # the stream ends, cleanly, when the server stops
    runner.thread.join(timeout=10)
    assert not runner.thread.is_alive()
    assert time.monotonic() - start < 3  # before uvicorn's graceful timeout would cancel it
    assert all(line == "" or line.startswith(":") for line in rest)
    logged = "\n".join(
        record.getMessage() + (str(record.exc_info) if record.exc_info else "")
        for record in caplog.records
    )
    assert "CancelledError" not in logged
    assert "Exception in ASGI application" not in logged
    assert "Cancel" not in logged  # uvicorn's "Cancel N running task(s), timeout ..."


# --- uvicorn server:app ---------------------------------------------------------------


@pytest.fixture(params=["plain", "--http server:http"])
def uvicorn_app(
    request: pytest.FixtureRequest, valkey_url: str, tmp_path: Path
) -> Iterator[tuple[Server, str]]:
    """``uvicorn server:app`` in a subprocess, with or without the protocol of
    ``tracker serve``; its server and the option it ran with."""
    option = request.param
    extra = option.split() if option != "plain" else []
    command = [sys.executable, "-m", "uvicorn", "server:app", "--port", "{port}", *extra]
    log = tmp_path / "uvicorn.log"
    timeout = str(DEADLINE)
    with serving(command, valkey_url, log, cwd=ROOT, TRACKER_HTTP_READ_TIMEOUT=timeout) as url:
        yield Server("127.0.0.1", int(url.rsplit(":", 1)[1])), option


def test_uvicorn_server_app_is_guarded_as_tracker_serve_is(
    uvicorn_app: tuple[Server, str],
) -> None:
    server, option = uvicorn_app
    with httpx.Client(base_url=server.url, timeout=5) as http:
        assert http.put("/jobs/j1", json={}).status_code == 201
        foreign = http.get("/jobs/j1", headers={"Host": f"attacker.example:{server.port}"})
        assert foreign.status_code == 421
        form = {
            "Origin": "http://evil.example",
            "Sec-Fetch-Site": "cross-site",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        assert http.post("/jobs/j1/cancel", headers=form).status_code == 403
        assert (
            http.post("/jobs/j1/cancel", headers={"Content-Type": "text/plain"}).status_code == 415
        )
        assert http.get("/jobs/j1").json()["state"] == "enqueued"
    sock = server.connect()
    sock.sendall(
        b"PUT /jobs/j2 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{"
    )
    raw, took = answer_then_close(sock)  # the body's deadline is the app's own
    problem_in(raw, 408)
    assert took <= DEADLINE + MARGIN
    if option != "plain":  # the headers' deadline needs the protocol
        sock = server.connect()
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        raw, took = answer_then_close(sock)
        problem_in(raw, 408)
        assert took <= DEADLINE + MARGIN
