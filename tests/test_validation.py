"""SPEC section 2: every refused input names its field and changes nothing; the limits
themselves are accepted; times render as RFC 3339 in UTC with ``Z``."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import FakeClock, set_and_get

from tracker import InvalidInput, State, Tracker, TrackUpdate

Call = Callable[[Tracker], object]

#: Names refused as a jid, a queue or a label key (SPEC section 2, "Identifiers").
BAD_NAMES = [
    ("empty", ""),
    ("129 chars", "a" * 129),
    ("space", "job 1"),
    ("open brace", "{job"),
    ("close brace", "job}"),
    ("slash", "a/b"),
    ("newline", "job\n"),
    ("tab", "\tjob"),
    ("NUL", "job\x00"),
    ("DEL", "job\x7f"),
    ("non-ASCII", "jöb"),
    ("int", 12),
    ("bytes", b"job"),
]
TOO_BIG = {"func": "m.f", "args": ["x" * (64 * 1024)]}
UNSERIALISABLE: list[tuple[str, Any]] = [
    ("object", {"func": "m.f", "args": [object()]}),
    ("set", {"func": "m.f", "args": [{1, 2}]}),
    ("lone surrogate", {"func": "m.f", "args": ["\ud800"]}),
    ("object in kwargs", {"func": "m.f", "kwargs": {"a": object()}}),
]


def _case(id: str, call: Call, field: str) -> Any:
    return pytest.param(call, field, id=id)


def _register(**kwargs: Any) -> Call:
    return lambda t: t.register("job-2", **kwargs)


def _set(**kwargs: Any) -> Call:
    return lambda t: t.track_set("job-1", **kwargs)


REFUSED = [
    *(_case(f"jid {name}", lambda t, v=value: t.register(v), "jid") for name, value in BAD_NAMES),
    _case("jid None", lambda t: t.register(None), "jid"),
    *(_case(f"queue {name}", _register(queue=value), "queue") for name, value in BAD_NAMES),
    *(
        _case(f"label key {name}", _register(labels={value: "v"}), "labels key")
        for name, value in BAD_NAMES
    ),
    # every other operation checks the jid too
    _case("jid of track_get", lambda t: t.track_get("a b"), "jid"),
    _case("jid of track_set", lambda t: t.track_set("a b", percent=1), "jid"),
    _case("jid of start", lambda t: t.start("a/b"), "jid"),
    _case("jid of success", lambda t: t.success("{a}"), "jid"),
    _case("jid of fail", lambda t: t.fail("", "boom"), "jid"),
    _case("jid of cancel", lambda t: t.cancel("a" * 129), "jid"),
    _case("jid of pause", lambda t: t.pause("jöb"), "jid"),
    _case("jid of resume", lambda t: t.resume(7), "jid"),
    # label values and the number of labels
    _case("label value 257 chars", _register(labels={"k": "v" * 257}), "labels[k]"),
    _case("label value int", _register(labels={"k": 5}), "labels[k]"),
    _case("label value None", _register(labels={"k": None}), "labels[k]"),
    _case("label value newline", _register(labels={"k": "a\nb"}), "labels[k]"),
    _case("label value NUL", _register(labels={"k": "\x00"}), "labels[k]"),
    _case("label value DEL", _register(labels={"k": "a\x7f"}), "labels[k]"),
    _case("label value lone surrogate", _register(labels={"k": "\ud800"}), "labels[k]"),
    _case("33 labels", _register(labels={f"k{n}": "v" for n in range(33)}), "labels"),
    _case("labels not an object", _register(labels=[("k", "v")]), "labels"),
    # desc
    _case("desc 4097 chars", _set(desc="x" * 4097), "desc"),
    _case("desc int", _set(desc=5), "desc"),
    _case("desc bytes", _set(desc=b"step"), "desc"),
    _case("desc lone surrogate", _set(desc="\ud800"), "desc"),
    # percent
    _case("percent True", _set(percent=True), "percent"),
    _case("percent False", _set(percent=False), "percent"),
    _case("percent float 1.0", _set(percent=1.0), "percent"),
    _case("percent string", _set(percent="5"), "percent"),
    _case("percent -1", _set(percent=-1), "percent"),
    _case("percent 101", _set(percent=101), "percent"),
    _case("percent with a valid desc", _set(percent=101, desc="fine"), "percent"),
    # reserve_until
    _case("reserve_until without zone", _set(reserve_until="2030-01-01T00:00:00"), "reserve_until"),
    _case("reserve_until date only", _set(reserve_until="2030-01-01"), "reserve_until"),
    _case("reserve_until garbage", _set(reserve_until="soon"), "reserve_until"),
    _case("reserve_until empty", _set(reserve_until=""), "reserve_until"),
    _case("reserve_until month 13", _set(reserve_until="2030-13-01T00:00:00Z"), "reserve_until"),
    _case("reserve_until before 1970", _set(reserve_until="1969-12-31T23:59:59Z"), "reserve_until"),
    _case("reserve_until epoch int", _set(reserve_until=1_900_000_000), "reserve_until"),
    _case("reserve_until epoch float", _set(reserve_until=1.9e9), "reserve_until"),
    _case(
        "reserve_until naive datetime", _set(reserve_until=datetime(2030, 1, 1)), "reserve_until"
    ),
    # reserve_for (register and start) and max_attempts
    *(
        _case(f"reserve_for {name} at register", _register(reserve_for=value), "reserve_for")
        for name, value in [("0", 0), ("-5", -5), ("True", True), ("1.5", 1.5), ("str", "60")]
    ),
    *(
        _case(
            f"reserve_for {name} at start",
            lambda t, v=value: t.start("job-3", reserve_for=v),
            "reserve_for",
        )
        for name, value in [("0", 0), ("-5", -5), ("True", True), ("1.5", 1.5), ("str", "60")]
    ),
    *(
        _case(f"max_attempts {name}", _register(max_attempts=value), "max_attempts")
        for name, value in [("0", 0), ("-1", -1), ("True", True), ("2.0", 2.0), ("str", "3")]
    ),
    # payload
    _case("payload a string", _register(payload="m.f"), "payload"),
    _case("payload a list", _register(payload=["m.f"]), "payload"),
    _case("payload unknown field", _register(payload={"func": "m.f", "queue": "q"}), "payload"),
    _case("payload without func", _register(payload={"args": []}), "payload.func"),
    _case("payload func empty", _register(payload={"func": ""}), "payload.func"),
    _case("payload func int", _register(payload={"func": 5}), "payload.func"),
    _case("payload func with spaces", _register(payload={"func": "m f"}), "payload.func"),
    _case("payload func with a slash", _register(payload={"func": "m/f"}), "payload.func"),
    _case("payload func call syntax", _register(payload={"func": "m.f()"}), "payload.func"),
    _case("payload func leading digit", _register(payload={"func": "1m.f"}), "payload.func"),
    _case(
        "payload func trailing dot",
        _register(payload={"func": "app.tasks."}),
        "payload.func",
    ),
    _case(
        "payload func empty segment",
        _register(payload={"func": "app..resize"}),
        "payload.func",
    ),
    _case(
        "payload args a string", _register(payload={"func": "m.f", "args": "ab"}), "payload.args"
    ),
    _case("payload args an object", _register(payload={"func": "m.f", "args": {}}), "payload.args"),
    _case(
        "payload kwargs a list", _register(payload={"func": "m.f", "kwargs": [1]}), "payload.kwargs"
    ),
    _case(
        "payload kwargs int key",
        _register(payload={"func": "m.f", "kwargs": {1: 2}}),
        "payload.kwargs",
    ),
    *(
        _case(f"payload {name}", _register(payload=value), "payload")
        for name, value in UNSERIALISABLE
    ),
    _case("payload over 64 KiB", _register(payload=TOO_BIG), "payload"),
    # fail
    _case("fail error None", lambda t: t.fail("job-1", None), "error"),
    _case("fail error int", lambda t: t.fail("job-1", 5), "error"),
    _case("fail error bytes", lambda t: t.fail("job-1", b"boom"), "error"),
    _case("fail error 4097 chars", lambda t: t.fail("job-1", "x" * 4097), "error"),
    _case("fail retry string", lambda t: t.fail("job-1", "boom", retry="yes"), "retry"),
    _case("fail retry int", lambda t: t.fail("job-1", "boom", retry=1), "retry"),
    _case("fail retry None", lambda t: t.fail("job-1", "boom", retry=None), "retry"),
    # list
    _case("list state bogus", lambda t: t.list(state="running"), "state"),
    _case("list state unknown", lambda t: t.list(state="unknown"), "state"),
    _case("list State.UNKNOWN", lambda t: t.list(state=State.UNKNOWN), "state"),
    _case("list limit 0", lambda t: t.list(limit=0), "limit"),
    _case("list limit 1001", lambda t: t.list(limit=1001), "limit"),
    _case("list limit True", lambda t: t.list(limit=True), "limit"),
    _case("list limit string", lambda t: t.list(limit="10"), "limit"),
    _case("list queue with a space", lambda t: t.list(queue="a b"), "queue"),
    _case("list cursor garbage", lambda t: t.list(cursor="garbage"), "cursor"),
    _case("list cursor without jid", lambda t: t.list(cursor="1800000000000."), "cursor"),
    _case("list cursor without time", lambda t: t.list(cursor=".job-1"), "cursor"),
    _case("list cursor bad jid", lambda t: t.list(cursor="1800000000000.a b"), "cursor"),
    # track_set_many: one bad update among good ones sends nothing
    *(
        _case(
            f"track_set_many {name}",
            lambda t, bad=bad: t.track_set_many([{"jid": "job-1", "percent": 50}, bad]),
            field,
        )
        for name, bad, field in [
            ("percent 101", {"jid": "job-1", "percent": 101}, "percent"),
            ("desc int", {"jid": "job-1", "desc": 3}, "desc"),
            (
                "reserve_until without zone",
                {"jid": "job-1", "reserve_until": "2030-01-01"},
                "reserve_until",
            ),
            ("bad jid", {"jid": "a b", "percent": 1}, "jid"),
            ("missing jid", {"percent": 1}, "jid"),
            ("unknown field", {"jid": "job-1", "colour": "red"}, "updates"),
            ("not an object", "job-1", "updates"),
        ]
    ),
    _case(
        "track_set_many TrackUpdate percent 101",
        lambda t: t.track_set_many(
            [{"jid": "job-1", "percent": 50}, TrackUpdate("job-1", percent=101)]
        ),
        "percent",
    ),
    _case(
        "track_set_many TrackUpdate bad jid",
        lambda t: t.track_set_many(
            [{"jid": "job-1", "percent": 50}, TrackUpdate("a b", percent=1)]
        ),
        "jid",
    ),
]


def stored(tracker: Tracker) -> dict[bytes, tuple[bytes, Any]]:
    """Every key of the tracker's namespace with its type and content."""
    client = tracker.client
    out: dict[bytes, tuple[bytes, Any]] = {}
    for key in sorted(client.scan_iter(match=tracker.keys.prefix + "*", count=1000)):
        kind = client.type(key)
        if kind == b"hash":
            value: Any = client.hgetall(key)
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            value = client.smembers(key)
        elif kind == b"stream":
            value = client.xrange(key)
        else:
            value = client.get(key)
        out[key] = (kind, value)
    return out


