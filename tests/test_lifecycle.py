"""SPEC section 3: every transition and every refusal, on every backend."""

from __future__ import annotations

import pytest
from conftest import set_and_get

from tracker import Conflict, NotFound, State, Tracker
from tracker.fields import FIELDS
from tracker.records import decode_event


def test_register_enqueues_a_job_with_no_prerequisites(tracker: Tracker) -> None:
    done = tracker.register("job-1", queue="mail", labels={"customer": "acme"})
    assert done.created
    track = done.track
    assert track.state is State.ENQUEUED
    assert (track.queue, track.attempts, track.max_attempts) == ("mail", 0, 25)
    assert track.labels == {"customer": "acme"}
    assert track.updated_at == track.created_at
    assert track.percent is None and track.desc is None


@pytest.mark.rq
def test_register_with_the_same_body_again_is_a_no_op(tracker: Tracker) -> None:
    first = tracker.register("job-1", labels={"a": "1", "b": "2"}, payload={"func": "m.f"})
    again = tracker.register("job-1", labels={"b": "2", "a": "1"}, payload={"func": "m.f"})
    assert not again.created
    assert again.track == first.track


def test_register_with_a_different_body_is_a_conflict(tracker: Tracker) -> None:
    tracker.register("job-1", queue="a")
    with pytest.raises(Conflict) as refused:
        tracker.register("job-1", queue="b")
    assert refused.value.state == "enqueued"
    assert tracker.track_get("job-1").queue == "a"


def test_register_of_a_finished_job_with_another_body_is_still_a_conflict(
    tracker: Tracker,
) -> None:
    tracker.register("job-1")
    tracker.success("job-1")
    with pytest.raises(Conflict) as refused:
        tracker.register("job-1", max_attempts=3)
    assert refused.value.state == "success"


def test_start_makes_the_job_working_and_reserves_it(tracker: Tracker) -> None:
    tracker.register("job-1", reserve_for=60)
    track = tracker.start("job-1")
    assert track.state is State.WORKING
    assert track.attempts == 1
    assert track.reserve_until == track.updated_at + 60_000


def test_start_takes_a_reserve_for_of_its_own(tracker: Tracker) -> None:
    tracker.register("job-1", reserve_for=60)
    track = tracker.start("job-1", reserve_for=5)
    assert track.reserve_until == track.updated_at + 5_000


def test_a_second_start_of_a_working_job_is_refused(tracker: Tracker) -> None:
    tracker.register("job-1")
    tracker.start("job-1")
    with pytest.raises(Conflict) as refused:
        tracker.start("job-1")
    assert refused.value.state == "working"
    assert tracker.track_get("job-1").attempts == 1


def test_track_set_reports_progress(tracker: Tracker) -> None:
    tracker.register("job-1")
    tracker.start("job-1")
    track = set_and_get(tracker, "job-1", percent=12, desc="Calculating...")
    assert (track.percent, track.desc, track.state) == (12, "Calculating...", State.WORKING)
    assert tracker.track_get("job-1") == track


def test_track_set_returning_returns_the_track_track_get_reads(tracker: Tracker) -> None:
    tracker.register("job-1", labels={"team": "a"}, max_attempts=3)
    tracker.start("job-1")
    tracker.fail("job-1", "boom", error_type="ValueError", traceback="Traceback: boom")
    tracker.start("job-1")
    track = tracker.track_set_returning("job-1", percent=40, desc="again")
    assert (track.percent, track.desc, track.attempts) == (40, "again", 2)
    assert track.errors[0]["traceback"] == "Traceback: boom"
    assert tracker.track_get("job-1") == track


def test_percent_zero_differs_from_never_set(tracker: Tracker) -> None:
    tracker.register("job-1")
    assert tracker.track_get("job-1").to_dict().get("percent", "absent") == "absent"
    assert set_and_get(tracker, "job-1", percent=0).to_dict()["percent"] == 0


def test_track_set_leaves_fields_it_was_not_given(tracker: Tracker) -> None:
    tracker.register("job-1")
    tracker.track_set("job-1", percent=10, desc="one")
    assert set_and_get(tracker, "job-1", percent=20).desc == "one"
    assert set_and_get(tracker, "job-1", desc="").percent == 20
    assert tracker.track_get("job-1").desc == ""


def test_success_keeps_the_last_percent_and_desc(tracker: Tracker) -> None:
    tracker.register("job-1")
    tracker.start("job-1")
    tracker.track_set("job-1", percent=98, desc="Clearing caches...")
    track = tracker.success("job-1")
    assert (track.state, track.percent, track.desc) == (State.SUCCESS, 98, "Clearing caches...")
    assert track.reserve_until is None


