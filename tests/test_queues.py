"""Queues come and go: a queue name none of whose jobs is live is forgotten, so a
namespace sees any number of queue names over its life; only queues with live jobs
count against the limit of 2047 at once (the bands of the state indexes, keys.py)."""

from __future__ import annotations

import threading

import pytest
from conftest import FakeClock, MakeTracker, wait_until

from tracker import InvalidInput, State, Tracker
from tracker.fields import stored
from tracker.keys import MAX_QUEUES, QUEUE_BAND


def queue_ids(tracker: Tracker) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in tracker.client.hgetall(tracker.keys.queues).items()}


def free_ids(tracker: Tracker) -> list[int]:
    return [int(i) for i in tracker.client.lrange(tracker.keys.free_queue_ids, 0, -1)]


@pytest.mark.slow
def test_ten_thousand_queue_names_over_time_leave_room_for_a_new_one(
    make_tracker: MakeTracker,
) -> None:
    """Each name is used once; its job expires; no maintenance runs (registration
    forgets what it needs when every id is taken)."""
    clock = FakeClock()
    tracker = make_tracker(clock=clock, ttl=10, pending_ttl=10)
    for n in range(10_000):
        if n % 500 == 0:
            clock.advance(11)  # every job registered so far has expired
        tracker.register(f"job-{n}", queue=f"queue-{n}")
    assert len(queue_ids(tracker)) <= MAX_QUEUES
    assert tracker.register("one-more", queue="a-new-queue").track.state is State.ENQUEUED
    assert [t.jid for t in tracker.list(queue="a-new-queue").jobs] == ["one-more"]
    assert [t.jid for t in tracker.list(queue="queue-9999").jobs] == ["job-9999"]
    assert tracker.stats().states == {"enqueued": 501}


def test_prune_forgets_the_queues_without_a_live_job_and_reuses_their_ids(
    make_tracker: MakeTracker,
) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock, ttl=10, pending_ttl=10)
    tracker.register("old-1", queue="old")
    tracker.register("gone-1", queue="gone")
    tracker.start("gone-1")
    tracker.fail("gone-1", "boom", retry=False)
    clock.advance(11)
    tracker.register("live-1", queue="live")
    before = queue_ids(tracker)
    tracker.prune()
    assert set(queue_ids(tracker)) == {"live"}
    assert sorted(free_ids(tracker)) == sorted([before["old"], before["gone"]])
    tracker.register("new-1", queue="new")
    assert queue_ids(tracker)["new"] in (before["old"], before["gone"])
    # the reused band shows nothing of the forgotten queue's jobs
    assert [t.jid for t in tracker.list(queue="new").jobs] == ["new-1"]
    assert [t.jid for t in tracker.list(state="dead").jobs] == []
    assert tracker.stats().queues == {"live": {"enqueued": 1}, "new": {"enqueued": 1}}
    assert [t.jid for t in tracker.list(queue="old").jobs] == []


def test_a_queue_with_a_live_job_in_any_state_is_kept(make_tracker: MakeTracker) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock, ttl=10, pending_ttl=10)
    tracker.register("working", queue="w")
    tracker.start("working", reserve_for=3600)
    tracker.register("blocker", queue="b")
    tracker.register("waiting", queue="wait", prerequisites=["blocker"])
    tracker.register("paused", queue="p", prerequisites=["blocker"])
    tracker.pause("paused")
    tracker.register("done", queue="d")
    tracker.success("done")
    clock.advance(5)  # within every lifetime
    tracker.prune()
    assert set(queue_ids(tracker)) == {"w", "b", "wait", "p", "d"}
    clock.advance(6)  # past the pending and finished lifetimes; the reservation holds
    tracker.prune()
    assert set(queue_ids(tracker)) == {"w"}


def test_the_pruner_forgets_every_dead_queue_over_calls_of_a_small_budget(
    make_tracker: MakeTracker,
) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock, ttl=10, pending_ttl=10)
    for n in range(150):
        tracker.register(f"job-{n}", queue=f"queue-{n}")
    clock.advance(11)
    tracker.register("live", queue="kept")
    tracker._drive(tracker.plans.prune_states(budget=40))
    assert set(queue_ids(tracker)) == {"kept"}
    assert len(free_ids(tracker)) == 150


def test_a_forgotten_queues_success_still_satisfies_a_late_dependent(
    make_real_tracker: MakeTracker,
) -> None:
    tracker = make_real_tracker(ttl=1)
    tracker.register("first", queue="early")
    tracker.success("first")
    wait_until(lambda: not tracker.client.exists(tracker.keys.job("first")), timeout=5)
    tracker.prune()
    assert "early" not in queue_ids(tracker)
    # remembered in band 0, which no queue has, at the time it succeeded
    score = tracker.client.zscore(tracker.keys.state(State.SUCCESS), "first")
    assert score is not None and score < QUEUE_BAND
    assert tracker.register("later", queue="late", prerequisites=["first"]).track.state is (
        State.ENQUEUED
    )


