"""SPEC section 2, Expiry: against real servers with TTLs of seconds, never mocked."""

from __future__ import annotations

import uuid

import pytest
from bulk import register_many
from conftest import FakeClock, MakeTracker, wait_until

from tracker import State, Tracker, scripts
from tracker.upkeep import Maintenance


def test_a_finished_track_stays_readable_for_the_ttl_then_is_unknown(
    make_real_tracker: MakeTracker,
) -> None:
    tracker = make_real_tracker(ttl=1)
    tracker.register("job-1")
    tracker.success("job-1")
    assert tracker.track_get("job-1").state is State.SUCCESS
    assert 0 < tracker.client.pttl(tracker.keys.job("job-1")) <= 1000
    wait_until(lambda: tracker.track_get("job-1").state is State.UNKNOWN, timeout=5)


def test_a_working_track_lives_until_its_reservation_ends_plus_the_ttl(
    make_real_tracker: MakeTracker,
) -> None:
    tracker = make_real_tracker(ttl=2)
    tracker.register("job-1")
    tracker.start("job-1", reserve_for=60)
    assert 61_000 < tracker.client.pttl(tracker.keys.job("job-1")) <= 62_000


def test_extending_the_reservation_extends_the_track(make_real_tracker: MakeTracker) -> None:
    tracker = make_real_tracker(ttl=2)
    tracker.register("job-1")
    track = tracker.start("job-1", reserve_for=60)
    assert track.reserve_until is not None
    later = track.reserve_until + 3_600_000
    tracker.track_set("job-1", reserve_until=_rfc3339(later))
    assert 3_660_000 < tracker.client.pttl(tracker.keys.job("job-1")) <= 3_662_000


def test_a_pending_track_is_bounded_by_the_pending_ttl(make_real_tracker: MakeTracker) -> None:
    tracker = make_real_tracker(pending_ttl=1)
    tracker.register("job-1")
    assert tracker.track_get("job-1").state is State.ENQUEUED
    wait_until(lambda: tracker.track_get("job-1").state is State.UNKNOWN, timeout=5)


def test_a_late_report_after_expiry_is_not_found_and_the_jid_is_free(
    make_real_tracker: MakeTracker,
) -> None:
    tracker = make_real_tracker(ttl=1)
    tracker.register("job-1", queue="a")
    tracker.success("job-1")
    wait_until(lambda: tracker.track_get("job-1").state is State.UNKNOWN, timeout=5)
    assert tracker.register("job-1", queue="b").created


def test_lists_and_counts_never_show_an_expired_job(make_real_tracker: MakeTracker) -> None:
    tracker = make_real_tracker(ttl=1)
    tracker.register("done", labels={"team": "x"})
    tracker.success("done")
    tracker.register("live", labels={"team": "x"}, queue="other")
    assert tracker.stats().states == {"success": 1, "enqueued": 1}
    wait_until(lambda: tracker.track_get("done").state is State.UNKNOWN, timeout=5)
    assert tracker.stats().states == {"enqueued": 1}
    assert [t.jid for t in tracker.list().jobs] == ["live"]
    assert [t.jid for t in tracker.list(state="success").jobs] == []
    assert [t.jid for t in tracker.list(label="team:x").jobs] == ["live"]


def test_maintenance_removes_expired_jobs_from_every_index(make_real_tracker: MakeTracker) -> None:
    tracker = make_real_tracker(ttl=1, done_ttl=1)
    for n in range(20):
        tracker.register(f"job-{n}", labels={"batch": "b1"})
        tracker.success(f"job-{n}")
    wait_until(lambda: not tracker.client.exists(tracker.keys.job("job-19")), timeout=5)
    maintenance = Maintenance(tracker)
    success = tracker.keys.state(State.SUCCESS)
    # a success is remembered DONE_TTL past its track, for dependents registered late
    wait_until(lambda: maintenance.run_once() == 0 and not tracker.client.zcard(success), 6)
    assert tracker.client.zcard(tracker.keys.label("batch", "b1")) == 0
    assert tracker.client.zcard(tracker.keys.labels_in_use) == 0


def test_a_working_job_that_expired_unreaped_leaves_no_index_entry(
    make_real_tracker: MakeTracker,
) -> None:
    tracker = make_real_tracker(ttl=1)
    tracker.register("job-1")
    tracker.start("job-1", reserve_for=1)
    wait_until(lambda: not tracker.client.exists(tracker.keys.job("job-1")), timeout=6)
    assert tracker.stats().states == {}
    assert tracker.client.zcard(tracker.keys.state(State.WORKING)) == 0
    assert tracker.client.zcard(tracker.keys.reservations) == 0


def _rfc3339(ms: int) -> str:
    from tracker.times import format_time

    return format_time(ms)


def _prune_labels_once(tracker: Tracker, budget: int) -> tuple[int, int]:
    """One call of prune_labels: (entries removed, 1 when more is due)."""
    call = tracker.plans._call("prune_labels", reads=budget)
    reply = tracker._library.call(tracker.client, call)
    removed, more = scripts.outcome(reply, "")
    return int(removed), int(more)


