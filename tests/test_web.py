"""The HTTP contract of SPEC section 6, endpoint by endpoint, through Starlette's
TestClient against real servers. A refused request changes nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import rq
from conftest import local_client, wait_until
from starlette.testclient import TestClient

from tracker import Settings, Tracker
from tracker.times import parse_time
from tracker.web import create_app
from tracker.web.app import ENDPOINTS

PROBLEM = "application/problem+json"


@pytest.fixture
def store(real_url: str, namespace: str) -> Iterator[Tracker]:
    """A Python client on the app's namespace, to arrange and to check."""
    with Tracker.from_url(real_url, Settings(namespace=namespace)) as tracker:
        yield tracker


def _app(real_url: str, namespace: str, **settings: Any) -> TestClient:
    app = create_app(Settings(namespace=namespace, **settings), url=real_url, maintenance=False)
    return local_client(app, raise_server_exceptions=False)


@pytest.fixture
def http(real_url: str, namespace: str) -> Iterator[TestClient]:
    with _app(real_url, namespace) as client:
        yield client


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"]
    return body  # type: ignore[no-any-return]


def working(store: Tracker, jid: str = "j1") -> None:
    store.register(jid)
    store.start(jid)


def events(store: Tracker) -> int:
    return int(store.client.xlen(store.keys.events))


# --- register -------------------------------------------------------------------


def test_register_is_201_then_200_for_the_same_body(http: TestClient) -> None:
    first = http.put("/jobs/j1", json={"queue": "q1", "labels": {"team": "a"}})
    assert first.status_code == 201
    assert first.json()["state"] == "enqueued"
    assert first.json()["labels"] == {"team": "a"}
    again = http.put("/jobs/j1", json={"queue": "q1", "labels": {"team": "a"}})
    assert again.status_code == 200
    assert again.json() == first.json()


def test_register_with_a_different_body_is_a_409_naming_the_state(http: TestClient) -> None:
    http.put("/jobs/j1", json={"queue": "q1"})
    body = problem(http.put("/jobs/j1", json={"queue": "q2"}), 409)
    assert body["state"] == "enqueued"


def test_register_with_pending_prerequisites_waits(http: TestClient) -> None:
    track = http.put("/jobs/late", json={"prerequisites": ["early"]}).json()
    assert track["state"] == "waiting"
    assert track["prerequisites"] == {"total": 1, "pending": 1}


def test_register_with_a_payload_enqueues_into_rq(http: TestClient, store: Tracker) -> None:
    queue = "q-" + store.settings.namespace
    payload = {"func": "tests.jobs.add", "args": [1, 2]}
    assert http.put("/jobs/pj1", json={"queue": queue, "payload": payload}).status_code == 201
    rq_queue = rq.Queue(queue, connection=store.client)
    try:
        assert rq_queue.job_ids == ["pj1"]
        assert rq_queue.fetch_job("pj1").func_name == "tests.jobs.add"  # type: ignore[union-attr]
    finally:
        rq_queue.empty()


def test_a_batch_and_its_children(http: TestClient) -> None:
    http.put("/jobs/b1", json={"batch": True})
    http.put("/jobs/c1", json={"parent": "b1"})
    http.post("/jobs/c1/start")
    sealed = http.post("/jobs/b1/seal").json()
    assert sealed["batch"]["sealed"] is True
    http.post("/jobs/c1/success")
    assert http.get("/jobs/b1").json()["state"] == "success"


# --- TRACK GET / SET --------------------------------------------------------------


def test_track_get_of_an_unknown_job_is_404_with_state_unknown(http: TestClient) -> None:
    body = problem(http.get("/jobs/nobody"), 404)
    assert body["state"] == "unknown"


def test_track_set_returns_the_track(http: TestClient, store: Tracker) -> None:
    working(store)
    response = http.post(
        "/jobs/j1/track",
        json={
            "jid": "j1",
            "percent": 40,
            "desc": "step 2",
            "reserve_until": "2099-01-01T00:00:00Z",
        },
    )
    assert response.status_code == 200
    track = response.json()
    assert (track["percent"], track["desc"]) == (40, "step 2")
    assert track["reserve_until"] == "2099-01-01T00:00:00Z"
    assert http.get("/jobs/j1").json() == track


def test_track_set_with_another_jid_in_the_body_is_refused(
    http: TestClient, store: Tracker
) -> None:
    working(store)
    body = problem(http.post("/jobs/j1/track", json={"jid": "j2", "percent": 5}), 400)
    assert body["field"] == "jid"
    assert store.track_get("j1").percent is None


def test_a_write_to_an_unknown_job_is_404_and_creates_nothing(
    http: TestClient, store: Tracker
) -> None:
    for path, body in [
        ("/jobs/ghost/track", {"percent": 1}),
        ("/jobs/ghost/start", {}),
        ("/jobs/ghost/success", None),
        ("/jobs/ghost/fail", {"error": "x"}),
        ("/jobs/ghost/cancel", None),
        ("/jobs/ghost/pause", None),
        ("/jobs/ghost/resume", None),
        ("/jobs/ghost/seal", None),
    ]:
        assert problem(http.post(path, json=body), 404)["state"] == "unknown", path
    assert store.track_get("ghost").state == "unknown"
    assert list(store.client.scan_iter(match="{" + store.settings.namespace + "}:*")) == []


