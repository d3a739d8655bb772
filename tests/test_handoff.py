"""SPEC section 10, hand-off recovery: a job handed to its RQ queue is started, handed
again, or failed with HandoffLost within TRACKER_HANDOFF_TIMEOUT, never left enqueued.

A worker that dies between its dequeue and its start is played here by moving the job's
id out of the queue as RQ's dequeue would; a fake clock stands for the time passing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import jobs
import pytest
import rq
from conftest import FakeClock, MakeTracker

from tracker import State, Tracker
from tracker.worker import TrackedSimpleWorker

TIMEOUT = 2


@pytest.fixture
def queue(make_real_tracker: MakeTracker) -> Iterator[str]:
    """A queue name of this test's own (RQ queues are shared by every namespace)."""
    name = "q-" + uuid.uuid4().hex[:12]
    yield name
    client = make_real_tracker().client
    client.srem("rq:queues", f"rq:queue:{name}")
    for key in client.scan_iter(match=f"rq:*{name}*", count=1000):
        client.delete(key)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tracker(make_real_tracker: MakeTracker, clock: FakeClock) -> Tracker:
    return make_real_tracker(clock=clock, handoff_timeout=TIMEOUT)


def queued(tracker: Tracker, queue: str) -> list[str]:
    return [jid.decode() for jid in tracker.client.lrange(f"rq:queue:{queue}", 0, -1)]


def taken(tracker: Tracker, queue: str) -> list[str]:
    return [jid.decode() for jid in tracker.client.lrange(f"rq:queue:{queue}:intermediate", 0, -1)]


def dequeue_and_die(tracker: Tracker, queue: str) -> str:
    """What a worker does that dies after RQ's dequeue, before its start."""
    jid = tracker.client.lmove(f"rq:queue:{queue}", f"rq:queue:{queue}:intermediate")
    assert jid is not None
    return str(jid.decode())


def work(tracker: Tracker, queue: str) -> None:
    worker = TrackedSimpleWorker(
        [rq.Queue(queue, connection=tracker.client)], connection=tracker.client, tracker=tracker
    )
    worker.work(burst=True, logging_level="WARNING")


def due(tracker: Tracker) -> int:
    return int(tracker.client.zcard(tracker.keys.schedule))


def look(tracker: Tracker, clock: FakeClock) -> int:
    """Let a timeout pass, then run the checks due; returns the jobs handed (again)."""
    clock.advance(TIMEOUT + 0.1)
    return tracker.promote()


def test_a_job_waiting_in_its_queue_past_the_timeout_is_kept_there(
    tracker: Tracker, queue: str, clock: FakeClock
) -> None:
    jid = tracker.enqueue(jobs.add, (1, 2), queue=queue)
    for _ in range(3):
        assert look(tracker, clock) == 0
    assert queued(tracker, queue) == [jid]
    assert tracker.track_get(jid).state is State.ENQUEUED
    work(tracker, queue)
    track = tracker.track_get(jid)
    assert (track.state, track.attempts) == (State.SUCCESS, 1)


def test_a_job_dequeued_by_a_worker_that_died_is_handed_again(
    tracker: Tracker, queue: str, clock: FakeClock
) -> None:
    jid = tracker.enqueue(jobs.add, (1, 2), queue=queue)
    dequeue_and_die(tracker, queue)
    assert look(tracker, clock) == 0  # a first look: a live worker may be starting it
    assert (queued(tracker, queue), taken(tracker, queue)) == ([], [jid])
    assert look(tracker, clock) == 1
    assert (queued(tracker, queue), taken(tracker, queue)) == ([jid], [])
    work(tracker, queue)
    track = tracker.track_get(jid)
    assert (track.state, track.attempts, track.errors) == (State.SUCCESS, 1, ())
    assert due(tracker) == 0


def test_a_job_that_vanished_from_rq_is_handed_again(
    tracker: Tracker, queue: str, clock: FakeClock
) -> None:
    jid = tracker.enqueue(jobs.add, (1, 2), queue=queue)
    tracker.client.lpop(f"rq:queue:{queue}")  # a worker popping with BLPOP (several queues)
    look(tracker, clock)
    assert look(tracker, clock) == 1
    assert queued(tracker, queue) == [jid]


def test_a_worker_that_starts_it_after_the_first_look_keeps_it(
    tracker: Tracker, queue: str, clock: FakeClock
) -> None:
    jid = tracker.enqueue(jobs.add, (1, 2), queue=queue)
    dequeue_and_die(tracker, queue)
    look(tracker, clock)
    tracker.start(jid)  # the worker was slow, not dead
    assert due(tracker) == 0
    assert look(tracker, clock) == 0
    assert queued(tracker, queue) == []
    assert tracker.state(jid) is State.WORKING


def test_hand_offs_lost_again_and_again_fail_the_job_with_handoff_lost(
    tracker: Tracker, queue: str, clock: FakeClock
) -> None:
    jid = tracker.enqueue(jobs.add, (1, 2), queue=queue, max_attempts=2)
    for _ in range(3):
        dequeue_and_die(tracker, queue)
        look(tracker, clock)
        assert look(tracker, clock) == 1
    dequeue_and_die(tracker, queue)
    look(tracker, clock)
    assert look(tracker, clock) == 0
    track = tracker.track_get(jid)
    assert track.state is State.FAILED  # a failed attempt: retried after the backoff
    assert (track.error["type"], track.attempts) == ("HandoffLost", 1)  # type: ignore[index]
    assert "4 hand-offs" in track.error["message"]  # type: ignore[index]
    assert (queued(tracker, queue), taken(tracker, queue)) == ([], [])
    clock.advance(1.5)
    assert tracker.promote() == 1  # the retry goes back to its queue
    assert queued(tracker, queue) == [jid]
    work(tracker, queue)
    assert tracker.track_get(jid).state is State.SUCCESS


