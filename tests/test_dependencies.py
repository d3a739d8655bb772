"""SPEC section 4: prerequisites, their release, delays, cycles and failure propagation,
and the RQ hand-off of a released job with a payload (section 8), on every backend."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Any

import pytest
import redis
from bulk import register_each, register_many
from conftest import FakeClock, MakeTracker, wait_until

from tracker import Conflict, InvalidInput, NotFound, State, Tracker
from tracker.calls import GRAPH_BUDGET, Plan
from tracker.scripts import Library

PAYLOAD = {"func": "os.path.join", "args": ["a"]}
#: More dependents than one script call may touch: a release takes several calls.
FAN_OUT = GRAPH_BUDGET + 50


def seed_example(tracker: Tracker) -> None:
    """The example of seeds/000: T1 has dependents T2 and T3, and T3 has a dependent T4."""
    tracker.register("T1")
    tracker.register("T2", prerequisites=["T1"])
    tracker.register("T3", prerequisites=["T1"])
    tracker.register("T4", prerequisites=["T3"])


def end(tracker: Tracker, jid: str, how: str) -> None:
    """End ``jid`` dead (a failure with no retry) or cancelled."""
    if how == "dead":
        tracker.start(jid)
        tracker.fail(jid, "boom", retry=False)
    else:
        tracker.cancel(jid)


# --- waiting and release ---------------------------------------------------------


def test_a_job_with_a_pending_prerequisite_waits(tracker: Tracker) -> None:
    tracker.register("build")
    track = tracker.register("deploy", prerequisites=["build"]).track
    assert track.state is State.WAITING
    assert track.prerequisites == {"total": 1, "pending": 1}
    assert (track.blocked_by, track.eligible_at) == (None, None)


def test_a_job_whose_prerequisites_all_succeeded_is_enqueued_at_once(tracker: Tracker) -> None:
    tracker.register("build")
    tracker.success("build")
    track = tracker.register("deploy", prerequisites=["build"]).track
    assert track.state is State.ENQUEUED
    assert track.prerequisites == {"total": 1, "pending": 0}


def test_each_success_counts_down_and_the_last_one_releases_the_job(tracker: Tracker) -> None:
    tracker.register("a")
    tracker.register("b")
    tracker.register("joined", prerequisites=["a", "b"])
    tracker.success("a")
    track = tracker.track_get("joined")
    assert (track.state, track.prerequisites) == (State.WAITING, {"total": 2, "pending": 1})
    tracker.success("b")
    track = tracker.track_get("joined")
    assert (track.state, track.prerequisites) == (State.ENQUEUED, {"total": 2, "pending": 0})


def test_a_second_success_of_a_prerequisite_releases_nothing_more(tracker: Tracker) -> None:
    tracker.register("a")
    tracker.register("b")
    tracker.register("joined", prerequisites=["a", "b"])
    tracker.success("a")
    tracker.success("a")
    track = tracker.track_get("joined")
    assert (track.state, track.prerequisites) == (State.WAITING, {"total": 2, "pending": 1})
    tracker.success("b")
    assert tracker.track_get("joined").prerequisites == {"total": 2, "pending": 0}


def test_a_prerequisite_not_registered_yet_counts_as_pending(tracker: Tracker) -> None:
    track = tracker.register("deploy", prerequisites=["build"]).track
    assert track.state is State.WAITING
    assert track.prerequisites == {"total": 1, "pending": 1}
    assert tracker.track_get("build").state is State.UNKNOWN


def test_a_prerequisite_registered_later_releases_its_dependent_when_it_succeeds(
    tracker: Tracker,
) -> None:
    tracker.register("deploy", prerequisites=["build"])
    assert tracker.register("build").track.state is State.ENQUEUED
    assert tracker.track_get("deploy").state is State.WAITING
    tracker.success("build")
    track = tracker.track_get("deploy")
    assert (track.state, track.prerequisites) == (State.ENQUEUED, {"total": 1, "pending": 0})


def test_missing_prerequisites_satisfied_counts_an_unknown_one_as_done(tracker: Tracker) -> None:
    track = tracker.register(
        "deploy", prerequisites=["long-gone"], missing_prerequisites="satisfied"
    ).track
    assert track.state is State.ENQUEUED
    assert track.prerequisites == {"total": 1, "pending": 0}


def test_missing_prerequisites_satisfied_still_waits_for_a_registered_one(
    tracker: Tracker,
) -> None:
    tracker.register("build")
    track = tracker.register(
        "deploy", prerequisites=["build", "long-gone"], missing_prerequisites="satisfied"
    ).track
    assert (track.state, track.prerequisites) == (State.WAITING, {"total": 2, "pending": 1})
    tracker.success("build")
    assert tracker.track_get("deploy").state is State.ENQUEUED


def test_a_remembered_success_counts_as_done_after_its_track_expired(
    make_real_tracker: MakeTracker,
) -> None:
    clock = FakeClock()
    tracker = make_real_tracker(ttl=1, done_ttl=3600, clock=clock)
    tracker.register("build")
    tracker.success("build")
    wait_until(lambda: tracker.track_get("build").state is State.UNKNOWN, timeout=5)
    clock.advance(1 + 3600 - 1)  # still within TTL + DONE_TTL of the success
    track = tracker.register("deploy", prerequisites=["build"]).track
    assert (track.state, track.prerequisites) == (State.ENQUEUED, {"total": 1, "pending": 0})


def test_a_success_is_forgotten_once_ttl_and_done_ttl_have_passed(
    make_real_tracker: MakeTracker,
) -> None:
    clock = FakeClock()
    tracker = make_real_tracker(ttl=1, done_ttl=60, clock=clock)
    tracker.register("build")
    tracker.success("build")
    wait_until(lambda: tracker.track_get("build").state is State.UNKNOWN, timeout=5)
    clock.advance(1 + 60 + 1)
    track = tracker.register("deploy", prerequisites=["build"]).track
    assert (track.state, track.prerequisites) == (State.WAITING, {"total": 1, "pending": 1})


def test_concurrent_successes_release_a_dependent_exactly_once(
    make_real_tracker: MakeTracker,
) -> None:
    first = make_real_tracker()
    prerequisites = [f"part-{n}" for n in range(16)]
    for jid in prerequisites:
        first.register(jid)
    first.register("joined", prerequisites=prerequisites)
    pool = first.client.connection_pool  # redis-py pools are thread-safe
    workers = [Tracker(redis.Redis(connection_pool=pool), first.settings) for _ in prerequisites]
    barrier = threading.Barrier(len(workers))

    def finish(worker: Tracker, jid: str) -> None:
        barrier.wait(timeout=30)
        worker.success(jid)
        worker.success(jid)  # a duplicate report, racing the others

    with ThreadPoolExecutor(len(workers)) as threads:
        list(threads.map(finish, workers, prerequisites, timeout=60))
    track = first.track_get("joined")
    assert (track.state, track.prerequisites) == (State.ENQUEUED, {"total": 16, "pending": 0})
    events = first.events("0", 100_000)
    states = [event.track.state for event in events if event.track.jid == "joined"]
    assert states == [State.WAITING, State.ENQUEUED]


def test_a_dependent_whose_track_expired_leaves_nothing_behind(tracker: Tracker) -> None:
    tracker.register("build")
    tracker.register("gone", prerequisites=["build"])
    tracker.register("deploy", prerequisites=["build"])
    tracker.client.delete(tracker.keys.job("gone"))  # as if its track had expired
    tracker.success("build")
    assert tracker.client.exists(tracker.keys.job("gone")) == 0
    assert tracker.track_get("gone").state is State.UNKNOWN
    assert tracker.track_get("deploy").state is State.ENQUEUED


# --- big fan-outs ------------------------------------------------------------------


def register_fan_out(tracker: Tracker) -> list[str]:
    tracker.register("root")
    dependents = [f"dep-{n}" for n in range(FAN_OUT)]
    for jid in dependents:
        tracker.register(jid, prerequisites=["root"])
    return dependents


def first_call_only(tracker: Tracker, plan: Plan[Any]) -> None:
    """Run a plan's first script call and drop the rest: a caller that died midway."""
    call = next(plan)
    Library().call(tracker.client, call)
    plan.close()