# (setup, method, path, body, state in the 409): each must change nothing at all
REFUSALS: list[tuple[str, str, str, Any, str]] = [
    ("success", "POST", "/jobs/j1/track", {"percent": 5}, "success"),
    ("cancelled", "POST", "/jobs/j1/track", {"desc": "late"}, "cancelled"),
    ("enqueued", "POST", "/jobs/j1/track", {"reserve_until": "2099-01-01T00:00:00Z"}, "enqueued"),
    ("working", "POST", "/jobs/j1/start", None, "working"),
    ("cancelled", "POST", "/jobs/j1/start", None, "cancelled"),
    ("success", "POST", "/jobs/j1/start", None, "success"),
    ("cancelled", "POST", "/jobs/j1/success", None, "cancelled"),
    ("dead", "POST", "/jobs/j1/fail", {"error": "again"}, "dead"),
    ("working", "POST", "/jobs/j1/pause", None, "working"),
    ("success", "POST", "/jobs/j1/pause", None, "success"),
    ("success", "POST", "/jobs/j1/cancel", None, "success"),
    ("enqueued", "POST", "/jobs/j1/resume", None, "enqueued"),
    ("enqueued", "POST", "/jobs/j1/seal", None, "enqueued"),
    ("enqueued", "PUT", "/jobs/j1", {"queue": "elsewhere"}, "enqueued"),
    ("batch", "POST", "/jobs/j1/track", {"reserve_until": "2099-01-01T00:00:00Z"}, "working"),
    ("batch", "POST", "/jobs/j1/track", {"percent": 5, "desc": "mine"}, "working"),
    ("batch", "POST", "/jobs/j1/success", None, "working"),
]


def _arrange(store: Tracker, state: str) -> None:
    if state == "batch":  # a batch is working from the start: its state is computed
        store.register("j1", batch=True)
        return
    store.register("j1", max_attempts=1)
    if state in ("working", "success", "dead"):
        store.start("j1")
    if state == "success":
        store.success("j1")
    elif state == "dead":
        store.fail("j1", "boom")
    elif state == "cancelled":
        store.cancel("j1")
    assert store.state("j1") == state


@pytest.mark.parametrize(("setup", "method", "path", "body", "state"), REFUSALS)
def test_a_refused_transition_is_409_with_the_state_and_changes_nothing(
    http: TestClient, store: Tracker, setup: str, method: str, path: str, body: Any, state: str
) -> None:
    _arrange(store, setup)
    before, stream = store.track_get("j1"), events(store)
    assert problem(http.request(method, path, json=body), 409)["state"] == state
    assert store.track_get("j1") == before
    assert events(store) == stream


def test_a_child_after_its_batch_is_sealed_and_a_cycle_are_409(
    http: TestClient, store: Tracker
) -> None:
    store.register("b1", batch=True)
    store.seal("b1")
    problem(http.put("/jobs/late", json={"parent": "b1"}), 409)
    store.register("a", prerequisites=["b"])
    problem(http.put("/jobs/b", json={"prerequisites": ["a"]}), 409)
    assert store.track_get("late").state == "unknown"
    assert store.track_get("b").state == "unknown"


def test_success_from_enqueued_and_fail_without_retry(http: TestClient, store: Tracker) -> None:
    store.register("quick")
    assert http.post("/jobs/quick/success").json()["state"] == "success"
    store.register("once", max_attempts=5)
    store.start("once")
    failed = http.post("/jobs/once/fail", json={"error": "no", "retry": False}).json()
    assert (failed["state"], failed["attempts"]) == ("dead", 1)


def test_a_late_report_after_a_terminal_state_is_409_with_the_state(
    http: TestClient, store: Tracker
) -> None:
    working(store)
    http.post("/jobs/j1/cancel")
    assert problem(http.post("/jobs/j1/track", json={"percent": 3}), 409)["state"] == "cancelled"
    assert problem(http.post("/jobs/j1/success"), 409)["state"] == "cancelled"


def test_an_earlier_reserve_until_is_409_and_applies_nothing(
    http: TestClient, store: Tracker
) -> None:
    working(store)
    before = store.track_get("j1")
    response = http.post(
        "/jobs/j1/track", json={"percent": 50, "reserve_until": "2000-01-01T00:00:00Z"}
    )
    assert problem(response, 409)["state"] == "working"
    assert store.track_get("j1") == before


# --- lifecycle -------------------------------------------------------------------


