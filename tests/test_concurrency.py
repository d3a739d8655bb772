"""Races with real threads on one server: many workers and clients report on the same
jobs at once, and the event stream must still tell a story SPEC section 3 allows."""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

import redis
from conftest import MakeTracker, wait_until

from tracker import Conflict, NotFound, State, Track, Tracker
from tracker.records import Event
from tracker.times import format_time

T = TypeVar("T")

THREADS = 8
OPERATIONS = 250  # per thread: 2,000 in all, well within the ~10,000 events the stream keeps
#: SPEC section 3: the states that may follow each state (None: before registration).
#: A state following itself is a TRACK SET; a terminal state is followed by nothing.
LEGAL: dict[State | None, set[State]] = {
    None: {State.WAITING, State.ENQUEUED},
    State.WAITING: {
        State.WAITING,
        State.PAUSED,
        State.ENQUEUED,
        State.CANCELLED,
        State.DEAD,  # a prerequisite died and failure propagation is on
    },
    State.PAUSED: {State.PAUSED, State.WAITING, State.ENQUEUED, State.CANCELLED},
    State.ENQUEUED: {
        State.ENQUEUED,
        State.PAUSED,
        State.WORKING,
        State.SUCCESS,
        State.FAILED,
        State.DEAD,
        State.CANCELLED,
    },
    State.WORKING: {State.WORKING, State.SUCCESS, State.FAILED, State.DEAD, State.CANCELLED},
    State.FAILED: {State.FAILED, State.WORKING, State.CANCELLED},
    State.SUCCESS: set(),
    State.DEAD: set(),
    State.CANCELLED: set(),
}
#: Calls that change the track every time they are accepted (success may be a no-op).
CHANGES = ("start", "track_set", "fail", "cancel", "pause", "resume")


def same_namespace(first: Tracker, count: int) -> list[Tracker]:
    """``count`` trackers on ``first``'s server and namespace, each with a client of its own."""
    pool = first.client.connection_pool  # redis-py pools are thread-safe
    return [Tracker(redis.Redis(connection_pool=pool), first.settings) for _ in range(count)]


def run_together(works: Sequence[Callable[[], T]]) -> list[T]:
    """Run each of ``works`` in a thread of its own, all released at the same moment."""
    barrier = threading.Barrier(len(works))

    def run(work: Callable[[], T]) -> T:
        barrier.wait(timeout=30)
        return work()

    with ThreadPoolExecutor(len(works)) as pool:
        return list(pool.map(run, works, timeout=60))


def history(tracker: Tracker) -> dict[str, list[Event]]:
    """Every event of the namespace, grouped by jid, in the order the changes happened."""
    by_jid: dict[str, list[Event]] = defaultdict(list)
    for event in tracker.events("0", 100_000):
        by_jid[event.track.jid].append(event)
    return by_jid


def assert_legal_path(jid: str, events: list[Event]) -> None:
    """The job's states follow SPEC section 3, and attempts only grow, by one per start."""
    previous: State | None = None
    attempts = 0
    for n, event in enumerate(events):
        state, now = event.track.state, event.track.attempts or 0
        where = f"{jid}, event {n}: {previous} -> {state}"
        assert state in LEGAL[previous], where
        if not event.change:  # a TRACK SET
            assert (state, now) == (previous, attempts), f"{where}: a TRACK SET changed them"
            continue
        started = state is State.WORKING and previous is not State.WORKING
        assert now == attempts + started, f"{where}: attempts {attempts} -> {now}"
        if state is State.FAILED:
            assert now < (event.track.max_attempts or 0), f"{where}: failed, no attempts left"
        previous, attempts = state, now


