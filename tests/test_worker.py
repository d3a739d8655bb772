"""The tracked RQ worker, against real servers: lifecycle, retries, cancel, reservations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jobs
import pytest
import rq
from conftest import FakeClock, MakeTracker, wait_until

from tracker import State, Tracker
from tracker.worker import TrackedSimpleWorker

HERE = Path(__file__).parent


@pytest.fixture
def queue() -> Iterator[str]:
    """A queue name of this test's own (RQ queues are shared by every namespace)."""
    yield "q-" + uuid.uuid4().hex[:12]


@pytest.fixture(autouse=True)
def _forget_rq_keys(make_real_tracker: MakeTracker, queue: str) -> Iterator[None]:
    yield
    client = make_real_tracker().client
    client.srem("rq:queues", f"rq:queue:{queue}")
    for key in client.scan_iter(match=f"rq:*{queue}*", count=1000):
        client.delete(key)


def work(tracker: Tracker, queue: str) -> None:
    """Run every job in the queue, in this process."""
    worker = TrackedSimpleWorker(
        [rq.Queue(queue, connection=tracker.client)], connection=tracker.client, tracker=tracker
    )
    worker.work(burst=True, logging_level="WARNING")


def rq_jobs(tracker: Tracker, queue: str) -> list[str]:
    return [jid.decode() for jid in tracker.client.lrange(f"rq:queue:{queue}", 0, -1)]


def url_of(tracker: Tracker) -> str:
    kwargs = tracker.client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def test_a_job_reports_its_lifecycle_and_progress(real_tracker: Tracker, queue: str) -> None:
    jid = real_tracker.enqueue(jobs.report_steps, (4,), queue=queue)
    assert rq_jobs(real_tracker, queue) == [jid]
    work(real_tracker, queue)
    track = real_tracker.track_get(jid)
    assert (track.state, track.attempts) == (State.SUCCESS, 1)
    assert (track.percent, track.desc) == (100, "step 4 of 4")
    assert rq.job.Job.fetch(jid, connection=real_tracker.client).return_value() == "done"


def test_the_worker_never_sets_percent_or_desc_itself(real_tracker: Tracker, queue: str) -> None:
    jid = real_tracker.enqueue(jobs.add, (2, 3), queue=queue)
    work(real_tracker, queue)
    assert real_tracker.track_get(jid).to_dict().keys().isdisjoint({"percent", "desc"})


def test_an_async_job_reports_with_aprogress(real_tracker: Tracker, queue: str) -> None:
    jid = real_tracker.enqueue(jobs.async_steps, (3,), queue=queue)
    work(real_tracker, queue)
    assert (real_tracker.track_get(jid).state, real_tracker.track_get(jid).percent) == (
        State.SUCCESS,
        100,
    )


def test_a_failing_job_is_retried_after_a_backoff(
    make_real_tracker: MakeTracker, queue: str
) -> None:
    clock = FakeClock()
    tracker = make_real_tracker(clock=clock)
    jid = tracker.enqueue(jobs.flaky, queue=queue)
    work(tracker, queue)
    failed = tracker.track_get(jid)
    assert failed.state is State.FAILED
    error = dict(failed.error or {})
    assert error.pop("traceback").endswith("RuntimeError: first attempt fails\n")
    assert error == {
        "message": "first attempt fails",
        "type": "RuntimeError",
        "at": failed.updated_at,
    }
    assert failed.eligible_at == failed.updated_at + 1000
    assert tracker.promote() == 0  # not before its backoff
    clock.advance(1.5)
    assert tracker.promote() == 1
    assert rq_jobs(tracker, queue) == [jid]
    work(tracker, queue)
    track = tracker.track_get(jid)
    assert (track.state, track.attempts) == (State.SUCCESS, 2)


def test_a_job_without_attempts_left_is_dead_and_propagation_follows(
    make_real_tracker: MakeTracker, queue: str
) -> None:
    tracker = make_real_tracker(propagate_failures=True)
    bad = tracker.enqueue(jobs.broken, ("no good",), queue=queue, max_attempts=1)
    after = tracker.enqueue(jobs.add, (1, 1), queue=queue, prerequisites=[bad])
    work(tracker, queue)
    dead = tracker.track_get(bad)
    assert dead.state is State.DEAD
    assert (dead.error["message"], dead.error["type"]) == ("no good", "ValueError")  # type: ignore[index]
    assert tracker.track_get(after).state is State.DEAD
    assert tracker.track_get(after).error["source"] == bad  # type: ignore[index]