def test_start_success_fail_and_their_refusals(http: TestClient, store: Tracker) -> None:
    store.register("j1", max_attempts=2)
    started = http.post("/jobs/j1/start", json={"reserve_for": 60}).json()
    assert (started["state"], started["attempts"]) == ("working", 1)
    assert problem(http.post("/jobs/j1/start"), 409)["state"] == "working"
    failed = http.post("/jobs/j1/fail", json={"error": "boom", "type": "ValueError"}).json()
    assert failed["state"] == "failed"
    assert failed["error"]["message"] == "boom"
    assert failed["error"]["type"] == "ValueError"
    http.post("/jobs/j1/start")
    dead = http.post("/jobs/j1/fail", json={"error": "again", "retry": True}).json()
    assert dead["state"] == "dead"
    assert [e["message"] for e in dead["errors"]] == ["again", "boom"]


def test_success_twice_is_a_200_no_op(http: TestClient, store: Tracker) -> None:
    working(store)
    first = http.post("/jobs/j1/success")
    second = http.post("/jobs/j1/success")
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json() == first.json()


def test_pause_and_resume(http: TestClient, store: Tracker) -> None:
    store.register("j1")
    assert http.post("/jobs/j1/pause").json()["state"] == "paused"
    assert problem(http.post("/jobs/j1/pause"), 409)["state"] == "paused"
    assert http.post("/jobs/j1/resume").json()["state"] == "enqueued"
    assert problem(http.post("/jobs/j1/resume"), 409)["state"] == "enqueued"


def test_sealing_a_job_that_is_no_batch_is_409(http: TestClient, store: Tracker) -> None:
    store.register("j1")
    assert problem(http.post("/jobs/j1/seal"), 409)["state"] == "enqueued"


# --- lists and counts -----------------------------------------------------------


def test_list_filters_and_pages(http: TestClient, store: Tracker) -> None:
    for i in range(5):
        store.register(f"a{i}", queue="qa", labels={"k": "v" if i % 2 else "w"})
    store.register("b0", queue="qb")
    store.start("a0")
    assert [j["jid"] for j in http.get("/jobs?state=working").json()["jobs"]] == ["a0"]
    newest_first = http.get("/jobs?queue=qa").json()["jobs"]
    stamps = [parse_time("updated_at", j["updated_at"]) for j in newest_first]  # ms: 40Z < 40.2Z
    assert stamps == sorted(stamps, reverse=True)
    started = next(j for j in newest_first if j["jid"] == "a0")
    assert parse_time("updated_at", started["updated_at"]) == stamps[0]  # started last
    assert {j["jid"] for j in http.get("/jobs?queue=qb").json()["jobs"]} == {"b0"}
    assert {j["jid"] for j in http.get("/jobs?label=k:v").json()["jobs"]} == {"a1", "a3"}
    seen: list[str] = []
    cursor = None
    while True:
        page = http.get("/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        body = page.json()
        seen += [j["jid"] for j in body["jobs"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert sorted(seen) == ["a0", "a1", "a2", "a3", "a4", "b0"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=asleep", "state"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=%C2%B2", "limit"),
        ("cursor=%C2%B2.a", "cursor"),
        ("queue=a%20b", "queue"),
        ("label=novalue", "label"),
        ("cursor=nonsense", "cursor"),
        ("stat=working", "query"),
        ("state=working&state=dead", "state"),
    ],
)
def test_list_refuses_bad_queries(http: TestClient, query: str, field: str) -> None:
    assert problem(http.get("/jobs?" + query), 400)["field"] == field


def test_list_by_label_reaches_keys_with_a_colon(http: TestClient, store: Tracker) -> None:
    store.register("colon-key", labels={"a:b": "c"})
    store.register("colon-value", labels={"a": "b:c"})

    def found(label: str) -> set[str]:
        return {j["jid"] for j in http.get("/jobs", params={"label": label}).json()["jobs"]}

    assert found("a:b=c") == {"colon-key"}
    assert found("a=b:c") == {"colon-value"}
    assert found("a:b:c") == {"colon-value"}  # KEY:VALUE, where there is no "="


def test_an_empty_cursor_is_the_first_page(http: TestClient, store: Tracker) -> None:
    store.register("a")
    assert [j["jid"] for j in http.get("/jobs?cursor=").json()["jobs"]] == ["a"]


HUGE = "1" + "0" * 5000  # past Python's 4,300 digits for int(str)


@pytest.mark.parametrize(
    ("query", "field"),
    [(f"limit={HUGE}", "limit"), (f"cursor={HUGE}.a", "cursor"), (f"limit=-{HUGE}", "limit")],
)
def test_a_huge_number_in_a_query_is_400_naming_it(
    http: TestClient, query: str, field: str
) -> None:
    assert problem(http.get("/jobs?" + query), 400)["field"] == field


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/jobs/j1/track", "percent"),
        ("/jobs/j1/start", "reserve_for"),
        ("/jobs/j2", "delay"),
        ("/jobs/j2", "max_attempts"),
        ("/jobs/j2", "reserve_for"),
    ],
)
@pytest.mark.parametrize(
    "number",
    [
        HUGE,
        "-" + HUGE,
        HUGE + ".5",
        "1e999999",
        "1e" + HUGE,
        "1.5e-" + HUGE,
        "1.5e-400",  # 0.0 as a float, yet no integer
        "1.0000000000000001",  # 1.0 as a float, yet no integer
    ],
)
def test_a_huge_number_in_a_body_is_400_naming_its_field(
    http: TestClient, store: Tracker, path: str, field: str, number: str
) -> None:
    working(store)
    before, stream = store.track_get("j1"), events(store)
    body = f'{{"{field}": {number}}}'.encode()
    method = "PUT" if path == "/jobs/j2" else "POST"
    answer = http.request(method, path, content=body, headers={"content-type": "application/json"})
    assert problem(answer, 400)["field"] == field
    assert (store.track_get("j1"), events(store)) == (before, stream)
    assert store.track_get("j2").state == "unknown"