@pytest.mark.parametrize(("call", "field"), REFUSED)
def test_a_refused_input_names_its_field_and_changes_nothing(
    tracker: Tracker, call: Call, field: str
) -> None:
    tracker.register("job-1", labels={"k": "v"})
    tracker.start("job-1")
    tracker.register("job-3")
    before, everything = tracker.track_get("job-1"), stored(tracker)
    with pytest.raises(InvalidInput) as refused:
        call(tracker)
    assert refused.value.field == field
    assert tracker.track_get("job-1") == before
    assert tracker.track_get("job-2").state is State.UNKNOWN
    assert stored(tracker) == everything


# --- the limits themselves are accepted ---------------------------------------------

EVERY_CLASS = "AZaz09-_.:@"
LONGEST_NAME = (EVERY_CLASS * 12)[:128]


@pytest.mark.parametrize("percent", [0, 100])
def test_percent_at_its_bounds_is_accepted(tracker: Tracker, percent: int) -> None:
    tracker.register("job-1")
    assert set_and_get(tracker, "job-1", percent=percent).percent == percent
    assert tracker.track_get("job-1").to_dict()["percent"] == percent


@pytest.mark.rq  # a payload is handed to RQ: none on a cluster
def test_a_payload_takes_an_integer_past_64_bits(tracker: Tracker) -> None:
    done = tracker.register("job-9", payload={"func": "m.f", "args": [2**70, [-(2**80)]]})
    assert done.track.payload == {"func": "m.f", "args": [2**70, [-(2**80)]], "kwargs": {}}