def test_success_from_enqueued_for_workers_that_never_start(tracker: Tracker) -> None:
    tracker.register("job-1")
    assert tracker.success("job-1").state is State.SUCCESS


def test_a_second_success_is_a_no_op(tracker: Tracker) -> None:
    tracker.register("job-1")
    first = tracker.success("job-1")
    assert tracker.success("job-1") == first


@pytest.mark.parametrize("state", ["paused", "failed"])
def test_success_is_refused_from_a_job_that_is_not_running(tracker: Tracker, state: str) -> None:
    tracker.register("job-1")
    if state == "paused":
        tracker.pause("job-1")
    else:
        tracker.start("job-1")
        tracker.fail("job-1", "boom")
    with pytest.raises(Conflict) as refused:
        tracker.success("job-1")
    assert refused.value.state == state


def test_fail_with_attempts_left_is_failed_and_can_start_again(tracker: Tracker) -> None:
    tracker.register("job-1", max_attempts=2)
    tracker.start("job-1")
    track = tracker.fail("job-1", "division by zero", error_type="ZeroDivisionError")
    assert track.state is State.FAILED
    assert track.error is not None
    assert track.error["message"] == "division by zero"
    assert track.error["type"] == "ZeroDivisionError"
    assert track.error["at"] == track.updated_at
    assert tracker.start("job-1").attempts == 2


def test_fail_with_attempts_exhausted_is_dead(tracker: Tracker) -> None:
    tracker.register("job-1", max_attempts=2)
    tracker.start("job-1")
    tracker.fail("job-1", "one")
    tracker.start("job-1")
    track = tracker.fail("job-1", "two")
    assert track.state is State.DEAD
    assert [e["message"] for e in track.errors] == ["two", "one"]


def test_fail_without_retry_is_dead_at_once(tracker: Tracker) -> None:
    tracker.register("job-1")
    tracker.start("job-1")
    assert tracker.fail("job-1", "bad input", retry=False).state is State.DEAD


def test_the_error_history_keeps_the_last_ten_newest_first(tracker: Tracker) -> None:
    tracker.register("job-1", max_attempts=50)
    for attempt in range(12):
        tracker.start("job-1")
        track = tracker.fail("job-1", f"failure {attempt}")
    assert [e["message"] for e in track.errors] == [f"failure {n}" for n in range(11, 1, -1)]
    assert track.to_dict()["error"]["message"] == "failure 11"


def test_fail_of_a_job_that_is_not_running_is_refused(tracker: Tracker) -> None:
    tracker.register("job-1")
    tracker.pause("job-1")
    with pytest.raises(Conflict):
        tracker.fail("job-1", "boom")
    assert tracker.track_get("job-1").errors == ()


@pytest.mark.parametrize("setup", ["enqueued", "working", "failed", "paused"])
def test_cancel_works_from_every_unfinished_state(tracker: Tracker, setup: str) -> None:
    tracker.register("job-1")
    if setup in ("working", "failed"):
        tracker.start("job-1")
    if setup == "failed":
        tracker.fail("job-1", "boom")
    if setup == "paused":
        tracker.pause("job-1")
    assert tracker.cancel("job-1").state is State.CANCELLED


@pytest.mark.parametrize("final", ["success", "dead", "cancelled"])
def test_a_terminal_state_never_changes(tracker: Tracker, final: str) -> None:
    tracker.register("job-1")
    tracker.start("job-1")
    if final == "success":
        tracker.success("job-1")
    elif final == "dead":
        tracker.fail("job-1", "x", retry=False)
    else:
        tracker.cancel("job-1")
    before = tracker.track_get("job-1")
    refusals = [
        lambda: tracker.start("job-1"),
        lambda: tracker.track_set("job-1", percent=5),
        lambda: tracker.fail("job-1", "late"),
        lambda: tracker.cancel("job-1"),
        lambda: tracker.pause("job-1"),
        lambda: tracker.resume("job-1"),
    ]
    if final != "success":
        refusals.append(lambda: tracker.success("job-1"))
    for refused in refusals:
        with pytest.raises(Conflict) as caught:
            refused()
        assert caught.value.state == final
    assert tracker.track_get("job-1") == before


def test_a_cancelled_workers_next_track_set_learns_it(tracker: Tracker) -> None:
    tracker.register("job-1")
    tracker.start("job-1")
    tracker.cancel("job-1")
    with pytest.raises(Conflict) as refused:
        tracker.track_set("job-1", percent=50)
    assert refused.value.state == "cancelled"