def test_a_huge_number_inside_a_payload_is_400_naming_the_payload(
    http: TestClient, store: Tracker
) -> None:
    body = f'{{"payload": {{"func": "m.f", "args": [{HUGE}]}}}}'.encode()
    answer = http.put("/jobs/j2", content=body, headers={"content-type": "application/json"})
    assert problem(answer, 400)["field"] == "payload"
    assert store.track_get("j2").state == "unknown"


def test_a_payload_takes_integers_past_64_bits_as_its_function_would(
    http: TestClient, store: Tracker
) -> None:
    wide, negative = 10**25 + 7, -(10**40)
    body = f'{{"payload": {{"func": "m.f", "args": [{wide}, [{negative}]]}}}}'.encode()
    answer = http.put("/jobs/j2", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["payload"]["args"] == [wide, [negative]]
    again = http.put("/jobs/j2", content=body, headers={"content-type": "application/json"})
    assert again.status_code == 200  # the same body, packed the same way


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_number_json_does_not_have_is_400(
    http: TestClient, store: Tracker, constant: str
) -> None:
    working(store)
    body = f'{{"percent": {constant}}}'.encode()
    answer = http.post("/jobs/j1/track", content=body, headers={"content-type": "application/json"})
    assert problem(answer, 400)["field"] == "body"
    assert store.track_get("j1").percent is None


def test_an_integer_written_with_a_fraction_of_zero_is_that_integer(
    http: TestClient, store: Tracker
) -> None:
    """JSON Schema's integer is a number with no fraction: 84.0 is 84, 1.5 is refused."""
    store.register("j1")
    started = http.post("/jobs/j1/start", json={"reserve_for": 84.0})
    assert started.status_code == 200, started.text
    reserved = parse_time("r", started.json()["reserve_until"])
    assert reserved - parse_time("u", started.json()["updated_at"]) == 84_000
    assert http.post("/jobs/j1/track", json={"percent": 50.0}).json()["percent"] == 50
    assert http.put("/jobs/j2", json={"delay": 1e1, "max_attempts": 3.0}).status_code == 201
    assert store.track_get("j2").max_attempts == 3
    problem(http.post("/jobs/j1/track", json={"percent": 1.5}), 400)


@pytest.mark.parametrize("path", ["/jobs/j1", "/jobs/j1/related", "/stats", "/jobs/j1/events"])
def test_every_read_refuses_a_query_parameter_it_does_not_take(
    http: TestClient, store: Tracker, path: str
) -> None:
    store.register("j1")
    assert problem(http.get(path + "?colour=red"), 400)["field"] == "query"
    if not path.endswith("/events"):  # a stream would not end
        assert http.get(path + "?token=").status_code == 200  # what every read takes


def test_stats_counts_by_state_and_queue(http: TestClient, store: Tracker) -> None:
    store.register("a", queue="qa")
    store.register("b", queue="qb")
    store.start("b")
    assert http.get("/stats").json() == {
        "states": {"enqueued": 1, "working": 1},
        "queues": {"qa": {"enqueued": 1}, "qb": {"working": 1}},
    }


def test_related_names_prerequisites_and_children_with_states(
    http: TestClient, store: Tracker
) -> None:
    store.register("p0")
    store.start("p0")
    store.success("p0")
    store.register("p1")
    store.register("b1", batch=True)
    store.register("d1", prerequisites=["p0", "p1", "p2"], parent="b1")
    related = http.get("/jobs/d1/related").json()
    assert related["prerequisites"] == [
        {"jid": "p0", "state": "success"},
        {"jid": "p1", "state": "enqueued"},
        {"jid": "p2", "state": "unknown"},
    ]
    assert http.get("/jobs/b1/related").json()["children"] == [{"jid": "d1", "state": "waiting"}]
    assert http.get("/jobs/p1/related").json()["dependents"] == [{"jid": "d1", "state": "waiting"}]
    problem(http.get("/jobs/ghost/related"), 404)


def test_workflow_shows_the_linked_jobs_and_their_dependencies(
    http: TestClient, store: Tracker
) -> None:
    store.register("extract")
    store.register("transform", prerequisites=["extract"])
    store.register("load", prerequisites=["transform"])
    shown = http.get("/jobs/load/workflow").json()
    assert shown["jobs"] == [
        {"jid": "extract", "state": "enqueued"},
        {"jid": "load", "state": "waiting"},
        {"jid": "transform", "state": "waiting"},
    ]
    assert shown["edges"] == [["extract", "transform"], ["transform", "load"]]
    assert shown["more"] is False
    assert http.get("/jobs/extract/workflow", params={"limit": "2"}).json()["more"] is True
    problem(http.get("/jobs/ghost/workflow"), 404)
    for bad in ("0", "1001", "x", "1" * 5000):
        problem(http.get("/jobs/load/workflow", params={"limit": bad}), 400)
    problem(http.get("/jobs/load/workflow", params={"depth": "2"}), 400)


def test_related_still_names_the_dependents_a_success_released(
    http: TestClient, store: Tracker
) -> None:
    store.register("p1")
    store.register("b1", batch=True)
    many = [f"d{n:03d}" for n in range(150)]  # more than one call releases: a fan-out
    for jid in many:
        store.register(jid, prerequisites=["p1"], parent="b1")
    store.start("p1")
    store.success("p1")
    released = http.get("/jobs/p1/related?token=").json()["dependents"]
    assert len(released) == 100  # at most `limit` of them
    assert {d["state"] for d in released} == {"enqueued"}
    assert {d["jid"] for d in released} <= set(many)
    store.register("late-d", prerequisites=["p3"])  # waits for p3 before p3 is registered
    store.register("p3")
    store.success("p3")
    assert http.get("/jobs/p3/related").json()["dependents"] == [
        {"jid": "late-d", "state": "enqueued"}
    ]
    store.register("p2")
    store.register("waits", prerequisites=["p2"])
    store.cancel("p2")  # without propagation the dependent stays, waiting
    assert http.get("/jobs/p2/related").json()["dependents"] == [
        {"jid": "waits", "state": "waiting"}
    ]


def test_related_still_names_the_dependents_a_death_killed(real_url: str, namespace: str) -> None:
    with _app(real_url, namespace, propagate_failures=True) as http:
        http.put("/jobs/p1", json={"max_attempts": 1})
        http.put("/jobs/d1", json={"prerequisites": ["p1"]})
        http.post("/jobs/p1/start")
        assert http.post("/jobs/p1/fail", json={"error": "boom"}).json()["state"] == "dead"
        assert http.get("/jobs/p1/related").json()["dependents"] == [{"jid": "d1", "state": "dead"}]


# --- bad bodies ------------------------------------------------------------------

BAD_BODIES: list[tuple[str, str, Any, dict[str, str], int, str]] = [
    # (method, path, body, headers, status, field)
    ("POST", "/jobs/j1/track", {"percent": True}, {}, 400, "percent"),
    ("POST", "/jobs/j1/track", {"percent": 1.5}, {}, 400, "percent"),
    ("POST", "/jobs/j1/track", {"percent": "50"}, {}, 400, "percent"),
    ("POST", "/jobs/j1/track", {"percent": 101}, {}, 400, "percent"),
    ("POST", "/jobs/j1/track", {"percent": -1}, {}, 400, "percent"),
    ("POST", "/jobs/j1/track", {"desc": 7}, {}, 400, "desc"),
    ("POST", "/jobs/j1/track", {"desc": "x" * 4097}, {}, 400, "desc"),
    ("POST", "/jobs/j1/track", {"reserve_until": "tomorrow"}, {}, 400, "reserve_until"),
    ("POST", "/jobs/j1/track", {"reserve_until": "2099-01-01T00:00:00"}, {}, 400, "reserve_until"),
    ("POST", "/jobs/j1/track", {"percent": 5, "colour": "red"}, {}, 400, "body"),
    ("POST", "/jobs/j1/track", [1, 2], {}, 400, "body"),
    ("POST", "/jobs/j1/track", "a string", {}, 400, "body"),
    ("POST", "/jobs/j1/track", b"{not json", {}, 400, "body"),
    ("POST", "/jobs/j1/track", b"\xff\xfe", {}, 400, "body"),
    ("POST", "/jobs/j1/track", b"[" * 60_000 + b"]" * 60_000, {}, 413, ""),
    ("POST", "/jobs/j1/track", b"[" * 30_000 + b"]" * 30_000, {}, 400, "body"),
    (
        "PUT",
        "/jobs/j1",
        b'{"payload": {"func": "m.f", "args": ' + b"[" * 20_000 + b"]" * 20_000 + b"}}",
        {},
        400,
        "",
    ),
    ("POST", "/jobs/j1/track", b"percent=5", {"content-type": "text/plain"}, 415, ""),
    ("POST", "/jobs/j1/fail", {}, {}, 400, "error"),
    ("POST", "/jobs/j1/fail", {"error": "x", "retry": "yes"}, {}, 400, "retry"),
    ("POST", "/jobs/j1/fail", {"error": ["x"]}, {}, 400, "error"),
    ("POST", "/jobs/j1/start", {"reserve_for": 0}, {}, 400, "reserve_for"),
    ("POST", "/jobs/j1/start", {"reserve_for": "60"}, {}, 400, "reserve_for"),
    ("POST", "/jobs/j1/cancel", {"why": "because"}, {}, 400, "body"),
    ("PUT", "/jobs/j1", {"queue": "a b"}, {}, 400, "queue"),
    ("PUT", "/jobs/j1", {"queue": 5}, {}, 400, "queue"),
    ("PUT", "/jobs/j1", {"labels": {"k": 1}}, {}, 400, "labels[k]"),
    ("PUT", "/jobs/j1", {"labels": {"a b": "v"}}, {}, 400, "labels key"),
    ("PUT", "/jobs/j1", {"labels": {str(i): "v" for i in range(33)}}, {}, 400, "labels"),
    ("PUT", "/jobs/j1", {"labels": ["k"]}, {}, 400, "labels"),
    ("PUT", "/jobs/j1", {"prerequisites": "p1"}, {}, 400, "prerequisites"),
    ("PUT", "/jobs/j1", {"prerequisites": ["p 1"]}, {}, 400, "prerequisites"),
    ("PUT", "/jobs/j1", {"missing_prerequisites": "ignore"}, {}, 400, "missing_prerequisites"),
    ("PUT", "/jobs/j1", {"delay": -1}, {}, 400, "delay"),
    ("PUT", "/jobs/j1", {"batch": "true"}, {}, 400, "batch"),
    ("PUT", "/jobs/j1", {"max_attempts": 0}, {}, 400, "max_attempts"),
    ("PUT", "/jobs/j1", {"payload": {"func": "not a path"}}, {}, 400, "payload.func"),
    ("PUT", "/jobs/j1", {"payload": {"func": "m.f", "extra": 1}}, {}, 400, "payload"),
    ("PUT", "/jobs/j1", {"parent": "nobody"}, {}, 409, ""),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "field"), BAD_BODIES)