def test_a_big_fan_out_is_released_exactly_once_by_one_success(tracker: Tracker) -> None:
    dependents = register_fan_out(tracker)
    tracker.success("root")
    assert tracker.stats().states == {"success": 1, "enqueued": FAN_OUT}
    for jid in dependents:
        assert tracker.track_get(jid).prerequisites == {"total": 1, "pending": 0}
    assert tracker.drain() == 1  # nothing was left over


def test_a_fan_out_is_released_in_chunks_that_drain_finishes(tracker: Tracker) -> None:
    dependents = register_fan_out(tracker)
    first_call_only(tracker, tracker.plans.success("root"))
    states = tracker.stats().states
    # a call stops at GRAPH_BUDGET commits
    assert 0 < states["enqueued"] <= GRAPH_BUDGET
    assert states == {
        "success": 1,
        "enqueued": states["enqueued"],
        "waiting": FAN_OUT - states["enqueued"],
    }
    tracker.drain()
    assert tracker.stats().states == {"success": 1, "enqueued": FAN_OUT}
    for jid in dependents:
        assert tracker.track_get(jid).prerequisites == {"total": 1, "pending": 0}


def test_a_fan_out_that_releases_nobody_yet_is_still_taken_in_bounded_chunks(
    tracker: Tracker,
) -> None:
    tracker.register("root")
    tracker.register("other")
    dependents = [f"dep-{n}" for n in range(FAN_OUT)]
    for jid in dependents:
        tracker.register(jid, prerequisites=["root", "other"])
    first_call_only(tracker, tracker.plans.success("root"))

    def counted() -> int:
        return sum(
            tracker.track_get(jid).prerequisites == {"total": 2, "pending": 1} for jid in dependents
        )

    assert 0 < counted() <= GRAPH_BUDGET  # each costs no commit, yet a call stops
    tracker.drain()
    assert counted() == FAN_OUT
    tracker.success("other")
    assert tracker.stats().states == {"success": 2, "enqueued": FAN_OUT}