def test_percent_none_means_not_given(tracker: Tracker) -> None:
    tracker.register("job-1")
    tracker.track_set("job-1", percent=40)
    assert set_and_get(tracker, "job-1", percent=None, desc="half").percent == 40


def test_a_desc_of_exactly_4096_characters_is_accepted(tracker: Tracker) -> None:
    tracker.register("job-1")
    tracker.track_set("job-1", desc="é" * 4096)
    assert tracker.track_get("job-1").desc == "é" * 4096


def test_a_jid_of_128_characters_from_every_allowed_class_is_accepted(tracker: Tracker) -> None:
    assert len(LONGEST_NAME) == 128 and set(EVERY_CLASS) <= set(LONGEST_NAME)
    tracker.register(LONGEST_NAME)
    track = tracker.track_get(LONGEST_NAME)
    assert (track.jid, track.state) == (LONGEST_NAME, State.ENQUEUED)


def test_a_queue_and_a_label_key_of_128_characters_are_accepted(tracker: Tracker) -> None:
    tracker.register("job-1", queue=LONGEST_NAME, labels={LONGEST_NAME: "v" * 256})
    track = tracker.track_get("job-1")
    assert track.queue == LONGEST_NAME
    assert track.labels == {LONGEST_NAME: "v" * 256}