def test_a_bad_body_is_refused_and_changes_nothing(
    http: TestClient,
    store: Tracker,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
    status: int,
    field: str,
) -> None:
    working(store)
    before, stream = store.track_get("j1"), events(store)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json", **headers}
    answer = problem(http.request(method, path, content=content, headers=headers), status)
    if field:
        assert answer["field"] == field
    assert store.track_get("j1") == before
    assert events(store) == stream


def test_a_bad_jid_in_the_path_is_400(http: TestClient, store: Tracker) -> None:
    assert problem(http.put("/jobs/a%20b", json={}), 400)["field"] == "jid"
    assert problem(http.get("/jobs/" + "x" * 129), 400)["field"] == "jid"
    assert problem(http.post("/jobs/%C3%A9/track", json={"percent": 1}), 400)["field"] == "jid"
    # an encoded "/": the router reads the path decoded, and would take POST
    # /jobs/a%2Fcancel for POST /jobs/a/cancel
    store.register("a")
    before = store.track_get("a"), events(store)
    for method, path in [
        ("PUT", "/jobs/a%2Fb"),
        ("POST", "/jobs/a%2fb/start"),
        ("POST", "/jobs/a%2Fcancel"),
        ("PUT", "/jobs/a%2Fcancel"),
        ("GET", "/jobs/a%2Frelated"),
        ("PUT", "/jobs/a%2F"),
    ]:
        refused = http.request(method, path, json={} if method == "PUT" else None)
        assert problem(refused, 400)["field"] == "jid", (method, path)
    assert (store.track_get("a"), events(store)) == before
    assert problem(http.get("/jobs/a/b/c"), 404)["status"] == 404  # a path that is no route


