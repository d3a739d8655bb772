"""progress() inside a job: calls as often as a job likes, writes a few a second, the
last value written before the job's end, a cancel learned at the next call."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tracker import InvalidInput, JobCancelled, JobSuperseded, Tracker, context
from tracker.context import REPORT_EVERY


@pytest.fixture
def running(tracker: Tracker) -> Iterator[context.Running]:
    tracker.register("job-1")
    attempt = tracker.start("job-1").attempts
    token = context.enter(tracker, "job-1", attempt)
    try:
        yield context.current()
    finally:
        context.leave(token)


def _writes(tracker: Tracker) -> int:
    """TRACK SETs of job-1 so far: the events that changed no state."""
    return sum(1 for e in tracker.events("0") if e.track.jid == "job-1" and not e.change)


def test_calls_in_a_tight_loop_write_a_few_times_a_second(
    tracker: Tracker, running: context.Running
) -> None:
    started = time.monotonic()
    calls = 0
    while time.monotonic() - started < 0.6:
        context.progress(percent=calls % 101, desc=f"step {calls}")
        calls += 1
    elapsed = time.monotonic() - started
    assert calls > 1000
    assert 1 <= _writes(tracker) <= elapsed / REPORT_EVERY + 1
    running.flush_pending()  # what the worker does before it reports the end
    track = tracker.track_get("job-1")
    assert (track.percent, track.desc) == ((calls - 1) % 101, f"step {calls - 1}")


def test_the_first_call_writes_at_once_and_a_quiet_one_later_too(
    tracker: Tracker, running: context.Running
) -> None:
    context.progress(percent=10)
    assert tracker.track_get("job-1").percent == 10
    context.progress(percent=20)  # too soon: noted
    assert tracker.track_get("job-1").percent == 10
    running.written_at -= REPORT_EVERY  # as if a quarter of a second went by
    context.progress(desc="later")
    track = tracker.track_get("job-1")
    assert (track.percent, track.desc) == (20, "later")  # the noted value went too


def test_a_bad_value_fails_at_the_call_even_when_no_write_is_due(
    tracker: Tracker, running: context.Running
) -> None:
    context.progress(percent=10)
    for bad in ({"percent": 101}, {"percent": -1}, {"desc": "x" * 5000}):
        with pytest.raises(InvalidInput):
            context.progress(**bad)  # type: ignore[arg-type]
    running.flush_pending()
    assert tracker.track_get("job-1").percent == 10


def test_a_cancel_the_watcher_saw_is_raised_at_the_next_call_written_or_not(
    tracker: Tracker, running: context.Running
) -> None:
    context.progress(percent=10)
    tracker.cancel("job-1")
    running.ended = JobCancelled("job-1")  # as the worker's watcher does
    with pytest.raises(JobCancelled):
        context.progress(percent=11)


def test_a_cancel_is_raised_by_the_next_write_without_a_watcher(
    tracker: Tracker, running: context.Running
) -> None:
    tracker.cancel("job-1")
    with pytest.raises(JobCancelled):
        context.progress(percent=10)


def test_a_superseded_attempt_is_raised_at_the_next_call(running: context.Running) -> None:
    running.ended = JobSuperseded("job-1", "working", "its attempt 1 is not running", 2)
    with pytest.raises(JobSuperseded):
        context.progress(percent=10)