@pytest.mark.parametrize("propagate", [True, False])
def test_a_big_fan_out_learns_of_a_cancelled_prerequisite(
    make_tracker: MakeTracker, propagate: bool
) -> None:
    tracker = make_tracker(propagate_failures=propagate)
    dependents = register_fan_out(tracker)
    tracker.cancel("root")
    expected = State.DEAD if propagate else State.WAITING
    assert tracker.stats().states == {"cancelled": 1, expected.value: FAN_OUT}
    for jid in dependents:
        track = tracker.track_get(jid)
        if propagate:
            assert track.error is not None and track.error["source"] == "root"
        else:
            assert track.blocked_by == "root"


# --- release latency in the event stream -------------------------------------------


def release_latencies(tracker: Tracker) -> dict[str, int]:
    """Per jid, the ``rl`` of its release event (waiting -> enqueued); no other event of
    the stream may carry one."""
    latencies: dict[str, int] = {}
    for event in tracker.events("0", 100_000):
        jid = event.track.jid
        if event.track.state is State.ENQUEUED and event.was is State.WAITING:
            assert jid not in latencies and event.release_ms is not None, (jid, event)
            latencies[jid] = event.release_ms
        else:
            assert event.release_ms is None, (jid, event)
    return latencies


def test_a_release_in_the_call_of_the_last_success_has_latency_0(
    make_tracker: MakeTracker,
) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock)
    tracker.register("build")
    tracker.register("deploy", prerequisites=["build"])
    tracker.register("checks", batch=True, prerequisites=["build"])
    tracker.register("lint", parent="checks")  # held: released with its batch
    tracker.register("alone")  # enqueued at its registration: not a release
    clock.advance(5)
    tracker.success("build")
    assert release_latencies(tracker) == {"deploy": 0, "lint": 0}
    assert b"rl" not in tracker.client.hgetall(tracker.keys.job("deploy"))  # the event's only


def test_a_fan_out_chunk_drained_later_counts_from_the_success(make_tracker: MakeTracker) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock)
    dependents = register_fan_out(tracker)
    first_call_only(tracker, tracker.plans.success("root"))
    clock.advance(2.5)
    tracker.drain()
    latencies = release_latencies(tracker)
    assert sorted(latencies) == sorted(dependents)
    at_once = sum(rl == 0 for rl in latencies.values())
    assert 0 < at_once <= GRAPH_BUDGET
    assert sorted(set(latencies.values())) == [0, 2500]