def server_ms(tracker: Tracker) -> int:
    seconds, micros = tracker.client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_concurrent_reports_only_ever_follow_legal_paths(make_real_tracker: MakeTracker) -> None:
    first = make_real_tracker()
    operations: dict[str, Callable[[Tracker, str, random.Random], Track]] = {
        "track_set": lambda t, jid, rng: t.track_set(jid, percent=rng.randint(0, 100)),
        "start": lambda t, jid, rng: t.start(jid),
        "fail": lambda t, jid, rng: t.fail(jid, "boom", retry=rng.random() < 0.9),
        "success": lambda t, jid, rng: t.success(jid),
        "cancel": lambda t, jid, rng: t.cancel(jid),
        "pause": lambda t, jid, rng: t.pause(jid),
        "resume": lambda t, jid, rng: t.resume(jid),
    }
    names = list(operations)
    weights = [
        {"track_set": 30, "start": 25, "fail": 20, "success": 4, "cancel": 2}.get(n, 6)
        for n in names
    ]

    def play(tracker: Tracker, seed: int) -> tuple[Counter[tuple[str, str]], list[Track]]:
        rng = random.Random(seed)
        accepted: Counter[tuple[str, str]] = Counter()
        starts: list[Track] = []
        for n in range(OPERATIONS):
            # all threads work on the same 8 jobs at a time; newer jobs slide in as they go
            jid = f"job-{n // 10 + rng.randrange(8)}"
            name = rng.choices(names, weights)[0]
            try:
                track = operations[name](tracker, jid, rng)
            except NotFound:
                # first touch: register it (threads may race to, only one creates it)
                if tracker.register(jid, max_attempts=3).created:
                    accepted[(jid, "register")] += 1
                continue
            except Conflict:
                continue  # refused: the job had moved on meanwhile
            accepted[(jid, name)] += 1
            if name == "start":
                starts.append(track)
        return accepted, starts

    trackers = same_namespace(first, THREADS)
    results = run_together([partial(play, t, seed) for seed, t in enumerate(trackers)])

    accepted = sum((done for done, _ in results), Counter[tuple[str, str]]())
    starts: defaultdict[str, list[int]] = defaultdict(list)
    for _, tracks in results:
        for track in tracks:
            starts[track.jid].append(track.attempts or 0)
    events = history(first)
    assert sum(len(e) for e in events.values()) < 10_000, "the stream was trimmed"
    assert len(events) > 20
    for jid, changed in events.items():
        assert_legal_path(jid, changed)
        final = first.track_get(jid)
        states = [event.track.state for event in changed]
        assert final.state is states[-1]
        assert states.count(State.SUCCESS) == (final.state is State.SUCCESS)
        # every accepted call is exactly one event: none lost, none doubled
        assert accepted[(jid, "register")] == 1
        changes = sum(accepted[(jid, name)] for name in CHANGES)
        assert len(states) == 1 + changes + states.count(State.SUCCESS)
        assert sorted(starts[jid]) == list(range(1, (final.attempts or 0) + 1))
        assert len(final.errors) == accepted[(jid, "fail")]


def test_concurrent_starts_of_one_job_succeed_for_exactly_one_worker(
    make_real_tracker: MakeTracker,
) -> None:
    first = make_real_tracker()
    jids = [f"job-{n}" for n in range(20)]
    for jid in jids:
        first.register(jid)
    each_job = threading.Barrier(THREADS)

    def race(tracker: Tracker) -> list[str]:
        won = []
        for jid in jids:
            each_job.wait(timeout=30)
            try:
                won.append(tracker.start(jid).jid)
            except Conflict as refused:
                assert refused.state == "working"
        return won

    results = run_together([partial(race, t) for t in same_namespace(first, THREADS)])
    wins = [jid for won in results for jid in won]
    assert sorted(wins) == sorted(jids)
    assert {first.track_get(jid).attempts for jid in jids} == {1}


def test_concurrent_successes_of_one_job_are_one_event(make_real_tracker: MakeTracker) -> None:
    first = make_real_tracker()
    jids = [f"job-{n}" for n in range(20)]
    for jid in jids:
        first.register(jid)
        first.start(jid)
    each_job = threading.Barrier(THREADS)

    def finish(tracker: Tracker) -> list[State]:
        states = []
        for jid in jids:
            each_job.wait(timeout=30)
            states.append(tracker.success(jid).state)
        return states

    results = run_together([partial(finish, t) for t in same_namespace(first, THREADS)])
    assert {state for states in results for state in states} == {State.SUCCESS}
    events = history(first)
    for jid in jids:
        assert [event.track.state.value for event in events[jid]] == [
            "enqueued",
            "working",
            "success",
        ]


