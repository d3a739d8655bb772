"""Dashboards' reads: lists by state, queue and label, newest first, with a cursor; counts."""

from __future__ import annotations

from typing import Any

import pytest
from bulk import register_many
from conftest import FakeClock, MakeTracker

from tracker import InvalidInput, State, Tracker, listing
from tracker.calls import Call, Plan, Read
from tracker.listing import INDEX_BUDGET, INDEX_CALLS


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed(make_tracker: MakeTracker, clock: FakeClock) -> Tracker:
    return make_tracker(clock=clock)


def test_jobs_are_listed_newest_update_first(timed: Tracker, clock: FakeClock) -> None:
    for jid in ["a", "b", "c"]:
        timed.register(jid)
        clock.advance(1)
    timed.track_set("a", percent=5)
    assert [t.jid for t in timed.list().jobs] == ["a", "c", "b"]


def test_list_filters_by_state_queue_and_label(timed: Tracker, clock: FakeClock) -> None:
    timed.register("mail-1", queue="mail", labels={"customer": "acme"})
    timed.register("mail-2", queue="mail")
    timed.register("img-1", queue="images", labels={"customer": "acme"})
    timed.start("mail-2")
    assert {t.jid for t in timed.list(queue="mail").jobs} == {"mail-1", "mail-2"}
    assert [t.jid for t in timed.list(state="working").jobs] == ["mail-2"]
    assert [t.jid for t in timed.list(state="enqueued", queue="mail").jobs] == ["mail-1"]
    assert {t.jid for t in timed.list(label="customer:acme").jobs} == {"mail-1", "img-1"}
    assert [t.jid for t in timed.list(label="customer:acme", queue="images").jobs] == ["img-1"]
    assert timed.list(queue="nowhere").jobs == []


def test_a_label_filter_reaches_every_label_key_and_value(tracker: Tracker) -> None:
    tracker.register("colon-key", labels={"a:b": "c"})
    tracker.register("colon-value", labels={"a": "b:c"})
    tracker.register("equals-value", labels={"k": "x=y"})
    tracker.register("empty-value", labels={"k": ""})

    def found(label: str) -> set[str]:
        return {t.jid for t in tracker.list(label=label).jobs}

    assert found("a:b=c") == {"colon-key"}  # the first "=" splits: no key holds one
    assert found("a=b:c") == {"colon-value"}
    assert found("a:b:c") == {"colon-value"}  # KEY:VALUE, where there is no "="
    assert found("k=x=y") == {"equals-value"}
    assert found("k=") == {"empty-value"}