def test_a_promoted_delayed_job_counts_from_eligible_at(make_tracker: MakeTracker) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock)
    tracker.register("build")
    tracker.register("report", prerequisites=["build"], delay=30)
    tracker.success("build")  # released into its delay: still waiting, no latency yet
    assert release_latencies(tracker) == {}
    clock.advance(31.5)
    assert tracker.promote() == 1
    assert release_latencies(tracker) == {"report": 1500}


# --- delays ----------------------------------------------------------------------


def test_a_delayed_job_waits_with_eligible_at_until_promoted(make_tracker: MakeTracker) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock)
    track = tracker.register("report", delay=30).track
    assert track.state is State.WAITING
    assert track.eligible_at == int(clock.now * 1000) + 30_000
    clock.advance(29)
    assert tracker.promote() == 0
    assert tracker.track_get("report").state is State.WAITING
    clock.advance(1)
    assert tracker.promote() == 1
    track = tracker.track_get("report")
    assert (track.state, track.eligible_at) == (State.ENQUEUED, None)


def test_a_delay_counts_from_the_release(make_tracker: MakeTracker) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock)
    tracker.register("build")
    track = tracker.register("report", prerequisites=["build"], delay=30).track
    assert (track.state, track.eligible_at) == (State.WAITING, None)
    clock.advance(100)
    tracker.success("build")
    track = tracker.track_get("report")
    assert track.state is State.WAITING
    assert track.prerequisites == {"total": 1, "pending": 0}
    assert track.eligible_at == int(clock.now * 1000) + 30_000
    clock.advance(30)
    assert tracker.promote() == 1
    assert tracker.track_get("report").state is State.ENQUEUED


# --- cycles ----------------------------------------------------------------------


def test_a_job_naming_itself_as_prerequisite_is_a_cycle(tracker: Tracker) -> None:
    with pytest.raises(Conflict) as refused:
        tracker.register("a", prerequisites=["a"])
    assert refused.value.state == "unknown"
    assert tracker.track_get("a").state is State.UNKNOWN


def test_a_direct_cycle_is_refused_and_changes_nothing(tracker: Tracker) -> None:
    tracker.register("a", prerequisites=["b"])
    before = tracker.track_get("a")
    with pytest.raises(Conflict) as refused:
        tracker.register("b", prerequisites=["a"])
    assert refused.value.state == "unknown"
    assert tracker.track_get("b").state is State.UNKNOWN
    assert tracker.track_get("a") == before
    assert not tracker.client.exists(tracker.keys.dependents("a"))
    # the refused body left nothing behind: b registers afresh and releases a
    assert tracker.register("b").created
    tracker.success("b")
    assert tracker.track_get("a").state is State.ENQUEUED


def test_a_cycle_through_other_jobs_is_refused_and_changes_nothing(tracker: Tracker) -> None:
    tracker.register("a", prerequisites=["b"])
    tracker.register("b", prerequisites=["c"])
    before = [tracker.track_get(jid) for jid in ("a", "b")]
    stats = tracker.stats()
    with pytest.raises(Conflict) as refused:
        tracker.register("c", prerequisites=["a"], queue="elsewhere", labels={"team": "x"})
    assert refused.value.state == "unknown"
    assert tracker.track_get("c").state is State.UNKNOWN
    assert [tracker.track_get(jid) for jid in ("a", "b")] == before
    assert tracker.stats() == stats
    assert not tracker.client.hexists(tracker.keys.queues, "elsewhere")
    assert tracker.list(label="team:x").jobs == []


def test_a_job_that_20000_others_wait_for_registers_with_a_prerequisite(
    make_real_tracker: MakeTracker,
) -> None:
    tracker = make_real_tracker()
    register_many(tracker, (f"leaf-{n}" for n in range(20_000)), prerequisites=["root"])
    track = tracker.register("root", prerequisites=["prep"]).track
    assert track.state is State.WAITING
    tracker.register("prep")
    tracker.success("prep")
    assert tracker.track_get("root").state is State.ENQUEUED