def test_the_label_pruner_reads_within_its_budget_and_goes_on_where_it_stopped(
    make_real_tracker: MakeTracker,
) -> None:
    clock = FakeClock()
    tracker = make_real_tracker(ttl=1, clock=clock)
    register_many(tracker, (f"job-{n}" for n in range(25)), labels={"run": "r1"})
    for n in range(25):
        tracker.client.delete(tracker.keys.job(f"job-{n}"))  # as if their tracks expired
    clock.advance(2)
    calls = [_prune_labels_once(tracker, budget=13) for _ in range(3)]
    assert calls == [(9, 1), (9, 1), (7, 0)]  # the zset itself counts four
    assert not tracker.client.exists(tracker.keys.label("run", "r1"))
    assert tracker.client.zcard(tracker.keys.labels_in_use) == 0


def test_a_label_of_live_jobs_is_put_off_until_they_may_end(make_real_tracker: MakeTracker) -> None:
    clock = FakeClock()
    tracker = make_real_tracker(ttl=1, pending_ttl=600, clock=clock)
    tracker.register("waits", labels={"run": "r1"}, prerequisites=["later"])
    clock.advance(5)  # older than the TTL, alive for the pending TTL
    assert _prune_labels_once(tracker, budget=10) == (0, 0)
    due = tracker.client.zscore(tracker.keys.labels_in_use, tracker.keys.label("run", "r1"))
    assert due is not None and due > clock() * 1000 + 590_000
    assert _prune_labels_once(tracker, budget=10) == (0, 0)  # nothing due: nothing read
    assert [t.jid for t in tracker.list(label="run:r1").jobs] == ["waits"]


def test_label_zsets_listed_by_an_older_version_are_pruned_too(
    make_real_tracker: MakeTracker,
) -> None:
    tracker = make_real_tracker(ttl=1)
    label = tracker.keys.label("run", "old")
    tracker.client.zadd(label, {tracker.keys.job("gone"): 1})
    tracker.client.sadd(tracker.keys.labels_in_use_unscored, label)
    assert tracker.prune() == 1
    assert not tracker.client.exists(label, tracker.keys.labels_in_use_unscored)


def test_the_state_pruner_reads_due_bands_within_its_budget_and_then_waits_for_the_next(
    make_tracker: MakeTracker,
) -> None:
    clock = FakeClock()
    tracker = make_tracker(ttl=1, done_ttl=1, clock=clock)
    for n in range(30):
        tracker.register(f"job-{n}", queue=f"q{n % 10}")
        tracker.cancel(f"job-{n}")
    for n in range(10):  # a live job keeps each queue (and its bands) from being forgotten
        tracker.register(f"live-{n}", queue=f"q{n}")
    clock.advance(3)

    def once() -> tuple[int, int]:
        call = tracker.plans._call("prune", reads=20)
        reply = tracker._library.call(tracker.client, call)
        dropped, more = scripts.outcome(reply, "")
        return int(dropped), int(more)

    calls = [once()]
    while calls[-1][1]:
        calls.append(once())
    assert len(calls) > 3
    assert all(dropped <= 20 for dropped, _ in calls)
    assert sum(dropped for dropped, _ in calls) == 30
    assert tracker.client.zcard(tracker.keys.state(State.CANCELLED)) == 0
    due = tracker.client.zrange(tracker.keys.bands_due, 0, -1, withscores=True)
    assert len(due) == 10 * 7  # every queue's bands of the states that expire (all but working)
    assert min(score for _, score in due) > clock() * 1000  # none due: a round reads none
    assert once() == (0, 0)


@pytest.mark.rq
def test_what_a_job_needs_until_it_ends_lives_as_long_as_its_track(
    make_real_tracker: MakeTracker,
) -> None:
    """Its hand-off (payload list, staged RQ hash) and its dependents set follow the
    track's expiry when a change renews it, not only the one set at registration."""
    tracker = make_real_tracker(ttl=2, pending_ttl=5)
    queue, pre = "q-" + uuid.uuid4().hex[:12], "pre-" + uuid.uuid4().hex[:12]
    try:
        payload = {"func": "jobs.noop", "args": [], "kwargs": {}}
        tracker.register(pre, queue=queue, payload=payload)
        tracker.register("dep", prerequisites=[pre])
        keys = tracker.keys
        needed = [keys.payload(pre), keys.staged(pre), keys.dependents(pre)]
        assert all(0 < tracker.client.pttl(key) <= 5_000 for key in needed)
        track = tracker.start(pre, reserve_for=60)
        for key in [keys.job(pre), *needed]:
            assert 61_000 < tracker.client.pttl(key) <= 62_000, key
        assert track.reserve_until is not None
        tracker.track_set(pre, reserve_until=_rfc3339(track.reserve_until + 3_600_000))
        for key in [keys.job(pre), *needed]:  # TRACK SET renews them with the track too
            assert 3_661_000 < tracker.client.pttl(key) <= 3_662_000, key
    finally:
        tracker.client.delete(f"rq:queue:{queue}", f"rq:job:{pre}")
        tracker.client.srem("rq:queues", f"rq:queue:{queue}")