def test_a_function_that_cannot_be_imported_fails_naming_it(
    real_tracker: Tracker, queue: str
) -> None:
    missing = real_tracker.enqueue("tests_nowhere.resize", queue=queue, max_attempts=1)
    fine = real_tracker.enqueue(jobs.add, (1, 2), queue=queue)
    work(real_tracker, queue)
    track = real_tracker.track_get(missing)
    assert track.state is State.DEAD
    assert "tests_nowhere.resize" in track.error["message"]  # type: ignore[index]
    assert real_tracker.track_get(fine).state is State.SUCCESS  # the worker went on


def test_jobs_with_prerequisites_reach_rq_on_release(real_tracker: Tracker, queue: str) -> None:
    first = real_tracker.enqueue(jobs.add, (1, 2), queue=queue)
    second = real_tracker.enqueue(jobs.add, (3, 4), queue=queue, prerequisites=[first])
    assert rq_jobs(real_tracker, queue) == [first]
    work(real_tracker, queue)
    assert real_tracker.track_get(second).state is State.SUCCESS


def test_cancelling_a_queued_job_takes_it_out_of_rq(real_tracker: Tracker, queue: str) -> None:
    jid = real_tracker.enqueue(jobs.add, (1, 2), queue=queue)
    real_tracker.cancel(jid)
    assert rq_jobs(real_tracker, queue) == []
    work(real_tracker, queue)
    assert real_tracker.track_get(jid).state is State.CANCELLED


def test_pause_takes_a_job_out_of_rq_and_resume_puts_it_back(
    real_tracker: Tracker, queue: str
) -> None:
    jid = real_tracker.enqueue(jobs.add, (1, 2), queue=queue)
    real_tracker.pause(jid)
    assert rq_jobs(real_tracker, queue) == []
    real_tracker.resume(jid)
    assert rq_jobs(real_tracker, queue) == [jid]
    work(real_tracker, queue)
    assert real_tracker.track_get(jid).state is State.SUCCESS


def _cancel_once_working(tracker: Tracker, jid: str) -> threading.Thread:
    def cancel() -> None:
        wait_until(lambda: tracker.state(jid) is State.WORKING, timeout=10)
        tracker.cancel(jid)

    thread = threading.Thread(target=cancel)
    thread.start()
    return thread


def test_a_running_job_learns_of_its_cancel_at_its_next_progress(
    real_tracker: Tracker, queue: str
) -> None:
    marker = f"marker-{queue}"
    jid = real_tracker.enqueue(jobs.report_until_cancelled, (marker,), queue=queue)
    canceller = _cancel_once_working(real_tracker, jid)
    work(real_tracker, queue)
    canceller.join()
    assert real_tracker.client.get(marker) == b"saw JobCancelled"
    assert real_tracker.track_get(jid).state is State.CANCELLED
    real_tracker.client.delete(marker)


def test_a_job_that_never_reports_is_stopped_after_the_grace(
    make_real_tracker: MakeTracker, queue: str
) -> None:
    tracker = make_real_tracker(cancel_grace=0.3)
    jid = tracker.enqueue(jobs.ignore_cancel, (20,), queue=queue)
    canceller = _cancel_once_working(tracker, jid)
    started = time.monotonic()
    work(tracker, queue)
    canceller.join()
    assert time.monotonic() - started < 10  # stopped, far short of its 20 s
    track = tracker.track_get(jid)
    assert track.state is State.CANCELLED
    assert track.errors == ()


def test_the_worker_keeps_a_long_jobs_reservation_alive(real_tracker: Tracker, queue: str) -> None:
    jid = real_tracker.enqueue(jobs.sleep_then_succeed, (2.5,), queue=queue, reserve_for=1)
    seen: list[int] = []

    def sample() -> None:
        wait_until(lambda: real_tracker.state(jid) is State.WORKING, timeout=10)
        while real_tracker.state(jid) is State.WORKING:
            seen.append(real_tracker.track_get(jid).reserve_until or 0)
            assert real_tracker.reap() == []  # never expired while it runs
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    work(real_tracker, queue)
    sampler.join()
    assert real_tracker.track_get(jid).state is State.SUCCESS
    assert seen[-1] - seen[0] >= 1000  # extended as it went


