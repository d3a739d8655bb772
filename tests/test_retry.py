"""Retry and delete, tracebacks and payloads (SPEC section 10), on every backend."""

# ruff: noqa: F811 (tests request test_dependencies' fixture rq_queue by its name)

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jobs
import pytest
import rq
from conftest import FakeClock, MakeTracker
from test_dependencies import RQQueue, rq_queue  # noqa: F401 (a fixture)
from test_release_processes import count_script_calls
from test_worker import work

from tracker import Conflict, JobSuperseded, NotFound, State, Tracker, context
from tracker.model import MAX_TRACEBACK, Track
from tracker.worker import TrackedSimpleWorker, _Watched, _Watcher

PAYLOAD = {"func": "app.tasks.resize", "args": [42], "kwargs": {"width": 640}}

Queues = Callable[[Tracker], RQQueue]


def dead(tracker: Tracker, jid: str, **fields: Any) -> Track:
    """Register ``jid``, start it and fail it for good."""
    tracker.register(jid, **fields)
    tracker.start(jid)
    return tracker.fail(jid, "it broke", error_type="ValueError", retry=False)


# --- retry ---------------------------------------------------------------------------------


@pytest.mark.rq
def test_retry_puts_a_dead_job_back_to_its_queue(tracker: Tracker, rq_queue: Queues) -> None:
    queue = rq_queue(tracker)
    jid = queue.jid("resize")
    dead(tracker, jid, queue=queue.name, payload=PAYLOAD, max_attempts=1)
    tracker.client.delete(queue.key)  # as a worker that took it leaves the queue

    track = tracker.retry(jid)

    assert track.state is State.ENQUEUED
    assert (track.attempts, track.max_attempts) == (1, 2)  # exhausted: one more
    assert [e["message"] for e in track.errors] == ["it broke"]
    assert queue.pushed() == [jid]
    assert queue.saved(jid)
    assert tracker.start(jid).attempts == 2


@pytest.mark.rq
def test_retry_keeps_max_attempts_while_attempts_remain(tracker: Tracker, rq_queue: Queues) -> None:
    queue = rq_queue(tracker)
    jid = queue.jid("resize")
    dead(tracker, jid, queue=queue.name, payload=PAYLOAD, max_attempts=5)
    assert tracker.retry(jid).max_attempts == 5


@pytest.mark.rq
def test_retry_of_a_cancelled_job_enqueues_it(tracker: Tracker, rq_queue: Queues) -> None:
    queue = rq_queue(tracker)
    jid = queue.jid("resize")
    tracker.register(jid, queue=queue.name, payload=PAYLOAD)
    tracker.cancel(jid)
    assert queue.pushed() == []

    assert tracker.retry(jid).state is State.ENQUEUED
    assert queue.pushed() == [jid]


@pytest.mark.rq
def test_retry_of_a_failed_job_hands_it_over_once(tracker: Tracker, rq_queue: Queues) -> None:
    queue = rq_queue(tracker)
    jid = queue.jid("resize")
    tracker.register(jid, queue=queue.name, payload=PAYLOAD)
    tracker.client.delete(queue.key)
    tracker.start(jid)
    tracker.fail(jid, "try again")

    assert tracker.retry(jid).state is State.ENQUEUED
    assert tracker.track_get(jid).eligible_at is None
    tracker.promote()  # its backoff's hand-off was taken back: no second push
    assert queue.pushed() == [jid]


def test_concurrent_retries_hand_the_job_over_once(real_tracker: Tracker) -> None:
    queue = RQQueue(real_tracker.client)
    jid = queue.jid("resize")
    barrier = threading.Barrier(8)

    def retry() -> bool:  # the client's connection pool gives each thread its own
        barrier.wait()
        try:
            real_tracker.retry(jid)
        except Conflict:
            return False
        return True

    try:
        dead(real_tracker, jid, queue=queue.name, payload=PAYLOAD)
        real_tracker.client.delete(queue.key)
        with ThreadPoolExecutor(8) as pool:
            won = list(pool.map(lambda _: retry(), range(8)))

        assert won.count(True) == 1
        assert queue.pushed() == [jid]
    finally:
        queue.cleanup()