def test_a_cycle_through_a_long_chain_is_refused_and_changes_nothing(tracker: Tracker) -> None:
    # each link waits for the next, registered before it: link-0 waits for the whole chain
    links = [f"link-{n}" for n in range(120)]
    register_each(tracker, ((jid, {"prerequisites": [after]}) for jid, after in pairwise(links)))
    stats = tracker.stats()
    with pytest.raises(Conflict, match="cycle"):
        tracker.register(links[-1], prerequisites=["link-0"])
    assert tracker.track_get(links[-1]).state is State.UNKNOWN
    assert tracker.stats() == stats
    assert tracker.register(links[-1], prerequisites=["other"]).track.state is State.WAITING


def test_a_cycle_longer_than_the_check_can_follow_is_still_refused(
    make_real_tracker: MakeTracker,
) -> None:
    tracker = make_real_tracker()
    links = [f"link-{n}" for n in range(3000)]
    register_each(tracker, ((jid, {"prerequisites": [after]}) for jid, after in pairwise(links)))
    with pytest.raises(Conflict, match="too many"):
        tracker.register(links[-1], prerequisites=["link-0"])
    assert tracker.track_get(links[-1]).state is State.UNKNOWN


def test_a_graph_large_on_both_sides_is_refused_for_its_size_and_changes_nothing(
    make_real_tracker: MakeTracker,
) -> None:
    tracker = make_real_tracker()
    tracker.register("big", batch=True)
    register_many(tracker, (f"child-{n}" for n in range(3000)), parent="big")
    register_many(tracker, (f"leaf-{n}" for n in range(3000)), prerequisites=["new"])
    with pytest.raises(Conflict, match="too many") as refused:
        tracker.register("new", prerequisites=["big"])
    assert refused.value.state == "unknown"
    assert tracker.track_get("new").state is State.UNKNOWN
    # either side alone is small enough
    assert tracker.register("new", prerequisites=["elsewhere"]).created


# --- failure propagation ---------------------------------------------------------


@pytest.mark.parametrize("how", ["dead", "cancelled"])
def test_with_propagation_the_seed_example_is_dead_naming_t1(
    make_tracker: MakeTracker, how: str
) -> None:
    tracker = make_tracker(propagate_failures=True)
    seed_example(tracker)
    end(tracker, "T1", how)
    assert tracker.track_get("T1").state.value == how
    for jid in ("T2", "T3", "T4"):
        track = tracker.track_get(jid)
        assert track.state is State.DEAD, jid
        assert track.error is not None
        assert (track.error["source"], track.error["type"]) == ("T1", "PrerequisiteFailed")


@pytest.mark.parametrize("how", ["dead", "cancelled"])
def test_without_propagation_the_seed_example_waits_blocked_by_t1(
    make_tracker: MakeTracker, how: str
) -> None:
    tracker = make_tracker(propagate_failures=False)
    seed_example(tracker)
    end(tracker, "T1", how)
    for jid in ("T2", "T3", "T4"):
        track = tracker.track_get(jid)
        assert (track.state, track.blocked_by, track.errors) == (State.WAITING, "T1", ()), jid


def test_propagation_is_off_by_default(tracker: Tracker) -> None:
    seed_example(tracker)
    tracker.cancel("T1")
    assert tracker.track_get("T4").blocked_by == "T1"


def test_a_failure_with_a_retry_left_leaves_dependents_alone(make_tracker: MakeTracker) -> None:
    tracker = make_tracker(propagate_failures=True)
    tracker.register("build", max_attempts=2)
    tracker.register("deploy", prerequisites=["build"])
    tracker.start("build")
    assert tracker.fail("build", "flaky").state is State.FAILED
    track = tracker.track_get("deploy")
    assert (track.state, track.blocked_by, track.errors) == (State.WAITING, None, ())


def test_with_propagation_exhausted_retries_kill_dependents(make_tracker: MakeTracker) -> None:
    tracker = make_tracker(propagate_failures=True)
    tracker.register("build", max_attempts=1)
    tracker.register("deploy", prerequisites=["build"])
    tracker.start("build")
    assert tracker.fail("build", "boom").state is State.DEAD
    assert tracker.track_get("deploy").state is State.DEAD


