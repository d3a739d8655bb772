"""Properties of every endpoint under bad input: for each field of each body, query and
header, a huge, negative, fractional, string, boolean or nested value that its schema
refuses is a 400 problem naming that field, and the store is as it was. Values are
written into the request as JSON text, so numbers past Python's 4,300 digits for
``int(str)`` reach the server as a client would send them. Then bodies of odd bytes and
encodings: never a 5xx, and a refusal changes nothing.

The schemas judged against are the ones ``/openapi.json`` serves (schema.py), so what
these tests call invalid is what the document says is."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema_rs
import pytest
from conftest import local_client
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tracker import InvalidInput, Tracker
from tracker.web import create_app, schema
from tracker.web.openapi import _LAST_EVENT_ID
from tracker.web.sse import parse_id

PROBLEM = "application/problem+json"
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Literal:
    """JSON text to put in a body as it is (a number ``json.dumps`` could not write)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Literal({self.text[:30]}...{len(self.text)} chars)"


def _huge(sign: str) -> st.SearchStrategy[Literal]:
    digits = st.integers(21, 6000).map(lambda n: "9" * n)
    return digits.map(lambda d: Literal(sign + d))


SCALARS = st.one_of(
    _huge(""),
    _huge("-"),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([Literal("1e400"), Literal("-1e400"), Literal("1.5e-400")]),
    st.text(max_size=20),
    st.booleans(),
)
#: What a field gets: any scalar, or scalars nested in arrays and objects.
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def to_json(value: Any) -> str:
    if isinstance(value, Literal):
        return value.text
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def contains_literal(value: Any) -> bool:
    if isinstance(value, Literal):
        return True
    if isinstance(value, list):
        return any(contains_literal(v) for v in value)
    if isinstance(value, dict):
        return any(contains_literal(v) for v in value.values())
    return False


def refused_by(field_schema: dict[str, Any], value: Any) -> bool:
    """Whether the schema refuses ``value``: a literal (a number past 20 digits, or out
    of a float's range) fits no field, and everything else the schema judges."""
    if contains_literal(value):
        return True
    return not jsonschema_rs.validator_for(field_schema).is_valid(value)


@pytest.fixture
def store(valkey_store: Tracker) -> Tracker:
    """On the suite's Valkey only: many examples, and the parsing of a request is the
    app's, whatever the backend."""
    return valkey_store


@pytest.fixture
def http(store: Tracker, valkey_url: str) -> Iterator[TestClient]:
    app = create_app(store.settings, url=valkey_url, maintenance=False)
    with local_client(app, raise_server_exceptions=False) as client:
        store.register("j1", labels={"k": "v"})
        store.start("j1")
        store.register("b1", batch=True)
        yield client


def snapshot(store: Tracker) -> tuple[Any, ...]:
    return (
        store.track_get("j1"),
        store.track_get("b1"),
        store.state("j2"),
        store.client.xlen(store.keys.events),
    )


def assert_refused(response: Any, field: str) -> None:
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == PROBLEM
    named = response.json().get("field", "")
    assert named.startswith(field) or (field == "body" and named), response.json()


#: (method, path, body, the valid fields it must carry besides the one tried)
BODIES = [
    ("PUT", "/jobs/j2", schema.REGISTER, {}),
    ("POST", "/jobs/j1/track", schema.TRACK_SET, {}),
    ("POST", "/jobs/j1/start", schema.START, {}),
    ("POST", "/jobs/j1/fail", schema.FAIL, {"error": "boom"}),
]
FIELDS = [
    pytest.param(method, path, name, spec.schema, required, id=f"{path} {name}")
    for method, path, body, required in BODIES
    for name, spec in body.fields.items()
]


@pytest.mark.parametrize(("method", "path", "name", "field_schema", "required"), FIELDS)
@SETTINGS
@given(value=VALUES)
def test_a_value_a_body_field_refuses_is_400_naming_it_and_changes_nothing(
    http: TestClient,
    store: Tracker,
    method: str,
    path: str,
    name: str,
    field_schema: dict[str, Any],
    required: dict[str, Any],
    value: Any,
) -> None:
    assume(value is not None and refused_by(field_schema, value))
    before = snapshot(store)
    fields = [f"{json.dumps(k)}:{json.dumps(v)}" for k, v in required.items() if k != name]
    body = "{" + ",".join([*fields, f"{json.dumps(name)}:{to_json(value)}"]) + "}"
    headers = {"content-type": "application/json"}
    assert_refused(http.request(method, path, content=body.encode(), headers=headers), name)
    assert snapshot(store) == before


@pytest.mark.parametrize("action", ["success", "cancel", "pause", "resume", "seal"])
@SETTINGS
@given(value=VALUES)
def test_a_body_where_none_is_taken_is_400_and_changes_nothing(
    http: TestClient, store: Tracker, action: str, value: Any
) -> None:
    """These take no fields: anything but an empty object (or no body) is refused."""
    assume(value != {})
    before = snapshot(store)
    body = to_json(value).encode()
    headers = {"content-type": "application/json"}
    assert_refused(http.post(f"/jobs/j1/{action}", content=body, headers=headers), "body")
    assert snapshot(store) == before