def test_32_labels_are_accepted(tracker: Tracker) -> None:
    labels = {f"k{n}": f"v{n}" for n in range(32)}
    tracker.register("job-1", labels=labels)
    assert tracker.track_get("job-1").labels == labels


def test_the_smallest_reserve_for_and_max_attempts_are_accepted(tracker: Tracker) -> None:
    tracker.register("job-1", reserve_for=1, max_attempts=1)
    track = tracker.start("job-1")
    assert track.reserve_until == track.updated_at + 1_000
    assert track.max_attempts == 1


def test_an_error_message_of_4096_characters_is_accepted(tracker: Tracker) -> None:
    tracker.register("job-1")
    tracker.start("job-1")
    assert tracker.fail("job-1", "e" * 4096).errors[0]["message"] == "e" * 4096


@pytest.mark.parametrize("limit", [1, 1000])
def test_list_limit_at_its_bounds_is_accepted(tracker: Tracker, limit: int) -> None:
    tracker.register("job-1")
    assert [t.jid for t in tracker.list(limit=limit).jobs] == ["job-1"]


@pytest.mark.parametrize(
    ("given", "rendered"),
    [
        ("2027-01-15T09:00:00.250Z", "2027-01-15T09:00:00.250Z"),
        ("2027-01-15T09:00:00.123456789Z", "2027-01-15T09:00:00.123Z"),
        ("2027-01-15T11:00:00+02:00", "2027-01-15T09:00:00Z"),
        ("2027-01-15T10:30:00.5+02:00", "2027-01-15T08:30:00.500Z"),
        (datetime(2027, 1, 15, 9, 0, tzinfo=UTC), "2027-01-15T09:00:00Z"),
    ],
)
def test_reserve_until_with_a_zone_is_accepted_and_rendered_in_utc(
    make_tracker: Any, given: object, rendered: str
) -> None:
    tracker = make_tracker(clock=FakeClock())  # 2027-01-15T08:00:00Z
    tracker.register("job-1", reserve_for=60)
    tracker.start("job-1")
    assert set_and_get(tracker, "job-1", reserve_until=given).to_dict()["reserve_until"] == rendered


# --- rendering -------------------------------------------------------------------------

_UTC_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z")


def test_to_dict_renders_every_time_as_rfc3339_utc_with_z(tracker: Tracker) -> None:
    tracker.register("job-1", max_attempts=3)
    tracker.start("job-1")
    tracker.fail("job-1", "boom")
    shown = tracker.start("job-1").to_dict()
    times = [
        shown["created_at"],
        shown["updated_at"],
        shown["reserve_until"],
        shown["error"]["at"],
        *(error["at"] for error in shown["errors"]),
    ]
    for text in times:
        assert _UTC_Z.fullmatch(text), text
        assert datetime.fromisoformat(text).utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_to_dict_shows_milliseconds_only_when_there_are_some(make_tracker: Any) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock)
    assert tracker.register("job-1").track.to_dict()["created_at"] == "2027-01-15T08:00:00Z"
    clock.advance(0.25)
    assert tracker.start("job-1").to_dict()["updated_at"] == "2027-01-15T08:00:00.250Z"