def test_pause_and_resume_an_enqueued_job(tracker: Tracker) -> None:
    tracker.register("job-1")
    assert tracker.pause("job-1").state is State.PAUSED
    with pytest.raises(Conflict):
        tracker.start("job-1")
    assert tracker.resume("job-1").state is State.ENQUEUED


def test_pausing_a_working_job_is_refused(tracker: Tracker) -> None:
    tracker.register("job-1")
    tracker.start("job-1")
    with pytest.raises(Conflict) as refused:
        tracker.pause("job-1")
    assert refused.value.state == "working"


def test_resuming_a_job_that_is_not_paused_is_refused(tracker: Tracker) -> None:
    tracker.register("job-1")
    with pytest.raises(Conflict) as refused:
        tracker.resume("job-1")
    assert refused.value.state == "enqueued"


@pytest.mark.parametrize("action", ["start", "track_set", "success", "fail", "cancel", "pause"])
def test_a_write_to_an_unknown_jid_is_not_found_and_creates_nothing(
    tracker: Tracker, action: str
) -> None:
    calls = {
        "start": lambda: tracker.start("ghost"),
        "track_set": lambda: tracker.track_set("ghost", percent=1),
        "success": lambda: tracker.success("ghost"),
        "fail": lambda: tracker.fail("ghost", "x"),
        "cancel": lambda: tracker.cancel("ghost"),
        "pause": lambda: tracker.pause("ghost"),
    }
    with pytest.raises(NotFound) as missing:
        calls[action]()
    assert missing.value.state == "unknown"
    assert tracker.track_get("ghost").state is State.UNKNOWN
    assert not tracker.client.exists(tracker.keys.job("ghost"))


def test_track_get_of_an_unknown_jid_is_unknown(tracker: Tracker) -> None:
    track = tracker.track_get("never-seen")
    assert track.to_dict() == {"jid": "never-seen", "state": "unknown"}


def test_two_namespaces_never_see_each_others_jobs(make_tracker) -> None:  # type: ignore[no-untyped-def]
    first, second = make_tracker(), make_tracker()
    client = first.client
    other = Tracker(client, type(second.settings)(namespace=second.settings.namespace))
    first.register("job-1")
    assert other.track_get("job-1").state is State.UNKNOWN
    assert other.stats().states == {}


#: Fields of a job's hash that only the scripts read, or that may weigh kilobytes:
#: events never carry them.
SCRIPTS_OWN = {f.stored.encode() for f in FIELDS if f.role != "track"}


def test_each_lifecycle_event_carries_the_track_and_none_of_the_scripts_own_fields(
    tracker: Tracker,
) -> None:
    tracker.register("batch", batch=True, labels={"team": "a"})
    tracker.register("build")
    tracker.register("job", parent="batch", prerequisites=["build"], labels={"k": "v"})
    tracker.register("after", prerequisites=["job"])
    tracker.start("build")
    tracker.success("build")
    tracker.start("job")
    tracker.fail("job", "boom")
    tracker.start("job")
    tracker.success("job")
    tracker.seal("batch")
    seen = 0
    for entry_id, fields in tracker.client.xrange(tracker.keys.events):
        assert not SCRIPTS_OWN & set(fields), fields
        event = decode_event(tracker.keys, entry_id, fields)
        if event.change and fields[b"jid"] == b"job":
            seen += 1
            final = event.track
    assert seen == 6  # waiting, enqueued, working, failed, working, success
    assert final == tracker.track_get("job")


def test_a_track_set_event_carries_the_whole_track(tracker: Tracker) -> None:
    tracker.register("batch", batch=True)
    tracker.register("job", parent="batch", labels={"k": "v"}, max_attempts=20)
    for _ in range(10):  # a history of 10 errors, over 64 KiB as JSON
        tracker.start("job")
        tracker.fail("job", '"' * 4096)
    tracker.start("job")
    for desc in "", "d" * 300, "done":
        after = tracker.newest_event()
        tracker.track_set("job", percent=len(desc) % 101, desc=desc)
        (event,) = (e for e in tracker.events(after) if e.track.jid == "job")
        assert not event.change
        assert event.track == tracker.track_get("job")
        assert event.track.desc == desc


def test_a_deletion_event_says_the_job_is_unknown(tracker: Tracker) -> None:
    tracker.register("job", queue="qa")
    tracker.cancel("job")
    tracker.delete("job")
    event = tracker.events("0")[-1]
    assert (event.track.jid, event.track.state, event.track.queue) == ("job", State.UNKNOWN, "qa")
    assert (event.was, event.change) == (State.CANCELLED, True)