def _matches(pattern: str) -> Callable[[str], bool]:
    return lambda text: re.search(pattern, text) is not None


def _limit(text: str) -> bool:
    return re.fullmatch("[0-9]{1,20}", text) is not None and 1 <= int(text) <= 1000


def _event_id(text: str) -> bool:
    """Whether the server takes ``text`` as an event id: its pattern says, and its parser,
    which would stream (and this test wait) for an id the pattern did not foresee."""
    try:
        parse_id(text)
    except InvalidInput:
        return _matches(_LAST_EVENT_ID["schema"]["pattern"])(text)
    return True


def _refused_text(accepted: Callable[[str], bool]) -> st.SearchStrategy[str]:
    """Query or header text a parameter refuses: huge, negative, fractional, non-ASCII
    and control characters, nested JSON, and any text at all."""
    candidates = st.one_of(
        st.integers(21, 6000).map(lambda n: "9" * n),
        st.integers(max_value=-1).map(str),
        st.floats(allow_nan=False).map(repr),
        st.sampled_from(["[1]", '{"a": 1}', "\u00b2", "\u0661", "true", "1_0", "0x1", " 1"]),
        st.text(min_size=1, max_size=40),
    )
    return candidates.filter(lambda text: not accepted(text))


_STATES = "^(" + "|".join(schema.STORED_STATE["enum"]) + ")$"
QUERIES = [
    pytest.param("/jobs", "limit", _limit, id="limit"),
    pytest.param("/jobs", "cursor", _matches(schema.CURSOR["pattern"]), id="cursor"),
    pytest.param("/jobs", "label", _matches(schema.LABEL_FILTER["pattern"]), id="label"),
    pytest.param("/jobs", "queue", _matches(schema.NAME["pattern"]), id="queue"),
    pytest.param("/jobs", "parent", _matches(schema.NAME["pattern"]), id="parent"),
    pytest.param("/jobs", "state", _matches(_STATES), id="state"),
    pytest.param("/events", "label", _matches(schema.LABEL_FILTER["pattern"]), id="events label"),
    pytest.param("/events", "queue", _matches(schema.NAME["pattern"]), id="events queue"),
    pytest.param("/events", "state", _matches(_STATES), id="events state"),
]


@pytest.mark.parametrize(("path", "name", "accepted"), QUERIES)
@SETTINGS
@given(data=st.data())
def test_a_query_value_its_parameter_refuses_is_400_naming_it(
    http: TestClient,
    store: Tracker,
    path: str,
    name: str,
    accepted: Callable[[str], bool],
    data: st.DataObject,
) -> None:
    text = data.draw(_refused_text(accepted))
    before = snapshot(store)
    assert_refused(http.get(path, params={name: text}), name)
    assert snapshot(store) == before


@pytest.mark.parametrize("path", ["/events", "/jobs/j1/events"])
@SETTINGS
@given(data=st.data())
def test_a_last_event_id_of_no_event_is_400_naming_it(
    http: TestClient, store: Tracker, path: str, data: st.DataObject
) -> None:
    # what a header carries: printable ASCII, without the spaces at its edges
    text = data.draw(_refused_text(lambda t: _event_id(t.strip())).map(str.strip))
    assume(text and text.isprintable() and text.isascii())
    before = snapshot(store)
    assert_refused(http.get(path, headers={"Last-Event-ID": text}), "Last-Event-ID")
    assert snapshot(store) == before


ODD_BODIES = [
    b"\xff\xfe{\x00}\x00",  # UTF-16 with a byte order mark
    b'\xef\xbb\xbf{"percent": 5}',  # UTF-8 with a byte order mark
    b'{"desc": "\xc0\xaf"}',  # an overlong "/"
    b'{"desc": "\xed\xa0\x80"}',  # a surrogate, encoded
    b'{"desc": "\\ud800"}',  # a lone surrogate, escaped
    b'{"desc": "a\x00b"}',  # a raw NUL inside a string
    b'{"percent": 5}\x00',
    b'{"percent": 5, "percent": 500}',  # the last of a repeated key counts
    b'{"percent": 0x10}',
    b'{"percent": 05}',
    b'{"percent": +5}',
    b'{"percent": .5}',
    b"{" * 100_000,
]


@pytest.mark.parametrize("body", ODD_BODIES, ids=range(len(ODD_BODIES)))
@pytest.mark.parametrize("path", ["/jobs/j1/track", "/jobs/j2", "/jobs/j1/fail"])
def test_a_body_of_odd_bytes_is_refused_and_changes_nothing(
    http: TestClient, store: Tracker, path: str, body: bytes
) -> None:
    before = snapshot(store)
    method = "PUT" if path == "/jobs/j2" else "POST"
    response = http.request(
        method, path, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 413), (response.status_code, response.text[:300])
    assert response.headers["content-type"] == PROBLEM
    assert snapshot(store) == before


@SETTINGS
@given(body=st.binary(max_size=200))
def test_random_bytes_never_make_a_5xx(http: TestClient, store: Tracker, body: bytes) -> None:
    before = snapshot(store)
    headers = {"content-type": "application/json"}
    response = http.post("/jobs/j1/track", content=body, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == PROBLEM
        assert snapshot(store) == before
