"""SPEC section 2, Reservations: later only, stored in Redis, and the reaper."""

from __future__ import annotations

import pytest
from conftest import FakeClock, MakeTracker, set_and_get, wait_until

from tracker import Conflict, State, Tracker
from tracker.times import format_time


def _working(tracker: Tracker, jid: str = "job-1", **register: int) -> int:
    tracker.register(jid, **register)
    until = tracker.start(jid).reserve_until
    assert until is not None
    return until


def test_track_set_moves_the_reservation_later(tracker: Tracker) -> None:
    until = _working(tracker)
    track = set_and_get(tracker, "job-1", reserve_until=format_time(until + 60_000))
    assert track.reserve_until == until + 60_000
    assert tracker.client.zscore(tracker.keys.reservations, "job-1") == until + 60_000


def test_the_same_reserve_until_again_is_accepted(tracker: Tracker) -> None:
    until = _working(tracker)
    assert set_and_get(tracker, "job-1", reserve_until=format_time(until)).reserve_until == until


def test_an_earlier_reserve_until_is_refused_and_nothing_in_the_call_applies(
    tracker: Tracker,
) -> None:
    until = _working(tracker)
    tracker.track_set("job-1", percent=10, desc="before")
    before = tracker.track_get("job-1")
    with pytest.raises(Conflict) as refused:
        tracker.track_set("job-1", percent=90, desc="after", reserve_until=format_time(until - 1))
    assert refused.value.state == "working"
    assert "later" in refused.value.detail
    assert tracker.track_get("job-1") == before


def test_reserve_until_for_a_job_that_is_not_working_is_refused(tracker: Tracker) -> None:
    tracker.register("job-1")
    with pytest.raises(Conflict) as refused:
        tracker.track_set("job-1", reserve_until="2099-01-01T00:00:00Z")
    assert refused.value.state == "enqueued"


def test_the_reaper_fails_a_job_whose_reservation_ended(make_tracker: MakeTracker) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock)
    _working(tracker, reserve_for=30)
    clock.advance(29)
    assert tracker.reap() == []
    clock.advance(2)
    (reaped,) = tracker.reap()
    assert reaped.state is State.FAILED
    assert reaped.error is not None
    assert reaped.error["message"] == "reservation expired"
    assert tracker.client.zcard(tracker.keys.reservations) == 0


def test_the_reaper_makes_a_job_without_attempts_left_dead(make_tracker: MakeTracker) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock)
    _working(tracker, reserve_for=30, max_attempts=1)
    clock.advance(31)
    assert [t.state for t in tracker.reap()] == [State.DEAD]


def test_the_reaper_spares_an_extended_reservation(make_tracker: MakeTracker) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock)
    until = _working(tracker, reserve_for=30)
    tracker.track_set("job-1", reserve_until=format_time(until + 60_000))
    clock.advance(31)
    assert tracker.reap() == []
    assert tracker.track_get("job-1").state is State.WORKING


def test_a_reaped_job_can_be_started_again(make_tracker: MakeTracker) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock)
    _working(tracker, reserve_for=30)
    clock.advance(31)
    tracker.reap()
    assert tracker.start("job-1").attempts == 2


def test_the_reaper_works_on_the_servers_own_clock(make_real_tracker: MakeTracker) -> None:
    tracker = make_real_tracker()
    _working(tracker, reserve_for=1)
    reaped = wait_until(tracker.reap, timeout=5, interval=0.1)
    assert [t.jid for t in reaped] == ["job-1"]
    assert tracker.track_get("job-1").state is State.FAILED


def test_reservations_survive_a_new_client(make_real_tracker: MakeTracker) -> None:
    tracker = make_real_tracker()
    until = _working(tracker)
    tracker.track_set("job-1", reserve_until=format_time(until + 5_000))
    fresh = Tracker(
        type(tracker.client)(connection_pool=tracker.client.connection_pool), tracker.settings
    )
    assert fresh.track_get("job-1").reserve_until == until + 5_000