def test_a_body_over_64_kib_is_413_before_it_is_read(http: TestClient, store: Tracker) -> None:
    working(store)
    big = json.dumps({"desc": "x" * (70 * 1024)}).encode()
    problem(
        http.post("/jobs/j1/track", content=big, headers={"content-type": "application/json"}), 413
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds as it streams
        for _ in range(70):
            yield b" " * 1024

    chunked = http.post(
        "/jobs/j1/track", content=chunks(), headers={"content-type": "application/json"}
    )
    problem(chunked, 413)
    assert store.track_get("j1").desc is None


def test_unknown_routes_and_methods_are_problems(http: TestClient) -> None:
    problem(http.get("/nowhere"), 404)
    problem(http.delete("/jobs/j1/events"), 405)


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/jobs/j1", {"DELETE", "GET", "HEAD", "OPTIONS", "PUT"}),
        ("/jobs/j1/cancel", {"OPTIONS", "POST"}),
        ("/jobs", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_options_and_a_405_name_every_method_of_the_path(
    http: TestClient, path: str, methods: set[str]
) -> None:
    def allowed(response: Any) -> set[str]:
        return {m.strip() for m in response.headers["allow"].split(",")}

    options = http.options(path)
    assert options.status_code == 204
    assert allowed(options) == methods
    refused = http.patch(path)
    problem(refused, 405)
    assert allowed(refused) == methods


def test_head_answers_as_get_without_a_body(http: TestClient, store: Tracker) -> None:
    store.register("j1")
    head = http.head("/jobs/j1")
    assert (head.status_code, head.content) == (200, b"")


# --- access control ----------------------------------------------------------------


def test_writes_need_the_api_token(real_url: str, namespace: str) -> None:
    with _app(real_url, namespace, api_token="s3cret") as http:
        missing = http.put("/jobs/j1", json={})
        assert problem(missing, 401)
        assert missing.headers["www-authenticate"] == "Bearer"
        problem(http.put("/jobs/j1", json={}, headers={"Authorization": "Bearer nope"}), 403)
        problem(http.put("/jobs/j1", json={}, headers={"Authorization": "Basic s3cret"}), 403)
        problem(http.put("/jobs/j1", json={}, params={"token": "s3cret"}), 401)
        assert http.get("/jobs/j1").status_code == 404  # reads stay open without a read token
        ok = http.put("/jobs/j1", json={}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 201


def test_reads_need_the_read_or_api_token_when_one_is_set(real_url: str, namespace: str) -> None:
    with _app(real_url, namespace, api_token="w", read_token="r") as http:
        problem(http.get("/stats"), 401)
        problem(http.get("/", headers={"Authorization": "Bearer x"}), 403)
        assert http.get("/stats", headers={"Authorization": "Bearer r"}).status_code == 200
        assert http.get("/stats", headers={"Authorization": "Bearer w"}).status_code == 200
        assert http.get("/stats", params={"token": "r"}).status_code == 200
        problem(http.post("/jobs/j1/cancel", headers={"Authorization": "Bearer r"}), 403)
        for open_path in ("/livez", "/heartbeat", "/readyz"):
            assert http.get(open_path).status_code == 200, open_path
        guarded_paths = ("/metrics", "/openapi.json", "/events", "/jobs/j1/events", "/jobs")
        for guarded in (*guarded_paths, "/jobs/j1", "/jobs/j1/related"):
            problem(http.get(guarded), 401)
            problem(http.get(guarded, params={"token": "nope"}), 403)
        assert http.get("/metrics", params={"token": "r"}).status_code == 200
        # a header given wins over ?token=: a malformed or wrong one is refused
        for header in ("Basic r", "Bearer nope"):
            refused = http.get("/stats", params={"token": "r"}, headers={"Authorization": header})
            problem(refused, 403)


def test_a_browser_opening_a_guarded_dashboard_gets_a_token_form(
    real_url: str, namespace: str
) -> None:
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    with _app(real_url, namespace, api_token="w", read_token="r") as http:
        asked = http.get("/", headers=html)
        assert asked.status_code == 401
        assert asked.headers["content-type"].startswith("text/html")
        assert "This dashboard needs a token" in asked.text
        assert '<input name="token" type="password"' in asked.text
        refused = http.get("/", params={"token": "nope"}, headers=html)
        assert refused.status_code == 403 and "That token was refused" in refused.text
        opened = http.get("/", params={"token": "r"}, headers=html)
        assert opened.status_code == 200 and 'id="jobs"' in opened.text
        # an API client still gets problem+json, also on the dashboard's path
        problem(http.get("/stats", headers=html), 401)
        problem(http.get("/"), 401)


# --- operations ----------------------------------------------------------------------


def test_health_endpoints(http: TestClient) -> None:
    assert http.get("/livez").json() == {"status": "ok"}
    assert http.get("/heartbeat").status_code == 200
    assert http.get("/readyz").json() == {"status": "ok"}


def test_readyz_loads_the_scripts_into_a_server_that_lost_them(
    real_url: str, namespace: str
) -> None:
    from tracker.scripts import Library

    with _app(real_url, namespace) as http:
        library = f"tracker_{Library().version}"
        client = redis.Redis.from_url(real_url)
        client.function_delete(library)
        assert http.get("/readyz").status_code == 200
        assert client.function_list(library=library)
        client.close()


def test_metrics_count_jobs_transitions_and_track_sets(http: TestClient, store: Tracker) -> None:
    store.register("j1", queue="qm")
    store.register("j2", queue="qm")
    store.start("j1")
    store.track_set("j1", percent=5)

    def scraped() -> str | None:
        text = http.get("/metrics").text
        return text if "tracker_track_set_total 1.0" in text else None

    text = wait_until(scraped)
    assert 'tracker_jobs{queue="qm",state="working"} 1.0' in text
    assert 'tracker_jobs{queue="qm",state="enqueued"} 1.0' in text
    assert 'tracker_transitions_total{from_state="enqueued",to_state="working"} 1.0' in text
    assert 'tracker_oldest_enqueued_age_seconds{queue="qm"}' in text
    assert "tracker_release_latency_seconds_bucket" in text
    assert "j1" not in text  # no label with unbounded values


def test_the_dashboard_page_is_served(http: TestClient) -> None:
    page = http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")


# --- the OpenAPI document --------------------------------------------------------------


def test_openapi_describes_every_route(http: TestClient) -> None:
    doc = http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert described == {(e.method, e.path) for e in ENDPOINTS}
    refs = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"].rsplit("/", 1)[1])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs <= set(doc["components"]["schemas"])
    register = doc["paths"]["/jobs/{jid}"]["put"]
    assert set(register["responses"]) >= {"200", "201", "400", "409"}
    body = doc["components"]["schemas"]["Registration"]
    assert set(body["properties"]) == {
        "queue", "prerequisites", "missing_prerequisites", "delay", "parent", "batch",
        "labels", "reserve_for", "max_attempts", "payload", "hide_args",
    }  # fmt: skip


def test_the_store_down_is_503(real_url: str, namespace: str) -> None:
    app = create_app(Settings(namespace=namespace), url="redis://127.0.0.1:1/0", maintenance=False)
    with local_client(app, raise_server_exceptions=False) as http:
        assert http.get("/livez").status_code == 200
        problem(http.get("/readyz"), 503)
        problem(http.get("/jobs/j1"), 503)
        problem(http.put("/jobs/j1", json={}), 503)


def test_the_client_used_for_checks_is_real(store: Tracker) -> None:
    assert isinstance(store.client, redis.Redis)


@pytest.mark.parametrize(
    "query",
    [{"label": "k=v"}, {"label": "k:v", "state": "enqueued"}, {"state": "enqueued"}, {}],
)
def test_a_pages_next_goes_back_through_the_cursor_parameter(
    http: TestClient, store: Tracker, query: dict[str, str]
) -> None:
    """Label pages (the label index's walk) and state pages (the bands' merge) return a
    ``next`` (updated_at and jid) that GET /jobs takes back as ``cursor``."""
    for i in range(7):
        store.register(f"job.{i}:x@y", queue=f"q{i % 3}", labels={"k": "v"})
    store.register("other", labels={"k": "w"})
    seen: list[str] = []
    cursor = ""  # the first page
    while True:
        body = http.get("/jobs", params={**query, "limit": 2, "cursor": cursor}).json()
        seen += [j["jid"] for j in body["jobs"]]
        if body["next"] is None:
            break
        cursor = body["next"]
    expected = [f"job.{i}:x@y" for i in range(7)] + ([] if "label" in query else ["other"])
    assert sorted(seen) == sorted(expected)


# --- retry, delete, tracebacks and payloads -------------------------------------------------


def _rq_cleanup(store: Tracker, queue: str, *jids: str) -> None:
    store.client.delete(f"rq:queue:{queue}", *(f"rq:job:{jid}" for jid in jids))
    store.client.srem("rq:queues", f"rq:queue:{queue}")


def test_retry_puts_a_dead_job_back_and_refuses_others(http: TestClient, store: Tracker) -> None:
    queue = "q-web-" + uuid.uuid4().hex[:8]
    payload = {"func": "app.tasks.resize", "args": [1], "kwargs": {}}
    try:
        http.put("/jobs/j1", json={"queue": queue, "payload": payload, "max_attempts": 1})
        http.post("/jobs/j1/start")
        http.post("/jobs/j1/fail", json={"error": "boom", "traceback": "Traceback: ...\nboom"})

        retried = http.post("/jobs/j1/retry", json={"dependents": True})

        assert retried.status_code == 200, retried.text
        assert (retried.json()["state"], retried.json()["max_attempts"]) == ("enqueued", 2)
        assert retried.json()["errors"][0]["traceback"] == "Traceback: ...\nboom"
        assert retried.json()["payload"] == payload
        assert problem(http.post("/jobs/j1/retry", json={}), 409)["state"] == "enqueued"
        assert problem(http.post("/jobs/ghost/retry"), 404)["state"] == "unknown"
        problem(http.post("/jobs/j1/retry", json={"dependents": "yes"}), 400)
    finally:
        _rq_cleanup(store, queue, "j1")


def test_delete_is_204_then_404_and_409_for_an_unfinished_job(
    http: TestClient, store: Tracker
) -> None:
    store.register("j1")
    store.success("j1")
    store.register("j2")

    deleted = http.delete("/jobs/j1")

    assert (deleted.status_code, deleted.content) == (204, b"")
    problem(http.get("/jobs/j1"), 404)
    assert problem(http.delete("/jobs/j1"), 404)["state"] == "unknown"
    assert problem(http.delete("/jobs/j2"), 409)["state"] == "enqueued"


def test_delete_needs_the_api_token(real_url: str, namespace: str, store: Tracker) -> None:
    store.register("j1")
    store.success("j1")
    with _app(real_url, namespace, api_token="s3cret") as http:
        problem(http.delete("/jobs/j1"), 401)
        problem(http.post("/jobs/j1/retry"), 401)
        assert store.track_get("j1").state.value == "success"
        ok = http.delete("/jobs/j1", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 204


def test_register_hides_args_when_asked(http: TestClient, store: Tracker) -> None:
    queue = "q-web-" + uuid.uuid4().hex[:8]
    body = {"queue": queue, "payload": {"func": "m.f", "args": ["secret"]}, "hide_args": True}
    try:
        track = http.put("/jobs/j1", json=body).json()
        assert track["payload"] == {"func": "m.f", "args": "hidden", "kwargs": "hidden"}
        assert "secret" not in http.get("/jobs/j1").text
    finally:
        _rq_cleanup(store, queue, "j1")