@pytest.mark.parametrize("label", ["", "novalue", "=v", "a b=c", "k=" + "v" * 257, "k=a\nb"])
def test_a_bad_label_filter_is_refused(tracker: Tracker, label: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        tracker.list(label=label)
    assert refused.value.field in ("label", "label key")


def test_a_label_and_a_parent_filter_together(tracker: Tracker) -> None:
    tracker.register("b1", batch=True)
    tracker.register("in-batch", parent="b1", labels={"k": "v"})
    tracker.register("in-batch-other", parent="b1", labels={"k": "w"})
    tracker.register("outside", labels={"k": "v"})
    assert [t.jid for t in tracker.list(label="k=v", parent="b1").jobs] == ["in-batch"]


def test_an_empty_cursor_is_the_first_page(tracker: Tracker) -> None:
    tracker.register("a")
    assert [t.jid for t in tracker.list(cursor="").jobs] == ["a"]


def test_the_cursor_walks_every_job_once_in_order(timed: Tracker, clock: FakeClock) -> None:
    for n in range(120):
        timed.register(f"job-{n:03d}", queue=("a", "b", "c")[n % 3])
        clock.advance(0.001 * (n % 2))  # many jobs share a millisecond
    seen, cursor = [], None
    while True:
        page = timed.list(limit=50, cursor=cursor)
        seen.extend(t.jid for t in page.jobs)
        if page.next is None:
            break
        cursor = page.next
    assert seen == [t.jid for t in timed.list(limit=1000).jobs]
    assert sorted(seen) == [f"job-{n:03d}" for n in range(120)]


def test_a_label_listing_pages_too(timed: Tracker, clock: FakeClock) -> None:
    for n in range(7):
        timed.register(f"job-{n}", labels={"run": "r1"})
        clock.advance(1)
    first = timed.list(label="run:r1", limit=4)
    assert [t.jid for t in first.jobs] == ["job-6", "job-5", "job-4", "job-3"]
    rest = timed.list(label="run:r1", limit=4, cursor=first.next)
    assert [t.jid for t in rest.jobs] == ["job-2", "job-1", "job-0"]
    assert rest.next is None


def test_stats_counts_by_state_overall_and_per_queue(tracker: Tracker) -> None:
    tracker.register("a1", queue="a")
    tracker.register("a2", queue="a")
    tracker.register("b1", queue="b")
    tracker.start("a1")
    tracker.success("b1")
    stats = tracker.stats()
    assert stats.states == {"enqueued": 1, "working": 1, "success": 1}
    assert stats.queues == {"a": {"enqueued": 1, "working": 1}, "b": {"success": 1}}


def test_a_job_moves_between_state_lists_with_its_state(tracker: Tracker) -> None:
    tracker.register("job-1")
    tracker.start("job-1")
    tracker.success("job-1")
    for state in ("enqueued", "working"):
        assert tracker.list(state=state).jobs == []
    assert [t.state for t in tracker.list(state="success").jobs] == [State.SUCCESS]


def test_a_label_listing_walks_jobs_of_one_millisecond_once_each(
    timed: Tracker, clock: FakeClock
) -> None:
    for n in range(30):
        timed.register(f"job-{n:02d}", labels={"run": "r1"})  # the clock stands still
    timed.register("other", labels={"run": "r2"})
    seen, cursor = [], None
    while True:
        page = timed.list(label="run:r1", limit=7, cursor=cursor)
        seen.extend(t.jid for t in page.jobs)
        if page.next is None:
            break
        cursor = page.next
    assert seen == [f"job-{n:02d}" for n in reversed(range(30))]


def test_a_label_filter_matching_one_job_deep_down_pages_to_it(
    make_real_tracker: MakeTracker,
) -> None:
    tracker = make_real_tracker()
    tracker.register("needle", labels={"env": "prod"}, queue="rare")
    hay = (f"hay-{n}" for n in range(INDEX_BUDGET * INDEX_CALLS * 2))
    register_many(tracker, hay, labels={"env": "prod"})  # enqueued too: no smaller side
    found, cursor, pages = [], None, 0
    while True:
        page = tracker.list(label="env:prod", state="enqueued", queue="rare", cursor=cursor)
        found.extend(t.jid for t in page.jobs)
        pages += 1
        if page.next is None:
            break
        cursor = page.next
    assert found == ["needle"]
    assert pages == 3  # each page read a bounded part of the label's jobs
    first = tracker.list(label="env:prod", state="enqueued", queue="rare")
    assert first.jobs == []
    assert first.next is not None


def test_a_rare_state_within_a_large_label_is_listed_from_the_state_side(
    make_real_tracker: MakeTracker,
) -> None:
    tracker = make_real_tracker()
    for jid, labels in [("f1", {"env": "prod"}), ("f2", {}), ("f3", {"env": "prod"})]:
        tracker.register(jid, labels=labels, queue=f"q-{jid}")
        tracker.start(jid)
        tracker.fail(jid, "boom")  # failed, a retry expected
    hay = (f"hay-{n}" for n in range(INDEX_BUDGET * INDEX_CALLS * 2))
    register_many(tracker, hay, labels={"env": "prod"})
    first = tracker.list(label="env:prod", state="failed", limit=1)
    assert [t.jid for t in first.jobs] == ["f3"]
    rest = tracker.list(label="env:prod", state="failed", limit=1, cursor=first.next)
    assert ([t.jid for t in rest.jobs], rest.next) == (["f1"], None)
    in_queue = tracker.list(label="env:prod", state="failed", queue="q-f1")
    assert [t.jid for t in in_queue.jobs] == ["f1"]
    nothing = tracker.list(label="env:prod", state="dead")  # no job is dead
    assert (nothing.jobs, nothing.next) == ([], None)


def test_jobs_of_many_queues_merge_newest_first_in_calls_within_the_budget(
    timed: Tracker, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "LIST_BUDGET", 40)  # many calls, each asking for at most 40
    for n in range(150):
        timed.register(f"job-{n:03d}", queue=f"q{n % 25}")
        if n % 3 == 0:
            timed.start(f"job-{n:03d}")
        clock.advance(0.001 * (n % 4 == 0))  # many share a millisecond
    every = sorted(
        (timed.track_get(f"job-{n:03d}") for n in range(150)),
        key=lambda t: (t.updated_at, t.jid),
        reverse=True,
    )
    asked = []
    plan = timed.plans.list_jobs(limit=1000)
    step = next(plan)
    try:
        while True:
            if isinstance(step, Call) and step.script == "list":
                args = step.own_args
                asked.append(args[0] + sum(args[5::5]))
            step = plan.send(timed._drive(_one(step)))
    except StopIteration as done:
        page = done.value
    assert [t.jid for t in page.jobs] == [t.jid for t in every]
    assert max(asked) <= 40
    seen, cursor = [], None
    while True:
        page = timed.list(limit=7, cursor=cursor, state="enqueued")
        seen.extend(t.jid for t in page.jobs)
        if page.next is None:
            break
        cursor = page.next
    assert seen == [t.jid for t in every if t.state is State.ENQUEUED]


def _one(step: Call | Read) -> Plan[Any]:
    """A plan of one step: the reply it gets."""
    return (yield step)