def test_a_success_racing_a_cancel_has_one_winner_and_the_loser_learns_it(
    make_real_tracker: MakeTracker,
) -> None:
    first = make_real_tracker()
    jids = [f"job-{n}" for n in range(40)]
    for jid in jids:
        first.register(jid)
        first.start(jid)
    each_job = threading.Barrier(2)

    def end_all(tracker: Tracker, how: str) -> list[tuple[str, str]]:
        outcomes = []
        for jid in jids:
            each_job.wait(timeout=30)
            try:
                getattr(tracker, how)(jid)
                outcomes.append((jid, how))
            except Conflict as refused:
                outcomes.append((jid, "refused: " + refused.state))
        return outcomes

    worker, client = same_namespace(first, 2)
    successes, cancels = run_together(
        [partial(end_all, worker, "success"), partial(end_all, client, "cancel")]
    )
    one_winner = {
        State.SUCCESS: {"success", "refused: success"},
        State.CANCELLED: {"cancel", "refused: cancelled"},
    }
    for (jid, by_worker), (_, by_client) in zip(successes, cancels, strict=True):
        final = first.track_get(jid).state
        assert {by_worker, by_client} == one_winner.get(final), jid


def test_concurrent_reapers_reap_each_expired_job_exactly_once(
    make_real_tracker: MakeTracker,
) -> None:
    first = make_real_tracker()
    jids = [f"job-{n}" for n in range(60)]
    last_attempt = {jid: n % 2 == 1 for n, jid in enumerate(jids)}
    for jid in jids:
        first.register(jid, reserve_for=1, max_attempts=1 if last_attempt[jid] else 3)
    ends = [first.start(jid).reserve_until or 0 for jid in jids]
    wait_until(lambda: server_ms(first) >= max(ends), timeout=10)

    def reap_everything(tracker: Tracker) -> list[Track]:
        reaped: list[Track] = []
        for _ in range(100):  # bounded: a job no reaper takes fails the test, not hangs it
            if not tracker.client.zcard(tracker.keys.reservations):
                break
            reaped.extend(tracker.reap(limit=5))
        return reaped

    results = run_together([partial(reap_everything, t) for t in same_namespace(first, THREADS)])
    reaped = Counter(track.jid for tracks in results for track in tracks)
    assert reaped == Counter(jids)
    events = history(first)
    for jid in jids:
        track = first.track_get(jid)
        assert track.state is (State.DEAD if last_attempt[jid] else State.FAILED)
        assert [e["message"] for e in track.errors] == ["reservation expired"]
        assert len(events[jid]) == 3  # registered, started, reaped once


def test_an_extension_racing_the_reaper_either_saves_the_job_or_is_refused(
    make_real_tracker: MakeTracker,
) -> None:
    first = make_real_tracker()
    jids = [f"job-{n}" for n in range(40)]
    for jid in jids:
        first.register(jid, reserve_for=1)
    ends = [first.start(jid).reserve_until or 0 for jid in jids]
    wait_until(lambda: server_ms(first) >= max(ends), timeout=10)
    later = format_time(server_ms(first) + 3_600_000)

    def extend_all(tracker: Tracker) -> dict[str, str]:
        outcomes = {}
        for jid in reversed(jids):  # the reaper starts at the other end: they meet midway
            try:
                tracker.track_set(jid, reserve_until=later)
                outcomes[jid] = "extended"
            except Conflict as refused:
                outcomes[jid] = refused.state
        return outcomes

    def reap_until_none_is_due(tracker: Tracker) -> list[Track]:
        reaped: list[Track] = []
        for _ in range(100):
            reaped.extend(tracker.reap(limit=5))
            due = tracker.client.zrangebyscore(
                tracker.keys.reservations, "-inf", server_ms(tracker), start=0, num=1
            )
            if not due:
                break
        return reaped

    worker, reaper = same_namespace(first, 2)
    extended, reaped = run_together(
        [partial(extend_all, worker), partial(reap_until_none_is_due, reaper)]
    )
    reaped_jids = Counter(track.jid for track in reaped)
    for jid in jids:
        track = first.track_get(jid)
        if extended[jid] == "extended":
            assert (track.state, track.errors) == (State.WORKING, ())
            assert reaped_jids[jid] == 0
        else:
            assert extended[jid] == "failed", jid  # the worker learns its job was reaped
            assert track.state is State.FAILED
            assert reaped_jids[jid] == 1
