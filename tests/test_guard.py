"""SPEC section 10, "Hosts and origins": no page of another site can write, whatever a
browser lets it send; curl still can; a foreign ``Host`` is refused (DNS rebinding);
a tokenless server serves its own machine only. On the app object itself, so
``uvicorn server:app`` is held to it as ``tracker serve`` is (see test_slow_clients.py
for the app under uvicorn)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import local_client
from starlette.testclient import TestClient

from tracker import Settings, Tracker
from tracker.web import create_app

PROBLEM = "application/problem+json"
BASE = "http://localhost:8000"  # where the dashboard's page comes from, too
EVIL = "http://evil.example"


def _client(real_url: str, namespace: str, **options: Any) -> TestClient:
    settings = {k: options.pop(k) for k in list(options) if k in Settings.__dataclass_fields__}
    app = create_app(Settings(namespace=namespace, **settings), url=real_url, maintenance=False)
    return local_client(app, base_url=BASE, raise_server_exceptions=False, **options)


@pytest.fixture
def http(real_url: str, namespace: str) -> Iterator[TestClient]:
    with _client(real_url, namespace) as client:
        yield client


def refused(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == status
    return str(response.json()["detail"])


def snapshot(store: Tracker) -> tuple[Any, ...]:
    """What a refused write must leave as it was: the job, the unregistered one, events."""
    return store.track_get("j1"), store.state("j2"), store.client.xlen(store.keys.events)


#: Every write: (method, path, a JSON body it takes).
WRITES: list[tuple[str, str, bytes]] = [
    ("PUT", "/jobs/j2", b"{}"),
    ("POST", "/jobs/j1/track", b'{"percent": 5}'),
    ("POST", "/jobs/j1/start", b"{}"),
    ("POST", "/jobs/j1/success", b""),
    ("POST", "/jobs/j1/fail", b'{"error": "x"}'),
    ("POST", "/jobs/j1/cancel", b""),
    ("POST", "/jobs/j1/pause", b""),
    ("POST", "/jobs/j1/resume", b""),
    ("POST", "/jobs/j1/seal", b""),
]
#: What a browser sends on a write a page of another site makes: (headers, body or None
#: for the write's own JSON body).
CROSS_SITE: dict[str, tuple[dict[str, str], bytes | None]] = {
    "form, empty": (
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site",
         "Content-Type": "application/x-www-form-urlencoded"},
        b"",
    ),
    "form with fields": (
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site",
         "Content-Type": "application/x-www-form-urlencoded"},
        b"percent=5",
    ),
    "text/plain JSON": (
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
        None,
    ),
    "no-cors fetch, no body": ({"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}, b""),
    "JSON, if a browser ever let it": (
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"},
        None,
    ),
    "sandboxed frame": ({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, b""),
    "another port of localhost": (
        {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"},
        b"",
    ),
    "https page of the same host": ({"Origin": "https://localhost:8000"}, b""),
    "Sec-Fetch-Site alone": ({"Sec-Fetch-Site": "cross-site"}, b""),
}  # fmt: skip


def _arrange(store: Tracker) -> None:
    store.register("j1")
    store.start("j1")


@pytest.mark.parametrize("how", list(CROSS_SITE))
@pytest.mark.parametrize(("method", "path", "body"), WRITES, ids=[w[1] for w in WRITES])
def test_no_write_from_another_site_succeeds_however_it_is_sent(
    http: TestClient, store: Tracker, method: str, path: str, body: bytes, how: str
) -> None:
    _arrange(store)
    before = snapshot(store)
    headers, sent = CROSS_SITE[how]
    refused(
        http.request(method, path, content=body if sent is None else sent, headers=headers), 403
    )
    assert snapshot(store) == before


def test_a_write_from_another_site_is_refused_even_with_the_token(
    real_url: str, namespace: str, store: Tracker
) -> None:
    _arrange(store)
    before = snapshot(store)
    with _client(real_url, namespace, api_token="s3cret") as http:
        token = {"Authorization": "Bearer s3cret"}
        refused(http.post("/jobs/j1/cancel", headers={**token, "Origin": EVIL}), 403)
        assert snapshot(store) == before
        assert http.post("/jobs/j1/cancel", headers=token).json()["state"] == "cancelled"


def test_a_write_from_the_servers_own_page_passes(http: TestClient, store: Tracker) -> None:
    _arrange(store)
    headers = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}
    answer = http.post("/jobs/j1/track", json={"percent": 7}, headers=headers)
    assert answer.json()["percent"] == 7
    assert http.post("/jobs/j1/cancel", headers={"Origin": "HTTP://LOCALHOST:8000"}).is_success


def test_curl_writes_with_no_body_and_no_content_type(http: TestClient, store: Tracker) -> None:
    store.register("j1")
    assert http.post("/jobs/j1/start").json()["state"] == "working"
    # a URL typed into the address bar is no other site's doing
    assert http.post("/jobs/j1/success", headers={"Sec-Fetch-Site": "none"}).is_success


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"Content-Type": "text/plain"}, b'{"percent": 5}'),
        ({"Content-Type": "text/plain"}, b""),  # any content type at all must be JSON
        ({"Content-Type": "application/x-www-form-urlencoded"}, b""),
        ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x--"),
        ({"Content-Type": "application/merge-patch+json"}, b'{"percent": 5}'),
        ({}, b'{"percent": 5}'),  # a body with no content type
    ],
)
def test_a_write_with_a_body_or_a_content_type_needs_json(
    http: TestClient, store: Tracker, headers: dict[str, str], body: bytes
) -> None:
    _arrange(store)
    before = snapshot(store)
    assert "application/json" in refused(
        http.post("/jobs/j1/track", content=body, headers=headers), 415
    )
    assert snapshot(store) == before


def test_json_with_a_charset_is_json(http: TestClient, store: Tracker) -> None:
    _arrange(store)
    headers = {"Content-Type": "Application/JSON; charset=utf-8"}
    answer = http.post("/jobs/j1/track", content=b'{"percent": 9}', headers=headers)
    assert answer.json()["percent"] == 9


@pytest.mark.parametrize("host", ["attacker.example:8000", "attacker.example", "localhost.evil"])
@pytest.mark.parametrize(("method", "path"), [("GET", "/jobs/j1"), ("PUT", "/jobs/j2"),
                                              ("GET", "/"), ("GET", "/livez")])  # fmt: skip
def test_a_foreign_host_is_421_and_changes_nothing(
    http: TestClient, store: Tracker, host: str, method: str, path: str
) -> None:
    _arrange(store)
    before = snapshot(store)
    sent = http.request(method, path, json={} if method == "PUT" else None, headers={"Host": host})
    assert "TRACKER_ALLOWED_HOSTS" in refused(sent, 421)
    assert snapshot(store) == before


@pytest.mark.parametrize(
    "host", ["localhost:8000", "localhost", "127.0.0.1:1", "[::1]:8000", "LOCALHOST:8000"]
)
def test_loopback_names_are_answered_on_any_port(
    http: TestClient, store: Tracker, host: str
) -> None:
    store.register("j1")
    assert http.get("/jobs/j1", headers={"Host": host}).status_code == 200


def test_the_servers_own_address_and_the_allowed_hosts_are_answered(
    real_url: str, namespace: str, store: Tracker
) -> None:
    store.register("j1")
    options = {"allowed_hosts": ("tracker.example.com", "10.0.0.5")}
    with _client(real_url, namespace, **options) as http:
        for host in ("tracker.example.com", "tracker.example.com:443", "10.0.0.5:8000"):
            assert http.get("/jobs/j1", headers={"Host": host}).status_code == 200, host
        refused(http.get("/jobs/j1", headers={"Host": "other.example.com"}), 421)
    app = create_app(Settings(namespace=namespace), url=real_url, maintenance=False)
    # the address a request came in on (here the TestClient's "server") is the server's own
    with local_client(app, base_url="http://192.0.2.7:8000") as http:
        assert http.get("/jobs/j1").status_code == 200


def test_a_tokenless_server_serves_its_own_machine_only(
    real_url: str, namespace: str, store: Tracker
) -> None:
    store.register("j1")
    remote = ("203.0.113.9", 40000)
    app = create_app(Settings(namespace=namespace), url=real_url, maintenance=False)
    with TestClient(app, base_url=BASE, client=remote) as http:
        assert "TRACKER_INSECURE" in refused(http.get("/jobs/j1"), 403)
        refused(http.post("/jobs/j1/cancel"), 403)
    assert store.state("j1") == "enqueued"
    insecure = create_app(
        Settings(namespace=namespace, insecure=True), url=real_url, maintenance=False
    )
    with TestClient(insecure, base_url=BASE, client=remote) as http:
        assert http.get("/jobs/j1").status_code == 200
    guarded = create_app(
        Settings(namespace=namespace, api_token="s3cret"), url=real_url, maintenance=False
    )
    with TestClient(guarded, base_url=BASE, client=remote) as http:
        assert http.get("/jobs/j1").status_code == 200
        refused(http.post("/jobs/j1/cancel"), 401)
        assert http.post("/jobs/j1/pause", headers={"Authorization": "Bearer s3cret"}).is_success