def test_with_propagation_a_paused_dependent_dies_too(make_tracker: MakeTracker) -> None:
    tracker = make_tracker(propagate_failures=True)
    tracker.register("build")
    tracker.register("deploy", prerequisites=["build"])
    tracker.pause("deploy")
    tracker.cancel("build")
    track = tracker.track_get("deploy")
    assert track.state is State.DEAD
    assert track.error is not None and track.error["source"] == "build"


def test_a_blocked_job_is_not_released_by_its_other_prerequisites(
    make_tracker: MakeTracker,
) -> None:
    tracker = make_tracker(propagate_failures=False)
    tracker.register("a")
    tracker.register("b")
    tracker.register("joined", prerequisites=["a", "b"])
    tracker.cancel("a")
    tracker.success("b")
    track = tracker.track_get("joined")
    assert (track.state, track.blocked_by) == (State.WAITING, "a")


def test_a_blocked_job_can_be_cancelled(make_tracker: MakeTracker) -> None:
    tracker = make_tracker(propagate_failures=False)
    seed_example(tracker)
    tracker.cancel("T1")
    assert tracker.cancel("T3").state is State.CANCELLED
    assert tracker.track_get("T4").state is State.WAITING


@pytest.mark.parametrize("how", ["dead", "cancelled"])
def test_with_propagation_registering_against_a_finished_failure_is_dead_at_once(
    make_tracker: MakeTracker, how: str
) -> None:
    tracker = make_tracker(propagate_failures=True)
    tracker.register("build")
    end(tracker, "build", how)
    track = tracker.register("deploy", prerequisites=["build"]).track
    assert track.state is State.DEAD
    assert track.error is not None
    assert (track.error["source"], track.error["type"]) == ("build", "PrerequisiteFailed")


@pytest.mark.parametrize("how", ["dead", "cancelled"])
def test_without_propagation_registering_against_a_finished_failure_is_blocked_at_once(
    make_tracker: MakeTracker, how: str
) -> None:
    tracker = make_tracker(propagate_failures=False)
    tracker.register("build")
    tracker.register("test", prerequisites=["build"])
    end(tracker, "build", how)
    track = tracker.register("deploy", prerequisites=["build"]).track
    assert (track.state, track.blocked_by, track.errors) == (State.WAITING, "build", ())
    # pending counts it, as for the job that waited for it before it ended
    assert track.prerequisites == tracker.track_get("test").prerequisites
    assert track.prerequisites == {"total": 1, "pending": 1}


def test_registering_against_a_job_killed_by_propagation_names_the_root(
    make_tracker: MakeTracker,
) -> None:
    tracker = make_tracker(propagate_failures=True)
    seed_example(tracker)
    end(tracker, "T1", "dead")
    track = tracker.register("T5", prerequisites=["T4"]).track
    assert track.state is State.DEAD
    assert track.error is not None and track.error["source"] == "T1"


def test_registering_against_a_blocked_job_is_blocked_by_the_root(
    make_tracker: MakeTracker,
) -> None:
    tracker = make_tracker(propagate_failures=False)
    seed_example(tracker)
    end(tracker, "T1", "dead")
    track = tracker.register("T5", prerequisites=["T4"]).track
    assert (track.state, track.blocked_by) == (State.WAITING, "T1")


@pytest.mark.parametrize("propagate", [True, False])
def test_a_job_failed_at_registration_passes_it_on_to_jobs_already_waiting_for_it(
    make_tracker: MakeTracker, propagate: bool
) -> None:
    tracker = make_tracker(propagate_failures=propagate)
    tracker.register("T4", prerequisites=["T3"])  # T3 is not registered yet
    tracker.register("T1")
    tracker.cancel("T1")
    tracker.register("T3", prerequisites=["T1"])
    track = tracker.track_get("T4")
    if propagate:
        assert track.state is State.DEAD
        assert track.error is not None and track.error["source"] == "T1"
    else:
        assert (track.state, track.blocked_by) == (State.WAITING, "T1")


# --- cancel and pause of a waiting job -----------------------------------------------


