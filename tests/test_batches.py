"""SPEC section 5: batches, the roll-up of their children, and how they hold, finish,
nest, chain and cancel, on every backend."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from conftest import MakeTracker

from tracker import Conflict, State, Tracker
from tracker.calls import GRAPH_BUDGET

PAYLOAD = {"func": "os.path.join", "args": ["a"]}


def batch_of(tracker: Tracker, bid: str, *children: str, sealed: bool = False) -> None:
    """Register batch ``bid`` with ``children``, sealing it when ``sealed``."""
    tracker.register(bid, batch=True)
    for cid in children:
        tracker.register(cid, parent=bid)
    if sealed:
        tracker.seal(bid)


def percent_of(tracker: Tracker, jid: str) -> int | None:
    return tracker.track_get(jid).percent


# --- membership and the batch's own state ------------------------------------------


def test_a_batch_with_no_prerequisites_is_working(tracker: Tracker) -> None:
    track = tracker.register("b", batch=True).track
    assert track.state is State.WORKING
    assert track.batch == {"total": 0, "pending": 0, "success": 0, "dead": 0, "sealed": False}
    assert track.percent == 0


def test_a_child_names_its_batch_and_is_counted(tracker: Tracker) -> None:
    tracker.register("b", batch=True)
    child = tracker.register("c1", parent="b").track
    assert (child.state, child.parent) == (State.ENQUEUED, "b")
    batch = tracker.track_get("b").batch
    assert batch is not None
    assert (batch["total"], batch["pending"]) == (1, 1)


def test_list_by_parent_shows_the_batch_children_only(tracker: Tracker) -> None:
    batch_of(tracker, "b", "c1", "c2")
    tracker.register("inner", batch=True, parent="b")
    tracker.register("grandchild", parent="inner")
    batch_of(tracker, "other", "d1")
    tracker.register("plain")
    assert sorted(t.jid for t in tracker.list(parent="b").jobs) == ["c1", "c2", "inner"]
    assert [t.jid for t in tracker.list(parent="b", state="working").jobs] == ["inner"]


def test_sealing_a_batch_with_no_children_succeeds_at_once(tracker: Tracker) -> None:
    tracker.register("b", batch=True)
    track = tracker.seal("b")
    assert track.state is State.SUCCESS
    assert track.batch == {"total": 0, "pending": 0, "success": 0, "dead": 0, "sealed": True}
    assert track.percent == 100


def test_a_sealed_batch_succeeds_when_its_last_child_succeeds(tracker: Tracker) -> None:
    batch_of(tracker, "b", "c1", "c2", sealed=True)
    tracker.success("c1")
    track = tracker.track_get("b")
    assert track.state is State.WORKING
    assert track.batch == {"total": 2, "pending": 1, "success": 1, "dead": 0, "sealed": True}
    tracker.success("c2")
    track = tracker.track_get("b")
    assert track.state is State.SUCCESS
    assert track.batch == {"total": 2, "pending": 0, "success": 2, "dead": 0, "sealed": True}


def test_an_unsealed_batch_keeps_working_until_sealed(tracker: Tracker) -> None:
    batch_of(tracker, "b", "c1")
    tracker.success("c1")
    assert tracker.track_get("b").state is State.WORKING
    assert tracker.seal("b").state is State.SUCCESS


def test_sealing_twice_is_a_no_op(tracker: Tracker) -> None:
    batch_of(tracker, "b", "c1")
    first = tracker.seal("b")
    assert tracker.seal("b") == first


def test_sealing_a_job_that_is_not_a_batch_is_refused(tracker: Tracker) -> None:
    tracker.register("plain")
    before = tracker.track_get("plain")
    with pytest.raises(Conflict) as refused:
        tracker.seal("plain")
    assert refused.value.state == "enqueued"
    assert tracker.track_get("plain") == before


def test_a_child_registered_after_sealing_is_refused_and_changes_nothing(
    tracker: Tracker,
) -> None:
    batch_of(tracker, "b", "c1", sealed=True)
    before = tracker.track_get("b")
    with pytest.raises(Conflict) as refused:
        tracker.register("c2", parent="b", labels={"team": "x"})
    assert refused.value.state == "unknown"
    assert tracker.track_get("c2").state is State.UNKNOWN
    assert tracker.track_get("b") == before
    assert [t.jid for t in tracker.list(parent="b").jobs] == ["c1"]
    assert tracker.list(label="team:x").jobs == []


@pytest.mark.parametrize("parent", ["ghost", "plain", "cancelled-batch"])
def test_a_child_of_something_that_takes_no_children_is_refused(
    tracker: Tracker, parent: str
) -> None:
    tracker.register("plain")
    tracker.register("cancelled-batch", batch=True)
    tracker.cancel("cancelled-batch")
    before = tracker.track_get(parent)
    with pytest.raises(Conflict) as refused:
        tracker.register("c1", parent=parent)
    assert refused.value.state == "unknown"
    assert tracker.track_get("c1").state is State.UNKNOWN
    assert tracker.track_get(parent) == before


@pytest.mark.parametrize("how", ["dead", "cancelled"])
def test_a_batch_is_dead_as_soon_as_a_child_ends_badly(tracker: Tracker, how: str) -> None:
    batch_of(tracker, "b", "c1", "c2")  # not even sealed
    if how == "dead":
        tracker.start("c1")
        tracker.fail("c1", "boom", retry=False)
    else:
        tracker.cancel("c1")
    track = tracker.track_get("b")
    assert track.state is State.DEAD
    assert track.batch == {"total": 2, "pending": 1, "success": 0, "dead": 1, "sealed": False}
    assert track.error is not None and track.error["source"] == "c1"


def test_a_child_failing_with_a_retry_left_does_not_end_its_batch(tracker: Tracker) -> None:
    tracker.register("b", batch=True)
    tracker.register("c1", parent="b", max_attempts=2)
    tracker.start("c1")
    assert tracker.fail("c1", "flaky").state is State.FAILED
    track = tracker.track_get("b")
    assert track.state is State.WORKING
    assert track.batch is not None and track.batch["dead"] == 0


def test_a_batch_refuses_success_fail_a_percent_and_a_reservation_and_changes_nothing(
    tracker: Tracker,
) -> None:
    batch_of(tracker, "b", "c1")
    tracker.track_set("c1", percent=40)
    before = tracker.track_get("b")
    refusals = [
        lambda: tracker.success("b"),
        lambda: tracker.fail("b", "boom"),
        lambda: tracker.fail("b", "boom", retry=False),
        lambda: tracker.track_set("b", percent=90),
        lambda: tracker.track_set("b", desc="mine", reserve_until="2099-01-01T00:00:00Z"),
    ]
    for refused in refusals:
        with pytest.raises(Conflict) as caught:
            refused()
        assert caught.value.state == "working"
    many = tracker.track_set_many([{"jid": "b", "reserve_until": "2099-01-01T00:00:00Z"}])
    assert isinstance(many[0], Conflict) and many[0].state == "working"
    assert tracker.track_get("b") == before


# --- percent -----------------------------------------------------------------------


def test_an_unsealed_batch_divides_by_one_more_child_than_it_knows(tracker: Tracker) -> None:
    batch_of(tracker, "b", "c1", "c2")
    tracker.track_set("c1", percent=50)
    tracker.track_set("c2", percent=30)
    assert percent_of(tracker, "b") == 80 // 3


def test_a_sealed_batch_divides_by_its_children(tracker: Tracker) -> None:
    batch_of(tracker, "b", "c1", "c2")
    tracker.track_set("c1", percent=50)
    tracker.track_set("c2", percent=31)
    tracker.seal("b")
    assert percent_of(tracker, "b") == 81 // 2


def test_a_succeeded_child_counts_as_100_whatever_it_last_reported(tracker: Tracker) -> None:
    batch_of(tracker, "b", "c1", "c2", sealed=True)
    tracker.track_set("c1", percent=40)
    tracker.success("c1")
    tracker.track_set("c2", percent=30)
    assert percent_of(tracker, "b") == (100 + 30) // 2


def test_a_child_reporting_again_replaces_its_share(tracker: Tracker) -> None:
    batch_of(tracker, "b", "c1", "c2", sealed=True)
    tracker.track_set("c1", percent=60)
    tracker.track_set("c1", percent=20)
    assert percent_of(tracker, "b") == 10


def test_a_batch_percent_is_capped_at_99_until_it_succeeds(tracker: Tracker) -> None:
    batch_of(tracker, "b", "c1", "c2", sealed=True)
    tracker.track_set("c1", percent=100)
    tracker.track_set("c2", percent=100)
    track = tracker.track_get("b")
    assert (track.state, track.percent) == (State.WORKING, 99)
    tracker.success("c1")
    tracker.success("c2")
    track = tracker.track_get("b")
    assert (track.state, track.percent) == (State.SUCCESS, 100)


def test_a_nested_batch_counts_with_its_computed_percent(tracker: Tracker) -> None:
    tracker.register("outer", batch=True)
    tracker.register("inner", batch=True, parent="outer")
    tracker.register("leaf-1", parent="inner")
    tracker.register("leaf-2", parent="inner")
    tracker.seal("inner")
    tracker.seal("outer")
    tracker.track_set("leaf-1", percent=50)
    assert percent_of(tracker, "inner") == 25
    assert percent_of(tracker, "outer") == 25  # its one child, inner, is at 25


# --- a waiting batch holds its children -----------------------------------------------


def test_a_batch_waiting_for_its_prerequisites_holds_its_children(tracker: Tracker) -> None:
    tracker.register("prep")
    track = tracker.register("b", batch=True, prerequisites=["prep"]).track
    assert (track.state, track.prerequisites) == (State.WAITING, {"total": 1, "pending": 1})
    child = tracker.register("c1", parent="b").track
    assert (child.state, child.parent) == (State.WAITING, "b")
    tracker.success("prep")
    assert tracker.track_get("b").state is State.WORKING
    assert tracker.track_get("c1").state is State.ENQUEUED


def test_a_held_child_also_waits_for_its_own_prerequisites(tracker: Tracker) -> None:
    tracker.register("prep")
    tracker.register("own")
    tracker.register("b", batch=True, prerequisites=["prep"])
    track = tracker.register("c1", parent="b", prerequisites=["own"]).track
    assert (track.state, track.prerequisites) == (State.WAITING, {"total": 1, "pending": 1})
    tracker.success("prep")
    track = tracker.track_get("c1")
    assert (track.state, track.prerequisites) == (State.WAITING, {"total": 1, "pending": 1})
    tracker.success("own")
    assert tracker.track_get("c1").state is State.ENQUEUED


def test_a_child_whose_own_prerequisites_are_done_still_waits_for_its_batch(
    tracker: Tracker,
) -> None:
    tracker.register("prep")
    tracker.register("own")
    tracker.register("b", batch=True, prerequisites=["prep"])
    tracker.register("c1", parent="b", prerequisites=["own"])
    tracker.success("own")
    track = tracker.track_get("c1")
    assert (track.state, track.prerequisites) == (State.WAITING, {"total": 1, "pending": 0})
    tracker.success("prep")
    assert tracker.track_get("c1").state is State.ENQUEUED


def test_a_sealed_empty_batch_succeeds_once_its_prerequisites_do(tracker: Tracker) -> None:
    tracker.register("prep")
    tracker.register("b", batch=True, prerequisites=["prep"])
    assert tracker.seal("b").state is State.WAITING
    tracker.success("prep")
    assert tracker.track_get("b").state is State.SUCCESS


def test_without_propagation_a_child_joining_a_blocked_batch_is_blocked_at_once(
    make_tracker: MakeTracker,
) -> None:
    tracker = make_tracker(propagate_failures=False)
    tracker.register("prep")
    tracker.register("b", batch=True, prerequisites=["prep"])
    tracker.register("early", parent="b")
    tracker.cancel("prep")
    assert tracker.track_get("early").blocked_by == "prep"
    late = tracker.register("late", parent="b").track
    assert (late.state, late.blocked_by) == (State.WAITING, "prep")


def test_with_propagation_a_held_child_killed_kills_its_batch_and_held_siblings(
    make_tracker: MakeTracker,
) -> None:
    tracker = make_tracker(propagate_failures=True)
    tracker.register("prep")
    tracker.register("own")
    tracker.register("b", batch=True, prerequisites=["prep"])
    tracker.register("c1", parent="b", prerequisites=["own"])
    tracker.register("c2", parent="b")
    tracker.cancel("own")
    for jid in ("c1", "b", "c2"):
        track = tracker.track_get(jid)
        assert track.state is State.DEAD, jid
        assert track.error is not None and track.error["source"] == "own", jid


def test_a_paused_batch_holds_its_children_until_resumed(tracker: Tracker) -> None:
    tracker.register("prep")
    tracker.register("b", batch=True, prerequisites=["prep"])
    tracker.pause("b")
    tracker.register("c1", parent="b")
    tracker.success("prep")
    assert tracker.track_get("b").state is State.PAUSED
    assert tracker.track_get("c1").state is State.WAITING
    assert tracker.resume("b").state is State.WORKING
    assert tracker.track_get("c1").state is State.ENQUEUED


@pytest.mark.rq
def test_a_held_payload_child_is_handed_to_rq_when_its_batch_is_released(
    tracker: Tracker, rq_names: tuple[str, str]
) -> None:
    queue, jid = rq_names
    tracker.register("prep")
    tracker.register("b", batch=True, prerequisites=["prep"])
    tracker.register(jid, parent="b", queue=queue, payload=PAYLOAD)
    assert tracker.client.lrange("rq:queue:" + queue, 0, -1) == []
    tracker.success("prep")
    assert tracker.client.lrange("rq:queue:" + queue, 0, -1) == [jid.encode()]
    assert tracker.client.exists("rq:job:" + jid)


@pytest.fixture
def rq_names(tracker: Tracker) -> Iterator[tuple[str, str]]:
    """A queue and a jid of this test alone (RQ's keys are shared by every namespace);
    their RQ keys go when it ends."""
    queue = "q-" + uuid.uuid4().hex[:12]
    jid = "child-" + queue
    yield queue, jid
    tracker.client.delete("rq:queue:" + queue, "rq:job:" + jid)
    tracker.client.srem("rq:queues", "rq:queue:" + queue)


# --- nesting and chains ----------------------------------------------------------------


def nested(tracker: Tracker) -> None:
    """outer > inner > leaf, both batches sealed."""
    tracker.register("outer", batch=True)
    tracker.register("inner", batch=True, parent="outer")
    tracker.register("leaf", parent="inner")
    tracker.seal("inner")
    tracker.seal("outer")


def test_nested_batches_succeed_from_the_inside_out(tracker: Tracker) -> None:
    nested(tracker)
    inner = tracker.track_get("inner")
    assert (inner.state, inner.parent) == (State.WORKING, "outer")
    assert tracker.track_get("leaf").state is State.ENQUEUED
    tracker.success("leaf")
    assert tracker.track_get("inner").state is State.SUCCESS
    outer = tracker.track_get("outer")
    assert outer.state is State.SUCCESS
    assert outer.batch == {"total": 1, "pending": 0, "success": 1, "dead": 0, "sealed": True}


def test_a_dead_grandchild_makes_both_batches_dead(tracker: Tracker) -> None:
    nested(tracker)
    tracker.start("leaf")
    tracker.fail("leaf", "boom", retry=False)
    assert tracker.track_get("inner").state is State.DEAD
    assert tracker.track_get("outer").state is State.DEAD


def test_a_waiting_outer_batch_holds_its_grandchildren(tracker: Tracker) -> None:
    tracker.register("prep")
    tracker.register("outer", batch=True, prerequisites=["prep"])
    tracker.register("inner", batch=True, parent="outer")
    tracker.register("leaf", parent="inner")
    assert tracker.track_get("inner").state is State.WAITING
    assert tracker.track_get("leaf").state is State.WAITING
    tracker.success("prep")
    assert tracker.track_get("inner").state is State.WORKING
    assert tracker.track_get("leaf").state is State.ENQUEUED


def steps(tracker: Tracker) -> None:
    """Two steps of parallel jobs: step-1 (a1, a2), then step-2 (b1), both sealed."""
    batch_of(tracker, "step-1", "a1", "a2", sealed=True)
    tracker.register("step-2", batch=True, prerequisites=["step-1"])
    tracker.register("b1", parent="step-2")
    tracker.seal("step-2")


def test_a_batch_as_prerequisite_runs_steps_in_order(tracker: Tracker) -> None:
    steps(tracker)
    assert tracker.track_get("step-2").state is State.WAITING
    tracker.success("a1")
    assert tracker.track_get("b1").state is State.WAITING
    tracker.success("a2")
    assert tracker.track_get("step-1").state is State.SUCCESS
    assert tracker.track_get("step-2").state is State.WORKING
    assert tracker.track_get("b1").state is State.ENQUEUED
    tracker.success("b1")
    assert tracker.track_get("step-2").state is State.SUCCESS


def test_with_propagation_a_dead_step_kills_the_next_step_and_its_children(
    make_tracker: MakeTracker,
) -> None:
    tracker = make_tracker(propagate_failures=True)
    steps(tracker)
    tracker.start("a1")
    tracker.fail("a1", "boom", retry=False)
    assert tracker.track_get("step-1").state is State.DEAD
    for jid in ("step-2", "b1"):
        track = tracker.track_get(jid)
        assert track.state is State.DEAD, jid
        assert track.error is not None
        assert (track.error["source"], track.error["type"]) == ("a1", "PrerequisiteFailed")


def test_without_propagation_a_dead_step_blocks_the_next_step_and_its_children(
    make_tracker: MakeTracker,
) -> None:
    tracker = make_tracker(propagate_failures=False)
    steps(tracker)
    tracker.cancel("a1")
    for jid in ("step-2", "b1"):
        track = tracker.track_get(jid)
        assert (track.state, track.blocked_by) == (State.WAITING, "a1"), jid


def test_with_propagation_cancelling_a_batch_kills_its_dependents(
    make_tracker: MakeTracker,
) -> None:
    tracker = make_tracker(propagate_failures=True)
    batch_of(tracker, "b", "c1")
    tracker.register("after", prerequisites=["b"])
    tracker.cancel("b")
    track = tracker.track_get("after")
    assert track.state is State.DEAD
    assert track.error is not None
    assert (track.error["source"], track.error["type"]) == ("b", "PrerequisiteFailed")


# --- cycles through batches -------------------------------------------------------------


def test_a_child_naming_its_own_batch_as_prerequisite_is_a_cycle(tracker: Tracker) -> None:
    tracker.register("b", batch=True)
    before = tracker.track_get("b")
    with pytest.raises(Conflict) as refused:
        tracker.register("c1", parent="b", prerequisites=["b"])
    assert refused.value.state == "unknown"
    assert tracker.track_get("c1").state is State.UNKNOWN
    assert tracker.track_get("b") == before


def test_a_batch_waiting_for_its_own_child_is_a_cycle(tracker: Tracker) -> None:
    tracker.register("b", batch=True, prerequisites=["c1"])
    before = tracker.track_get("b")
    with pytest.raises(Conflict) as refused:
        tracker.register("c1", parent="b")
    assert refused.value.state == "unknown"
    assert tracker.track_get("c1").state is State.UNKNOWN
    assert tracker.track_get("b") == before


def test_a_cycle_through_a_held_child_is_refused(tracker: Tracker) -> None:
    tracker.register("b", batch=True, prerequisites=["prep"])
    tracker.register("c1", parent="b")  # held: it waits for b, which waits for prep
    with pytest.raises(Conflict) as refused:
        tracker.register("prep", prerequisites=["c1"])
    assert refused.value.state == "unknown"
    assert tracker.track_get("prep").state is State.UNKNOWN


# --- cancel ----------------------------------------------------------------------------


def test_cancelling_a_batch_cancels_its_unfinished_children(tracker: Tracker) -> None:
    batch_of(tracker, "b", "queued", "running", "done")
    tracker.start("running")
    tracker.success("done")
    assert tracker.cancel("b").state is State.CANCELLED
    assert tracker.track_get("queued").state is State.CANCELLED
    assert tracker.track_get("running").state is State.CANCELLED
    assert tracker.track_get("done").state is State.SUCCESS


def test_cancelling_a_batch_cancels_nested_batches_and_their_children(tracker: Tracker) -> None:
    nested(tracker)
    tracker.cancel("outer")
    assert tracker.track_get("inner").state is State.CANCELLED
    assert tracker.track_get("leaf").state is State.CANCELLED


def test_a_cancel_in_chunks_cancels_every_grandchild_whatever_reaches_it_first(
    make_tracker: MakeTracker,
) -> None:
    # more children than one call may touch: the cancel reaches "inner" in some chunk,
    # while its cancelled siblings pass their failure on to the grandchildren meanwhile
    tracker = make_tracker(propagate_failures=True)
    tracker.register("outer", batch=True)
    tracker.register("inner", batch=True, parent="outer")
    children = GRAPH_BUDGET + 50
    for n in range(children):
        tracker.register(f"c{n}", parent="outer")
        tracker.register(f"x{n}", parent="inner", prerequisites=[f"c{n}"])
    tracker.cancel("outer")
    assert tracker.stats().states == {"cancelled": 2 + 2 * children}
    inner = tracker.track_get("inner")
    assert (inner.error, inner.batch) == (
        None,
        {"total": children, "pending": children, "success": 0, "dead": 0, "sealed": False},
    )


def test_cancelling_a_waiting_batch_cancels_the_children_it_holds(tracker: Tracker) -> None:
    tracker.register("prep")
    tracker.register("b", batch=True, prerequisites=["prep"])
    tracker.register("c1", parent="b")
    tracker.cancel("b")
    assert tracker.track_get("c1").state is State.CANCELLED
    tracker.success("prep")
    assert tracker.track_get("b").state is State.CANCELLED
    assert tracker.track_get("c1").state is State.CANCELLED