@pytest.mark.rq
def test_a_stale_attempts_success_after_a_retry_is_refused(
    make_tracker: MakeTracker, rq_queue: Queues
) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock)
    queue = rq_queue(tracker)
    jid = queue.jid("resize")
    tracker.register(jid, queue=queue.name, payload=PAYLOAD, max_attempts=1)
    assert tracker.start(jid, reserve_for=1).attempts == 1
    clock.advance(2)  # attempt 1's work horse is paused past its reservation
    assert [track.state for track in tracker.reap()] == [State.DEAD]
    tracker.retry(jid)
    with pytest.raises(JobSuperseded) as refused:  # attempt 1 ended: not before the start
        tracker.success(jid, attempt=1)
    assert (refused.value.state, refused.value.attempt) == ("enqueued", 1)

    assert tracker.start(jid).attempts == 2  # attempts count on from where they were
    tracker.track_set(jid, percent=50, attempt=2)
    before = tracker.track_get(jid)
    for stale in (
        lambda: tracker.success(jid, attempt=1),
        lambda: tracker.fail(jid, "attempt 1 woke up", attempt=1),
        lambda: tracker.track_set(jid, percent=99, attempt=1),
    ):
        with pytest.raises(JobSuperseded) as refused:
            stale()
        assert (refused.value.state, refused.value.attempt) == ("working", 2)
    assert tracker.track_get(jid) == before
    assert tracker.success(jid, attempt=2).state is State.SUCCESS


@pytest.mark.rq
def test_a_retry_of_a_failed_job_fences_the_attempt_that_failed(
    tracker: Tracker, rq_queue: Queues
) -> None:
    queue = rq_queue(tracker)
    jid = queue.jid("resize")
    tracker.register(jid, queue=queue.name, payload=PAYLOAD)
    tracker.start(jid)
    tracker.fail(jid, "try again", attempt=1)
    tracker.retry(jid)
    assert tracker.start(jid).attempts == 2
    with pytest.raises(JobSuperseded):
        tracker.fail(jid, "attempt 1 again", attempt=1)
    assert [error["message"] for error in tracker.track_get(jid).errors] == ["try again"]