def _run_cli_worker(tracker: Tracker, queue: str, *options: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TRACKER_REDIS_URL": url_of(tracker),
        "TRACKER_NAMESPACE": tracker.settings.namespace,
        "PYTHONPATH": str(HERE),
    }
    script = Path(sys.executable).with_name("tracker")
    return subprocess.Popen(
        [str(script), "worker", queue, *options],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_the_forking_worker_reports_the_lifecycle(real_tracker: Tracker, queue: str) -> None:
    done = real_tracker.enqueue(jobs.report_steps, (3,), queue=queue)
    bad = real_tracker.enqueue(jobs.broken, queue=queue, max_attempts=1)
    process = _run_cli_worker(real_tracker, queue, "--burst")
    assert process.wait(timeout=60) == 0
    assert (real_tracker.track_get(done).state, real_tracker.track_get(done).percent) == (
        State.SUCCESS,
        100,
    )
    assert real_tracker.track_get(bad).state is State.DEAD


@pytest.mark.parametrize("simple", [False, True], ids=["forking", "simple"])
def test_a_burst_worker_leaves_within_seconds_of_its_last_job(
    real_tracker: Tracker, queue: str, simple: bool
) -> None:
    jid = real_tracker.enqueue(jobs.sleep_then_succeed, (0.1,), queue=queue)
    started = time.monotonic()
    process = _run_cli_worker(real_tracker, queue, "--burst", *(["--simple"] if simple else []))
    assert process.wait(timeout=60) == 0
    assert time.monotonic() - started < 5
    assert real_tracker.state(jid) is State.SUCCESS


@pytest.mark.parametrize("simple", [False, True], ids=["forking", "simple"])
def test_an_idle_worker_leaves_within_two_seconds_of_sigterm(
    real_tracker: Tracker, queue: str, simple: bool
) -> None:
    jid = real_tracker.enqueue(jobs.sleep_then_succeed, (0.1,), queue=queue)
    process = _run_cli_worker(real_tracker, queue, *(["--simple"] if simple else []))
    try:
        wait_until(lambda: real_tracker.state(jid) is State.SUCCESS, timeout=30)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert process.wait(timeout=60) == 0
        assert time.monotonic() - signalled < 2
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_killed_workers_job_is_reaped_and_retried(real_tracker: Tracker, queue: str) -> None:
    jid = real_tracker.enqueue(jobs.sleep_then_succeed, (30,), queue=queue, reserve_for=1)
    process = _run_cli_worker(real_tracker, queue, "--burst")
    try:
        wait_until(lambda: real_tracker.state(jid) is State.WORKING, timeout=30)
    finally:
        # the work horse runs in a process group of its own: kill it by parent
        horses = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
        for pid in [process.pid, *map(int, horses.stdout.split())]:
            os.kill(pid, signal.SIGKILL)
        process.wait(timeout=10)
    reaped = wait_until(real_tracker.reap, timeout=10, interval=0.1)
    assert [t.state for t in reaped] == [State.FAILED]
    assert reaped[0].error["message"] == "reservation expired"  # type: ignore[index]
    wait_until(lambda: real_tracker.promote() == 1, timeout=10, interval=0.1)
    assert rq_jobs(real_tracker, queue) == [jid]


def test_a_worker_beats_with_its_job_and_counts_and_leaves_the_registry(
    real_tracker: Tracker, queue: str
) -> None:
    real_tracker.enqueue(jobs.broken, queue=queue, max_attempts=1)
    slow = real_tracker.enqueue(jobs.sleep_then_succeed, (1.0,), queue=queue)
    worker = TrackedSimpleWorker(
        [rq.Queue(queue, connection=real_tracker.client)],
        connection=real_tracker.client,
        tracker=real_tracker,
        beat_interval=0.1,
    )
    seen: list[Any] = []

    def watch() -> None:  # RQ's work loop wants the main thread (signal handlers)
        seen.extend(wait_until(lambda: [w for w in real_tracker.workers() if w.job == slow]))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    worker.work(burst=True, logging_level="WARNING")
    watcher.join(timeout=10)
    (busy,) = seen
    assert (busy.name, busy.state, busy.queues) == (worker.name, "busy", [queue])
    assert (busy.pid, busy.done, busy.failed) == (os.getpid(), 0, 1)
    assert real_tracker.state(slow) is State.SUCCESS
    assert real_tracker.workers() == []  # a worker leaving says so at once


def test_the_cli_worker_is_listed_until_it_stops(real_tracker: Tracker, queue: str) -> None:
    process = _run_cli_worker(real_tracker, queue)
    try:
        (listed,) = wait_until(real_tracker.workers, timeout=30)
        assert (listed.pid, listed.queues, listed.state) == (process.pid, [queue], "idle")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert real_tracker.workers() == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