def test_cancelling_a_waiting_job_leaves_the_other_dependents_in_place(tracker: Tracker) -> None:
    tracker.register("build")
    tracker.register("a", prerequisites=["build"])
    tracker.register("b", prerequisites=["build"])
    assert tracker.cancel("a").state is State.CANCELLED
    dependents = tracker.client.smembers(tracker.keys.dependents("build"))
    assert dependents == {tracker.keys.job("b").encode()}
    tracker.success("build")
    assert tracker.track_get("a").state is State.CANCELLED
    assert tracker.track_get("b").state is State.ENQUEUED


def test_a_paused_job_whose_prerequisites_succeed_stays_paused_until_resumed(
    tracker: Tracker,
) -> None:
    tracker.register("build")
    tracker.register("deploy", prerequisites=["build"])
    tracker.pause("deploy")
    tracker.success("build")
    track = tracker.track_get("deploy")
    assert (track.state, track.prerequisites) == (State.PAUSED, {"total": 1, "pending": 0})
    assert tracker.resume("deploy").state is State.ENQUEUED


def test_resuming_a_job_whose_prerequisites_are_pending_makes_it_wait_again(
    tracker: Tracker,
) -> None:
    tracker.register("build")
    tracker.register("deploy", prerequisites=["build"])
    tracker.pause("deploy")
    assert tracker.resume("deploy").state is State.WAITING
    tracker.success("build")
    assert tracker.track_get("deploy").state is State.ENQUEUED


# --- the RQ hand-off of a payload (what RQ gets: test_rq_contract.py) ---------------


class RQQueue:
    """A unique RQ queue on a tracker's server, and the RQ keys its test made there."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.name = "q-" + uuid.uuid4().hex[:12]
        self.key = "rq:queue:" + self.name
        self.jids: list[str] = []

    def jid(self, stem: str) -> str:
        """A jid of this test alone: RQ's job keys are shared by every namespace."""
        jid = f"{stem}-{self.name}"
        self.jids.append(jid)
        return jid

    def deploy_after_build(self, tracker: Tracker) -> str:
        """Register "build", and a job of this queue with a payload that waits for it."""
        jid = self.jid("deploy")
        tracker.register("build")
        tracker.register(jid, queue=self.name, payload=PAYLOAD, prerequisites=["build"])
        return jid

    def pushed(self) -> list[str]:
        return [raw.decode() for raw in self.client.lrange(self.key, 0, -1)]

    def saved(self, jid: str) -> bool:
        return bool(self.client.exists("rq:job:" + jid))

    def cleanup(self) -> None:
        self.client.delete(self.key, *("rq:job:" + jid for jid in self.jids))
        self.client.srem("rq:queues", self.key)


@pytest.fixture
def rq_queue(make_tracker: MakeTracker) -> Iterator[Callable[[Tracker], RQQueue]]:
    """RQ queues on a tracker's server; their keys go before the tracker's client closes."""
    made: list[RQQueue] = []

    def make(tracker: Tracker) -> RQQueue:
        made.append(RQQueue(tracker.client))
        return made[-1]

    yield make
    for queue in made:
        queue.cleanup()


@pytest.mark.rq
def test_a_second_success_of_the_prerequisite_pushes_nothing_more(
    tracker: Tracker, rq_queue: Callable[[Tracker], RQQueue]
) -> None:
    rq = rq_queue(tracker)
    jid = rq.deploy_after_build(tracker)
    tracker.success("build")
    tracker.success("build")
    assert rq.pushed() == [jid]


@pytest.mark.rq
def test_pausing_an_enqueued_payload_job_takes_it_out_of_rq_and_resume_puts_it_back_once(
    tracker: Tracker, rq_queue: Callable[[Tracker], RQQueue]
) -> None:
    rq = rq_queue(tracker)
    jid = rq.jid("report")
    assert tracker.register(jid, queue=rq.name, payload=PAYLOAD).track.state is State.ENQUEUED
    assert rq.pushed() == [jid]
    tracker.pause(jid)
    assert rq.pushed() == []
    tracker.resume(jid)
    assert rq.pushed() == [jid]


