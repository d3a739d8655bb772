"""Ordered steps of parallel jobs (the Tasker pattern) as a chain of batches."""

from __future__ import annotations

import pytest
from conftest import MakeTracker

from tracker import InvalidInput, State, Tracker
from tracker.steps import register_steps


def _states(tracker: Tracker, *jids: str) -> list[str]:
    return [tracker.track_get(jid).state.value for jid in jids]


def test_the_first_steps_jobs_run_and_later_ones_wait(tracker: Tracker) -> None:
    steps = register_steps(tracker, "wf", [["a1", "a2"], ["b1"], ["c1", "c2"]])
    assert steps == ["wf:step-1", "wf:step-2", "wf:step-3"]
    assert _states(tracker, "a1", "a2", "b1", "c1") == [
        "enqueued",
        "enqueued",
        "waiting",
        "waiting",
    ]
    assert _states(tracker, *steps) == ["working", "waiting", "waiting"]


def test_each_step_starts_when_the_one_before_succeeded(tracker: Tracker) -> None:
    register_steps(tracker, "wf", [["a1", "a2"], ["b1"], ["c1"]])
    tracker.success("a1")
    assert _states(tracker, "b1") == ["waiting"]
    tracker.success("a2")
    assert _states(tracker, "wf:step-1", "b1", "c1") == ["success", "enqueued", "waiting"]
    tracker.success("b1")
    tracker.success("c1")
    workflow = tracker.track_get("wf")
    assert (workflow.state, workflow.percent) == (State.SUCCESS, 100)
    assert workflow.batch == {"total": 3, "pending": 0, "success": 3, "dead": 0, "sealed": True}


def test_the_workflow_percent_rolls_up_from_steps_and_jobs(tracker: Tracker) -> None:
    register_steps(tracker, "wf", [["a1", "a2"], ["b1"]])
    tracker.track_set("a1", percent=50)
    assert tracker.track_get("wf:step-1").percent == 25
    tracker.success("a1")
    tracker.success("a2")
    assert tracker.track_get("wf").percent == 50  # one step of two


def test_a_dead_job_kills_its_step_and_the_workflow(make_tracker: MakeTracker) -> None:
    tracker = make_tracker(propagate_failures=True)
    register_steps(tracker, "wf", [["a1"], ["b1"]])
    tracker.fail("a1", "broken", retry=False)
    assert _states(tracker, "wf:step-1", "wf", "wf:step-2", "b1") == ["dead"] * 4
    assert tracker.track_get("b1").error["source"] == "a1"  # type: ignore[index]


def test_jobs_may_carry_their_own_register_fields(tracker: Tracker) -> None:
    register_steps(tracker, "wf", [[{"jid": "a1", "queue": "fetch", "labels": {"n": "1"}}]])
    track = tracker.track_get("a1")
    assert (track.queue, track.labels, track.parent) == ("fetch", {"n": "1"}, "wf:step-1")


def test_registering_the_same_workflow_again_is_a_no_op(tracker: Tracker) -> None:
    register_steps(tracker, "wf", [["a1"], ["b1"]])
    before = tracker.track_get("wf")
    register_steps(tracker, "wf", [["a1"], ["b1"]])
    assert tracker.track_get("wf") == before


@pytest.mark.parametrize("steps", [[], [[]], [["a"], []]])
def test_empty_steps_are_refused(tracker: Tracker, steps: list[list[str]]) -> None:
    with pytest.raises(InvalidInput):
        register_steps(tracker, "wf", steps)
    assert tracker.track_get("wf").state is State.UNKNOWN