def test_the_queue_limit_counts_live_queues_and_says_what_to_do(
    make_real_tracker: MakeTracker,
) -> None:
    clock = FakeClock()
    tracker = make_real_tracker(clock=clock, ttl=10, pending_ttl=10)
    pipe = tracker.client.pipeline(transaction=False)
    for n in range(MAX_QUEUES):  # the table filled as registrations would fill it
        pipe.hset(tracker.keys.queues, f"queue-{n}", n + 1)
    pipe.execute()
    for n in range(0, MAX_QUEUES, 64):  # a live job in some queues, the others never used
        tracker.register(f"job-{n}", queue=f"queue-{n}")
    tracker.prune()
    assert len(queue_ids(tracker)) == len(range(0, MAX_QUEUES, 64))
    # now every queue is live
    for n in range(MAX_QUEUES):
        if n % 64:
            tracker.register(f"job-{n}", queue=f"queue-{n}")
    assert len(queue_ids(tracker)) == MAX_QUEUES
    with pytest.raises(InvalidInput) as refused:
        tracker.register("one-too-many", queue="queue-new")
    assert refused.value.field == "queue"
    message = str(refused.value)
    assert "2047" in message and "live jobs" in message
    assert "Tracker.prune()" in message and "fewer queue names" in message
    assert tracker.track_get("one-too-many").state is State.UNKNOWN
    clock.advance(11)  # every job expired: registration forgets what it needs
    assert tracker.register("one-too-many", queue="queue-new").created


def test_queue_ids_stay_distinct_while_queues_come_and_go_concurrently(
    make_real_tracker: MakeTracker,
) -> None:
    """Threads register jobs under ever new queue names while the clock runs and
    another thread prunes: no two queues ever share an id, every id is in use or free
    (once), and every live job sits in its own queue's band."""
    clock = FakeClock()
    tracker = make_real_tracker(clock=clock, ttl=10, pending_ttl=10)
    done = threading.Event()
    errors: list[BaseException] = []

    def register(worker: int) -> None:
        try:
            for n in range(300):
                tracker.register(f"job-{worker}-{n}", queue=f"queue-{worker}-{n % 150}")
                if n % 50 == 0:
                    clock.advance(4)
        except BaseException as exc:
            errors.append(exc)

    def prune() -> None:
        while not done.is_set():
            try:
                tracker.prune()
            except BaseException as exc:
                errors.append(exc)
                return

    pruner = threading.Thread(target=prune)
    pruner.start()
    workers = [threading.Thread(target=register, args=(w,)) for w in range(4)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60)
    done.set()
    pruner.join(timeout=60)
    assert errors == []
    ids, free = queue_ids(tracker), free_ids(tracker)
    assert len(set(ids.values())) == len(ids)
    assert sorted([*ids.values(), *free]) == list(range(1, len(ids) + len(free) + 1))
    live = tracker.list(limit=1000).jobs
    assert live
    for track in live:
        qid = tracker.client.hget(tracker.keys.job(track.jid), stored("qid"))
        assert int(qid) == ids[str(track.queue)], track.jid


def test_a_forgotten_queue_leaves_the_pruners_records_and_a_reused_id_is_recorded_again(
    make_tracker: MakeTracker,
) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock, ttl=10, pending_ttl=10)
    tracker.register("old-1", queue="old")
    qid = queue_ids(tracker)["old"]
    bands = {f"{state}:{qid}".encode() for state in ("waiting", "paused", "enqueued", "failed")}
    bands |= {f"{state}:{qid}".encode() for state in ("success", "dead", "cancelled")}
    assert set(tracker.client.zrange(tracker.keys.bands_due, 0, -1)) == bands
    assert tracker.client.hgetall(tracker.keys.queues_recorded) == {str(qid).encode(): b"old"}
    clock.advance(11)
    tracker.prune()
    assert queue_ids(tracker) == {} and free_ids(tracker) == [qid]
    assert tracker.client.zcard(tracker.keys.bands_due) == 0
    assert tracker.client.hlen(tracker.keys.queues_recorded) == 0
    tracker.register("new-1", queue="new")  # its first job records the reused id
    assert queue_ids(tracker) == {"new": qid}
    assert set(tracker.client.zrange(tracker.keys.bands_due, 0, -1)) == bands
    assert tracker.client.hgetall(tracker.keys.queues_recorded) == {str(qid).encode(): b"new"}
    tracker.cancel("new-1")
    clock.advance(11)
    tracker.prune()
    assert queue_ids(tracker) == {} and free_ids(tracker) == [qid]
    assert tracker.client.zcard(tracker.keys.state(State.CANCELLED)) == 0


def test_a_round_with_nothing_due_reads_no_band_whatever_the_queues(
    make_tracker: MakeTracker,
) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock, ttl=10, pending_ttl=10)
    for n in range(50):
        tracker.register(f"job-{n}", queue=f"queue-{n}")
    call = tracker.plans._call("prune", reads=20)
    reply = tracker._library.call(tracker.client, call)
    assert reply[1:] == [0, 0]  # one call, nothing read: every band is due later
    assert len(queue_ids(tracker)) == 50


def test_queues_an_older_version_made_are_recorded_by_the_pruner(
    make_tracker: MakeTracker,
) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock, ttl=10, pending_ttl=10)
    tracker.register("kept-1", queue="kept")
    tracker.register("old-1", queue="old")
    # as a version before the pruner's records left them
    tracker.client.delete(tracker.keys.bands_due, tracker.keys.queues_recorded)
    tracker.prune()
    assert set(queue_ids(tracker)) == {"kept", "old"}
    assert tracker.client.hlen(tracker.keys.queues_recorded) == 2
    clock.advance(11)
    tracker.register("kept-2", queue="kept")
    tracker.prune()
    assert set(queue_ids(tracker)) == {"kept"}
    assert [t.jid for t in tracker.list(queue="kept").jobs] == ["kept-2"]