@pytest.mark.rq
def test_a_paused_payload_job_released_meanwhile_is_pushed_once_on_resume(
    tracker: Tracker, rq_queue: Callable[[Tracker], RQQueue]
) -> None:
    rq = rq_queue(tracker)
    jid = rq.deploy_after_build(tracker)
    tracker.pause(jid)
    tracker.success("build")
    assert rq.pushed() == []
    tracker.resume(jid)
    assert rq.pushed() == [jid]


@pytest.mark.rq
def test_cancelling_an_enqueued_payload_job_takes_it_out_of_rq(
    tracker: Tracker, rq_queue: Callable[[Tracker], RQQueue]
) -> None:
    rq = rq_queue(tracker)
    jid = rq.jid("report")
    tracker.register(jid, queue=rq.name, payload=PAYLOAD)
    tracker.cancel(jid)
    assert rq.pushed() == []


@pytest.mark.rq
def test_a_payload_job_killed_by_propagation_is_never_pushed(
    make_tracker: MakeTracker, rq_queue: Callable[[Tracker], RQQueue]
) -> None:
    tracker = make_tracker(propagate_failures=True)
    rq = rq_queue(tracker)
    jid = rq.deploy_after_build(tracker)
    tracker.cancel("build")
    assert tracker.track_get(jid).state is State.DEAD
    assert rq.pushed() == []
    assert not rq.saved(jid)


@pytest.mark.rq
def test_a_payload_job_that_succeeds_leaves_no_hand_off_behind(
    tracker: Tracker, rq_queue: Callable[[Tracker], RQQueue]
) -> None:
    """A cancelled (or dead) one keeps it for a retry, no longer than its track."""
    rq = rq_queue(tracker)
    ran, waited = rq.jid("ran"), rq.jid("waited")
    tracker.register("build")
    tracker.register(ran, queue=rq.name, payload=PAYLOAD)
    tracker.register(waited, queue=rq.name, payload=PAYLOAD, prerequisites=["build"])
    keys = tracker.keys
    assert tracker.client.exists(keys.payload(waited), keys.staged(waited)) == 2
    tracker.start(ran)
    tracker.success(ran)
    tracker.cancel(waited)
    assert tracker.client.exists(keys.payload(ran), keys.staged(ran)) == 0
    assert tracker.client.exists(keys.payload(waited), keys.staged(waited)) == 2
    for key in (keys.payload(waited), keys.staged(waited)):
        assert 0 < tracker.client.pttl(key) <= tracker.settings.ttl * 1000


def test_a_workflow_is_every_job_linked_by_dependencies_either_way(tracker: Tracker) -> None:
    #  a -> b -> d -> e,  a -> c -> d,  and c also waits for ghost (never registered)
    tracker.register("a")
    tracker.register("b", prerequisites=["a"])
    tracker.register("c", prerequisites=["a", "ghost"])
    tracker.register("d", prerequisites=["b", "c"])
    tracker.register("e", prerequisites=["d"])
    tracker.register("alone")
    for jid in ("a", "c", "e"):
        found = tracker.workflow(jid)
        assert dict(found.jobs) == {
            "a": State.ENQUEUED,
            "b": State.WAITING,
            "c": State.WAITING,
            "d": State.WAITING,
            "e": State.WAITING,
            "ghost": State.UNKNOWN,
        }
        assert found.edges == [
            ("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e"), ("ghost", "c"),
        ]  # fmt: skip
        assert found.more is False
    tracker.start("a")
    tracker.success("a")  # released dependents stay linked
    assert ("a", "b") in tracker.workflow("e").edges
    assert tracker.workflow("alone").jobs == [("alone", State.ENQUEUED)]


def test_a_workflow_stops_at_its_limit_and_says_so(tracker: Tracker) -> None:
    tracker.register("root")
    for n in range(12):
        tracker.register(f"leaf-{n:02d}", prerequisites=["root"])
    found = tracker.workflow("root", limit=5)
    assert len(found.jobs) == 5 and found.more is True
    assert all(a in dict(found.jobs) and b in dict(found.jobs) for a, b in found.edges)
    whole = tracker.workflow("root")
    assert len(whole.jobs) == 13 and whole.more is False
    with pytest.raises(NotFound):
        tracker.workflow("nobody")
    with pytest.raises(InvalidInput, match="limit"):
        tracker.workflow("root", limit=0)