def test_a_reaped_attempt_still_running_when_its_job_is_retried_is_stopped(
    real_tracker: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its job was retried before the watcher looked (enqueued again, with the attempt
    number it had): the watcher stops the attempt, never lets it run beside the retry."""
    queue = RQQueue(real_tracker.client)
    jid = queue.jid("resize")
    worker = TrackedSimpleWorker(
        [rq.Queue(queue.name, connection=real_tracker.client)],
        connection=real_tracker.client,
        tracker=real_tracker,
    )
    stopped: list[str] = []
    monkeypatch.setattr(worker, "stop_running_job", stopped.append)
    try:
        real_tracker.register(jid, queue=queue.name, payload=PAYLOAD, max_attempts=1)
        track = real_tracker.start(jid)
        assert track.attempts is not None and track.reserve_until is not None
        running = context.Running(real_tracker, jid, track.attempts)
        watched = _Watched(
            jid, track.attempts, track.reserve_until, 60, time.monotonic() + 60, running
        )
        real_tracker.fail(jid, "reservation expired", error_type="ReservationExpired")
        real_tracker.retry(jid)
        assert real_tracker.state_and_attempt(jid) == (State.ENQUEUED, 1)

        _Watcher(worker)._check(watched)

        assert stopped == [jid]
    finally:
        queue.cleanup()


@pytest.mark.parametrize("state", ["enqueued", "working", "paused", "success"])
def test_retry_is_refused_unless_dead_failed_or_cancelled(tracker: Tracker, state: str) -> None:
    tracker.register("job-1")
    if state == "working":
        tracker.start("job-1")
    elif state == "paused":
        tracker.pause("job-1")
    elif state == "success":
        tracker.success("job-1")
    with pytest.raises(Conflict) as refused:
        tracker.retry("job-1")
    assert refused.value.state == state
    assert tracker.track_get("job-1").state.value == state


def test_retry_of_a_job_without_a_payload_is_refused(tracker: Tracker) -> None:
    dead(tracker, "job-1")
    with pytest.raises(Conflict) as refused:
        tracker.retry("job-1")
    assert refused.value.state == "dead"
    assert "payload" in refused.value.detail


def test_retry_of_an_unknown_job_is_not_found(tracker: Tracker) -> None:
    with pytest.raises(NotFound):
        tracker.retry("ghost")


def kill_build(tracker: Tracker, queue: RQQueue, **dependents: list[str]) -> str:
    """Register a job with a payload and ``dependents`` (name: prerequisites, "build"
    standing for that job), then fail it for good; returns its jid."""
    jid = queue.jid("build")
    tracker.register(jid, queue=queue.name, payload=PAYLOAD)
    for name, prerequisites in dependents.items():
        tracker.register(name, prerequisites=[jid if p == "build" else p for p in prerequisites])
    tracker.start(jid)
    tracker.fail(jid, "it broke", retry=False)
    return jid


@pytest.mark.rq
def test_a_retried_job_releases_the_dependents_its_death_blocked(
    tracker: Tracker, rq_queue: Queues
) -> None:
    jid = kill_build(tracker, rq_queue(tracker), deploy=["build"], notify=["deploy"])
    assert tracker.track_get("notify").blocked_by == jid

    tracker.retry(jid)
    assert tracker.track_get("deploy").blocked_by is None
    assert tracker.track_get("notify").blocked_by is None
    tracker.start(jid)
    tracker.success(jid)

    assert tracker.track_get("deploy").state is State.ENQUEUED
    assert tracker.track_get("notify").state is State.WAITING


@pytest.mark.rq
def test_a_dependent_with_another_dead_prerequisite_stays_blocked_by_it(
    tracker: Tracker, rq_queue: Queues
) -> None:
    tracker.register("lint")
    jid = kill_build(tracker, rq_queue(tracker), deploy=["build", "lint"], notify=["deploy"])
    tracker.start("lint")
    tracker.fail("lint", "style", retry=False)
    assert tracker.track_get("deploy").blocked_by == jid  # the first to end blocks it

    tracker.retry(jid)

    assert tracker.track_get("deploy").blocked_by == "lint"
    assert tracker.track_get("notify").blocked_by == "lint"
    tracker.start(jid)
    tracker.success(jid)
    assert tracker.track_get("deploy").state is State.WAITING


@pytest.mark.rq
def test_dead_dependents_stay_dead_unless_asked(
    make_tracker: MakeTracker, rq_queue: Queues
) -> None:
    tracker = make_tracker(propagate_failures=True)
    jid = kill_build(tracker, rq_queue(tracker), deploy=["build"])
    assert tracker.track_get("deploy").state is State.DEAD

    tracker.retry(jid)

    assert tracker.track_get("deploy").state is State.DEAD


@pytest.mark.rq
def test_retry_with_dependents_revives_what_its_death_killed(
    make_tracker: MakeTracker, rq_queue: Queues
) -> None:
    tracker = make_tracker(propagate_failures=True)
    tracker.register("lint")
    jid = kill_build(
        tracker, rq_queue(tracker), deploy=["build", "lint"], notify=["deploy"], other=["lint"]
    )
    tracker.success("lint")  # while deploy is dead: it no longer waits for lint
    assert tracker.track_get("notify").state is State.DEAD

    tracker.retry(jid, dependents=True)

    deploy = tracker.track_get("deploy")
    assert deploy.state is State.WAITING
    assert deploy.prerequisites == {"total": 2, "pending": 1}
    assert deploy.errors[0]["type"] == "PrerequisiteFailed"  # the history is kept
    assert tracker.track_get("notify").state is State.WAITING
    tracker.start(jid)
    tracker.success(jid)
    assert tracker.track_get("deploy").state is State.ENQUEUED
    tracker.success("deploy")
    assert tracker.track_get("notify").state is State.ENQUEUED


@pytest.mark.rq
def test_retry_with_dependents_leaves_a_job_with_another_dead_prerequisite(
    make_tracker: MakeTracker, rq_queue: Queues
) -> None:
    tracker = make_tracker(propagate_failures=True)
    tracker.register("lint")
    jid = kill_build(tracker, rq_queue(tracker), deploy=["build", "lint"])
    tracker.cancel("lint")

    tracker.retry(jid, dependents=True)

    assert tracker.track_get("deploy").state is State.DEAD


@pytest.mark.rq
def test_a_wide_revival_goes_in_bounded_chunks_and_reaches_every_dependent(
    make_real_tracker: MakeTracker, rq_queue: Queues, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = make_real_tracker(propagate_failures=True)
    wide = {f"d{n}": ["build"] for n in range(150)}
    jid = kill_build(tracker, rq_queue(tracker), **wide)
    calls = count_script_calls(tracker, monkeypatch)

    tracker.retry(jid, dependents=True)

    assert calls["drain"] >= 2  # 150 revivals do not fit one call's budget
    assert {tracker.track_get(name).state for name in wide} == {State.WAITING}
    tracker.start(jid)
    tracker.success(jid)
    assert {tracker.track_get(name).state for name in wide} == {State.ENQUEUED}


def test_the_sets_a_revival_reads_a_jid_off_have_a_job_keys_prefix_length(
    tracker: Tracker,
) -> None:
    # revive() in lua/_graph.lua reads a prerequisite's jid off its dependents or gate set
    keys = tracker.keys
    assert len(keys.dependents("")) == len(keys.gate("")) == keys.job_prefix_len


# --- delete --------------------------------------------------------------------------------


@pytest.mark.parametrize("final", ["success", "dead", "cancelled"])
def test_delete_forgets_a_finished_job_everywhere(tracker: Tracker, final: str) -> None:
    tracker.register("job-1", queue="mail", labels={"customer": "acme"})
    if final == "success":
        tracker.success("job-1")
    elif final == "dead":
        dead(tracker, "job-2")
        tracker.cancel("job-1")
        tracker.delete("job-1")
        tracker.register("job-1", queue="mail", labels={"customer": "acme"})
        tracker.start("job-1")
        tracker.fail("job-1", "x", retry=False)
    else:
        tracker.cancel("job-1")

    assert tracker.delete("job-1").value == final

    assert tracker.track_get("job-1").state is State.UNKNOWN
    assert "job-1" not in [t.jid for t in tracker.list().jobs]
    assert tracker.list(label="customer:acme").jobs == []
    assert final not in tracker.stats().queues.get("mail", {})
    leftovers = [
        k
        for k in tracker.client.scan_iter(match=tracker.keys.prefix + "*", count=1000)
        if b"job-1" in k
    ]
    assert leftovers == []


def test_a_dependent_registered_after_a_delete_finds_the_job_unknown(tracker: Tracker) -> None:
    tracker.register("build")
    tracker.success("build")
    tracker.delete("build")

    assert tracker.register("deploy", prerequisites=["build"]).track.state is State.WAITING
    satisfied = tracker.register(
        "notify", prerequisites=["build"], missing_prerequisites="satisfied"
    )
    assert satisfied.track.state is State.ENQUEUED


def test_a_deleted_jid_may_be_registered_again_with_another_body(tracker: Tracker) -> None:
    tracker.register("job-1", queue="a")
    tracker.success("job-1")
    tracker.delete("job-1")
    assert tracker.register("job-1", queue="b").created


def test_delete_leaves_jobs_that_still_name_it_as_they_were(tracker: Tracker) -> None:
    tracker.register("batch", batch=True)
    tracker.register("child", parent="batch")
    tracker.register("other")
    tracker.register("waits", prerequisites=["child", "other"])
    tracker.cancel("batch")  # the child is cancelled with it, "waits" is blocked

    tracker.delete("child")
    tracker.delete("batch")

    waits = tracker.track_get("waits")
    assert (waits.state, waits.blocked_by) == (State.WAITING, "child")
    tracker.success("other")
    assert tracker.track_get("waits").state is State.WAITING
    assert tracker.list(parent="batch").jobs == []


@pytest.mark.parametrize("state", ["waiting", "enqueued", "working", "failed", "paused"])
def test_delete_is_refused_until_the_job_finished(tracker: Tracker, state: str) -> None:
    tracker.register("job-1", prerequisites=["never"] if state == "waiting" else None)
    if state in ("working", "failed"):
        tracker.start("job-1")
    if state == "failed":
        tracker.fail("job-1", "again")
    if state == "paused":
        tracker.pause("job-1")
    with pytest.raises(Conflict) as refused:
        tracker.delete("job-1")
    assert refused.value.state == state
    assert tracker.track_get("job-1").state.value == state


def test_delete_of_an_unknown_job_is_not_found(tracker: Tracker) -> None:
    with pytest.raises(NotFound):
        tracker.delete("ghost")


# --- tracebacks and payloads ---------------------------------------------------------------


def test_an_error_carries_the_traceback_it_was_given(tracker: Tracker) -> None:
    tracker.register("job-1")
    tracker.start("job-1")
    tracker.fail("job-1", "one", traceback="Traceback (most recent call last):\nValueError: one")
    tracker.start("job-1")
    track = tracker.fail("job-1", "two")

    errors = tracker.track_get("job-1").to_dict()["errors"]
    assert "traceback" not in errors[0]
    assert errors[1]["traceback"].endswith("ValueError: one")
    assert track.errors[1]["traceback"].endswith("ValueError: one")


def test_a_long_traceback_loses_its_top(tracker: Tracker) -> None:
    frames = "".join(f'  File "app.py", line {n}, in step_{n}\n' for n in range(1000))
    tracker.register("job-1")
    tracker.start("job-1")
    tracker.fail("job-1", "deep", traceback=f"Traceback:\n{frames}ValueError: deep")

    kept = tracker.track_get("job-1").errors[0]["traceback"]
    assert len(kept.encode()) <= MAX_TRACEBACK
    assert kept.startswith("[...]\n  File ")
    assert kept.endswith("in step_999\nValueError: deep")


def test_a_huge_traceback_is_cut_not_refused(tracker: Tracker) -> None:
    tracker.register("job-1")
    tracker.start("job-1")
    tracker.fail("job-1", "deep", traceback="x" * (2 << 20) + "\udcff\nValueError: deep")
    kept = tracker.track_get("job-1").errors[0]["traceback"]
    assert kept.endswith("\nValueError: deep") and len(kept.encode()) <= MAX_TRACEBACK


def test_tracebacks_stay_in_step_with_the_history(tracker: Tracker) -> None:
    tracker.register("job-1", max_attempts=50)
    for attempt in range(12):
        tracker.start("job-1")
        tracker.fail("job-1", f"failure {attempt}", traceback=f"tb {attempt}")
    errors = tracker.track_get("job-1").errors
    assert [(e["message"], e["traceback"]) for e in errors] == [
        (f"failure {n}", f"tb {n}") for n in range(11, 1, -1)
    ]


@pytest.mark.rq
def test_the_track_carries_the_payload_as_registered(tracker: Tracker) -> None:
    tracker.register("job-1", payload=PAYLOAD)
    assert tracker.track_get("job-1").to_dict()["payload"] == PAYLOAD
    assert "payload" not in tracker.register("job-2").track.to_dict()


@pytest.mark.rq
def test_hide_args_hides_args_and_kwargs(tracker: Tracker) -> None:
    tracker.register("job-1", payload=PAYLOAD, hide_args=True)
    shown = tracker.track_get("job-1").to_dict()["payload"]
    assert shown == {"func": "app.tasks.resize", "args": "hidden", "kwargs": "hidden"}


@pytest.mark.rq
def test_hide_args_is_part_of_the_body(tracker: Tracker) -> None:
    tracker.register("job-1", payload=PAYLOAD)
    with pytest.raises(Conflict):
        tracker.register("job-1", payload=PAYLOAD, hide_args=True)


# --- through the tracked worker ------------------------------------------------------------


def test_the_worker_reports_the_traceback_and_a_retry_runs_again(real_tracker: Tracker) -> None:
    queue = RQQueue(real_tracker.client)
    try:
        jid = queue.jid("broken")
        real_tracker.enqueue(jobs.broken, ["no luck"], jid=jid, queue=queue.name, max_attempts=1)
        work(real_tracker, queue.name)
        track = real_tracker.track_get(jid)
        assert track.state is State.DEAD
        traceback = track.errors[0]["traceback"]
        assert traceback.startswith("Traceback (most recent call last):")
        assert "in broken" in traceback and traceback.endswith("ValueError: no luck\n")

        real_tracker.retry(jid)
        work(real_tracker, queue.name)

        track = real_tracker.track_get(jid)
        assert (track.state, track.attempts, len(track.errors)) == (State.DEAD, 2, 2)
        assert rq.Queue(queue.name, connection=real_tracker.client).count == 0
    finally:
        queue.cleanup()