def test_the_last_attempt_lost_in_hand_off_is_dead_and_propagation_follows(
    make_real_tracker: MakeTracker, queue: str, clock: FakeClock
) -> None:
    tracker = make_real_tracker(clock=clock, handoff_timeout=TIMEOUT, propagate_failures=True)
    jid = tracker.enqueue(jobs.add, (1, 2), queue=queue, max_attempts=1)
    after = tracker.enqueue(jobs.add, (3, 4), queue=queue, prerequisites=[jid])
    for _ in range(4):
        dequeue_and_die(tracker, queue)
        look(tracker, clock)
        look(tracker, clock)
    assert tracker.state(jid) is State.DEAD
    assert tracker.track_get(after).state is State.DEAD
    assert (queued(tracker, queue), taken(tracker, queue), due(tracker)) == ([], [], 0)


def test_a_job_whose_hand_off_became_unreadable_fails_when_it_would_be_handed_again(
    tracker: Tracker, queue: str, clock: FakeClock
) -> None:
    """Not handed again, nor left enqueued: dead with HandoffUnreadable (see
    test_rq_contract.py)."""
    jid = tracker.enqueue(jobs.add, (1, 2), queue=queue)
    dequeue_and_die(tracker, queue)
    tracker.client.delete(tracker.keys.payload(jid))
    look(tracker, clock)
    assert look(tracker, clock) == 0
    track = tracker.track_get(jid)
    assert (track.state, track.attempts) == (State.DEAD, 0)
    assert track.error is not None and track.error["type"] == "HandoffUnreadable"
    assert (queued(tracker, queue), taken(tracker, queue), due(tracker)) == ([], [], 0)


@pytest.mark.parametrize("leave", ["start", "cancel", "pause", "success"])
def test_a_job_that_leaves_enqueued_leaves_the_due_index(
    tracker: Tracker, queue: str, leave: str
) -> None:
    jid = tracker.enqueue(jobs.add, (1, 2), queue=queue)
    assert due(tracker) == 1
    getattr(tracker, leave)(jid)
    assert due(tracker) == 0
    assert tracker.client.hget(tracker.keys.job(jid), "hd") is None


def test_a_retry_handed_back_to_its_queue_is_checked_too(
    tracker: Tracker, queue: str, clock: FakeClock
) -> None:
    jid = tracker.enqueue(jobs.add, (1, 2), queue=queue)
    dequeue_and_die(tracker, queue)
    tracker.client.delete(f"rq:queue:{queue}:intermediate")
    tracker.start(jid)
    tracker.fail(jid, "boom")
    clock.advance(1.5)
    assert tracker.promote() == 1  # its backoff ended: back to its queue, still failed
    tracker.client.lpop(f"rq:queue:{queue}")
    look(tracker, clock)
    assert look(tracker, clock) == 1
    assert queued(tracker, queue) == [jid]
    assert tracker.state(jid) is State.FAILED


def test_a_job_without_a_payload_is_never_checked(tracker: Tracker, clock: FakeClock) -> None:
    jid = "plain-" + uuid.uuid4().hex[:8]
    tracker.register(jid)
    assert due(tracker) == 0
    clock.advance(TIMEOUT * 10)
    assert tracker.promote() == 0
    assert tracker.state(jid) is State.ENQUEUED


# --- retry (POST /jobs/{jid}/retry) and hand-off recovery ----------------------------------


def test_a_retried_job_whose_hand_off_is_lost_is_handed_again(
    tracker: Tracker, queue: str, clock: FakeClock
) -> None:
    jid = tracker.enqueue(jobs.flaky, queue=queue, max_attempts=1)
    work(tracker, queue)
    assert tracker.state(jid) is State.DEAD
    assert due(tracker) == 0
    assert tracker.retry(jid).state is State.ENQUEUED
    assert due(tracker) == 1  # the retry's hand-off is checked as any other
    assert tracker.client.hget(tracker.keys.job(jid), "hd") is not None
    dequeue_and_die(tracker, queue)
    assert look(tracker, clock) == 0
    assert look(tracker, clock) == 1
    assert (queued(tracker, queue), taken(tracker, queue)) == ([jid], [])
    work(tracker, queue)
    track = tracker.track_get(jid)
    assert (track.state, track.attempts) == (State.SUCCESS, 2)
    assert [error["message"] for error in track.errors] == ["first attempt fails"]
    assert due(tracker) == 0


@pytest.mark.parametrize("end", [State.DEAD, State.CANCELLED])
def test_a_job_that_keeps_its_hand_off_for_a_retry_is_never_checked(
    tracker: Tracker, queue: str, clock: FakeClock, end: State
) -> None:
    jid = tracker.enqueue(jobs.add, (1, 2), queue=queue, max_attempts=1)
    dequeue_and_die(tracker, queue)  # taken and never finished: what a check hands again
    if end is State.DEAD:
        tracker.start(jid)
        tracker.fail(jid, "boom")
    else:
        tracker.cancel(jid)
    assert tracker.client.exists(tracker.keys.payload(jid))  # kept, for a retry
    assert due(tracker) == 0
    for _ in range(3):
        assert look(tracker, clock) == 0
    assert (queued(tracker, queue), taken(tracker, queue)) == ([], [jid])
    assert tracker.state(jid) is end
