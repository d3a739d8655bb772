"""The RQ hand-off's contract (handoff.py): a job the tracker releases lands in RQ exactly
as ``rq.Queue.enqueue`` would put it there at that moment: the same job hash (its
timestamps aside), the same queue list, the same set of queues and the same registries,
whatever released it. Each test releases a job through the tracker and reads what RQ
holds; then it takes the job back out (its hash, its place in its queue), lets RQ's own
enqueue write it again onto what is left, and compares.

These tests, with the rest of the suite, are what admits an RQ release to ``RQ_TESTED``
(docs/development.md). Then the format of what the tracker stores for the hand-off: its
version first, and a job whose hand-off cannot be read fails with HandoffUnreadable.
"""

from __future__ import annotations

import itertools
import re
import tomllib
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import redis
import rq
from conftest import FakeClock, MakeTracker
from packaging.specifiers import SpecifierSet
from rq.job import Job

from tracker import State, Tracker
from tracker.errors import UnsupportedRQ
from tracker.handoff import HANDOFF_VERSION, RQ_TESTED, check_rq, rq_requirement
from tracker.worker import TrackedSimpleWorker

pytestmark = pytest.mark.rq

#: Fields of RQ's job hash that say when it was written, so differ between two writes.
TIMESTAMPS = {b"created_at", b"enqueued_at"}
PLAIN = {"func": "jobs.add"}
WITH_ARGUMENTS = {
    "func": "jobs.add",
    "args": [1, "two", [3.5, None, True], {"nested": ["é", -(2**70)]}],
    "kwargs": {"a": "ü", "b": [], "c": {"d": 2**64}},
}


class InRQ:
    """A queue and a jid of one test's own (RQ keys are shared by every namespace), and
    what RQ holds for them."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.name = "q-" + uuid.uuid4().hex[:12]
        self.jid = "j-" + self.name
        self.queue = rq.Queue(self.name, connection=client)

    def registries(self) -> dict[str, str]:
        queue = self.queue
        return {
            registry.key: name
            for name, registry in [
                ("started", queue.started_job_registry),
                ("finished", queue.finished_job_registry),
                ("failed", queue.failed_job_registry),
                ("deferred", queue.deferred_job_registry),
                ("scheduled", queue.scheduled_job_registry),
                ("canceled", queue.canceled_job_registry),
            ]
        }

    def held(self) -> dict[str, Any]:
        """What RQ holds for the job: its hash without timestamps and whether it expires,
        its queue, the queue's intermediate list, whether RQ lists the queue, its
        registries, and every key whose name holds the job's id."""
        client, queue, jid = self.client, self.queue, self.jid
        job_key = Job.key_for(jid)
        fields = client.hgetall(job_key)
        stamps = {field for field in TIMESTAMPS if field in fields}
        return {
            "job": {k: v for k, v in fields.items() if k not in TIMESTAMPS},
            "stamps": stamps,
            "expires": client.ttl(job_key) != -1,
            "queue": client.lrange(queue.key, 0, -1),
            "taken": client.lrange(queue.intermediate_queue_key, 0, -1),
            "listed": bool(client.sismember("rq:queues", queue.key)),
            "registries": {
                name: client.zrange(key, 0, -1) for key, name in self.registries().items()
            },
            "keys": sorted(self._own_keys()),
        }

    def _own_keys(self) -> list[bytes]:
        # the tracker's keys start with its namespace, in braces
        keys = self.client.scan_iter(match=f"*{self.jid}*", count=1000)
        return [key for key in keys if not key.startswith(b"{")]

    def wipe(self) -> None:
        """Take out of RQ everything it holds for this queue and job."""
        queue = self.queue
        keys = [queue.key, queue.intermediate_queue_key, *self.registries(), *self._own_keys()]
        self.client.delete(*keys)
        self.client.srem("rq:queues", queue.key)

    def enqueued_by_rq(self, payload: dict[str, Any]) -> dict[str, Any]:
        """What RQ holds once it enqueued the job itself, with the options the tracker
        gives it (handoff.py: none but ``timeout=-1``), as a new job: onto what RQ held
        before but the job's hash and its place in its queue."""
        self.client.delete(Job.key_for(self.jid))
        self.client.lrem(self.queue.key, 0, self.jid)
        self.queue.enqueue(
            payload["func"],
            args=tuple(payload.get("args", ())),
            kwargs=payload.get("kwargs", {}),
            job_id=self.jid,
            job_timeout=-1,
        )
        return self.held()


@pytest.fixture
def in_rq(tracker: Tracker) -> Iterator[InRQ]:
    made = InRQ(tracker.client)
    yield made
    made.wipe()


def assert_as_rq_enqueues(in_rq: InRQ, payload: dict[str, Any]) -> None:
    ours = in_rq.held()
    assert ours["queue"] == [in_rq.jid.encode()]
    assert ours["stamps"] == TIMESTAMPS
    assert ours == in_rq.enqueued_by_rq(payload)


# --- the RQ-equivalence contract ---------------------------------------------------


def test_a_released_job_lands_in_rq_as_rq_enqueues_it(tracker: Tracker, in_rq: InRQ) -> None:
    tracker.register(in_rq.jid, queue=in_rq.name, payload=PLAIN)
    assert_as_rq_enqueues(in_rq, PLAIN)


def test_a_job_with_args_and_kwargs_lands_in_rq_as_rq_enqueues_it(
    tracker: Tracker, in_rq: InRQ
) -> None:
    tracker.register(in_rq.jid, queue=in_rq.name, payload=WITH_ARGUMENTS)
    assert_as_rq_enqueues(in_rq, WITH_ARGUMENTS)
    job = Job.fetch(in_rq.jid, connection=tracker.client)
    assert job.args == (1, "two", [3.5, None, True], {"nested": ["é", -(2**70)]})
    assert job.kwargs == WITH_ARGUMENTS["kwargs"]


def test_the_only_option_the_hand_off_passes_rq_is_no_timeout(
    tracker: Tracker, in_rq: InRQ
) -> None:
    """The tracker's reservation, kept alive by the worker, bounds a run; RQ's defaults
    stand for the rest."""
    tracker.register(in_rq.jid, queue=in_rq.name, payload=PLAIN)
    job = Job.fetch(in_rq.jid, connection=tracker.client)
    defaults = Job.create(PLAIN["func"], connection=tracker.client)
    assert job.timeout == -1
    assert (job.result_ttl, job.ttl, job.failure_ttl) == (None, None, None)
    assert (job.meta, job.description) == (defaults.meta, "jobs.add()")
    assert (job.origin, job.get_status()) == (in_rq.name, "queued")


def test_a_dependent_released_by_its_prerequisite_lands_in_rq_as_rq_enqueues_it(
    tracker: Tracker, in_rq: InRQ
) -> None:
    tracker.register("build")
    tracker.register(in_rq.jid, queue=in_rq.name, payload=WITH_ARGUMENTS, prerequisites=["build"])
    assert in_rq.held()["keys"] == []
    tracker.success("build")
    assert_as_rq_enqueues(in_rq, WITH_ARGUMENTS)


def test_a_delayed_job_released_by_promote_lands_in_rq_as_rq_enqueues_it(
    make_tracker: MakeTracker,
) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock)
    in_rq = InRQ(tracker.client)
    try:
        tracker.register(in_rq.jid, queue=in_rq.name, payload=PLAIN, delay=10)
        assert in_rq.held()["keys"] == []
        clock.advance(10)
        assert tracker.promote() == 1
        assert_as_rq_enqueues(in_rq, PLAIN)
    finally:
        in_rq.wipe()


def test_a_job_paused_and_resumed_lands_in_rq_as_rq_enqueues_it(
    tracker: Tracker, in_rq: InRQ
) -> None:
    tracker.register(in_rq.jid, queue=in_rq.name, payload=PLAIN)
    tracker.pause(in_rq.jid)
    assert in_rq.held()["queue"] == []
    tracker.resume(in_rq.jid)
    assert_as_rq_enqueues(in_rq, PLAIN)


def run_worker(tracker: Tracker, in_rq: InRQ) -> None:
    worker = TrackedSimpleWorker([in_rq.queue], connection=tracker.client, tracker=tracker)
    worker.work(burst=True, logging_level="WARNING")


@pytest.mark.parametrize("how", ["backoff", "retry"])
def test_a_job_handed_again_after_a_failure_lands_in_rq_as_rq_enqueues_it(
    make_tracker: MakeTracker, how: str
) -> None:
    """Handed again by its backoff (a failed attempt) or by a retry (a dead job): RQ's
    job hash is written whole again, as a new enqueue writes it, whatever the worker
    left in it; RQ's failed registry keeps the failure its worker recorded, as it would
    for a job enqueued again under the same id."""
    clock = FakeClock()
    tracker = make_tracker(clock=clock)
    in_rq = InRQ(tracker.client)
    payload = {"func": "jobs.broken", "args": ["boom"]}
    try:
        tracker.register(
            in_rq.jid, queue=in_rq.name, payload=payload, max_attempts=2 if how == "backoff" else 1
        )
        run_worker(tracker, in_rq)
        track = tracker.track_get(in_rq.jid)
        if how == "backoff":
            assert track.state is State.FAILED
            clock.advance(60)
            assert tracker.promote() == 1
        else:
            assert track.state is State.DEAD
            assert tracker.retry(in_rq.jid).state is State.ENQUEUED
        assert_as_rq_enqueues(in_rq, payload)
    finally:
        in_rq.wipe()


# --- what the tracker stores, and what it cannot read -------------------------------


def test_a_stored_hand_off_starts_with_its_version(tracker: Tracker, in_rq: InRQ) -> None:
    tracker.register("build")
    tracker.register(in_rq.jid, queue=in_rq.name, payload=PLAIN, prerequisites=["build"])
    stored = tracker.client.lrange(tracker.keys.payload(in_rq.jid), 0, -1)
    assert stored[0] == HANDOFF_VERSION.encode()
    assert int(stored[1]) == len(stored[2 : 2 + int(stored[1])])  # the undo, counted


def test_the_lua_reads_the_version_python_stores() -> None:
    source = resources.files("tracker").joinpath("lua/_graph.lua").read_text()
    assert re.findall(r"^local HANDOFF_VERSION = '([^']*)'$", source, re.M) == [HANDOFF_VERSION]


def unreadable(tracker: Tracker, jid: str, how: str) -> None:
    """Leave ``jid``'s stored hand-off in a format this tracker does not read, or none."""
    key = tracker.keys.payload(jid)
    if how == "unknown version":
        tracker.client.lset(key, 0, "v0")
    else:
        tracker.client.delete(key)


UNREADABLE = {
    "unknown version": "it is stored in format 'v0', and this tracker reads " + HANDOFF_VERSION,
    "missing list": "none is stored (its list expired or was deleted)",
}


@pytest.mark.parametrize("how", sorted(UNREADABLE))
def test_a_job_released_with_an_unreadable_hand_off_fails_with_handoff_unreadable(
    make_tracker: MakeTracker, how: str
) -> None:
    tracker = make_tracker(propagate_failures=True)
    in_rq = InRQ(tracker.client)
    try:
        tracker.register("build")
        tracker.register(in_rq.jid, queue=in_rq.name, payload=PLAIN, prerequisites=["build"])
        tracker.register("after", prerequisites=[in_rq.jid])
        unreadable(tracker, in_rq.jid, how)
        tracker.success("build")
        track = tracker.track_get(in_rq.jid)
        assert (track.state, track.attempts) == (State.DEAD, 0)
        assert track.error is not None
        assert track.error["type"] == "HandoffUnreadable"
        assert track.error["message"] == (
            f"the hand-off to queue {in_rq.name} is unreadable: {UNREADABLE[how]}"
        )
        assert in_rq.held()["keys"] == []  # nothing reached RQ
        assert tracker.track_get("after").state is State.DEAD  # propagation, as on any failure
        assert tracker.promote() == 0  # and nothing is handed later
        assert in_rq.held()["keys"] == []
    finally:
        in_rq.wipe()


def test_a_delayed_job_with_an_unreadable_hand_off_fails_when_promoted(
    make_tracker: MakeTracker,
) -> None:
    clock = FakeClock()
    tracker = make_tracker(clock=clock)
    in_rq = InRQ(tracker.client)
    try:
        tracker.register(in_rq.jid, queue=in_rq.name, payload=PLAIN, delay=10)
        unreadable(tracker, in_rq.jid, "unknown version")
        clock.advance(10)
        assert tracker.promote() == 0  # nothing handed
        track = tracker.track_get(in_rq.jid)
        assert track.state is State.DEAD
        assert track.error is not None and track.error["type"] == "HandoffUnreadable"
        assert in_rq.held()["keys"] == []
    finally:
        in_rq.wipe()


def test_a_retry_whose_hand_off_is_unreadable_replies_dead(tracker: Tracker, in_rq: InRQ) -> None:
    """Not ``enqueued``: the reply is what the retry did. What the job's death blocked
    stays blocked."""
    tracker.register(in_rq.jid, queue=in_rq.name, payload=PLAIN, max_attempts=1)
    tracker.register("after", prerequisites=[in_rq.jid])
    in_rq.wipe()
    tracker.start(in_rq.jid)
    tracker.fail(in_rq.jid, "boom")
    unreadable(tracker, in_rq.jid, "unknown version")
    track = tracker.retry(in_rq.jid)
    assert track.state is State.DEAD
    assert [error.get("type") for error in track.errors] == ["HandoffUnreadable", None]
    assert track == tracker.track_get(in_rq.jid)
    assert in_rq.held()["keys"] == []
    after = tracker.track_get("after")
    assert (after.state, after.blocked_by) == (State.WAITING, in_rq.jid)


# --- the RQ releases tracker runs on -------------------------------------------------


def test_the_rq_installed_is_a_tested_release() -> None:
    check_rq(rq.__version__)


@pytest.mark.parametrize("version", ["3.1.0", "2.12.0", "4.0.0b1"])
def test_an_untested_rq_release_is_refused_by_name(version: str) -> None:
    with pytest.raises(UnsupportedRQ, match=re.escape(f"rq {version} is installed")) as refused:
        check_rq(version)
    assert f"rq{rq_requirement()}" in str(refused.value)


def test_pyproject_bounds_rq_to_the_tested_releases() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    bounds = [dep for dep in pyproject["project"]["dependencies"] if re.match(r"rq\W", dep)]
    assert bounds == [f"rq{rq_requirement()}"]
    allowed = SpecifierSet(rq_requirement())
    for major, minor in RQ_TESTED:
        assert f"{major}.{minor}.0" in allowed
    (low_major, low_minor), (high_major, high_minor) = min(RQ_TESTED), max(RQ_TESTED)
    below = f"{low_major - 1}.99.0" if low_minor == 0 else f"{low_major}.{low_minor - 1}.0"
    for untested in (below, f"{high_major}.{high_minor + 1}.0", f"{high_major + 1}.0.0"):
        assert untested not in allowed


def test_the_tested_releases_leave_no_gap_the_bound_would_admit() -> None:
    assert list(RQ_TESTED) == sorted(set(RQ_TESTED))
    for (major, minor), (next_major, next_minor) in itertools.pairwise(RQ_TESTED):
        assert (next_major, next_minor) in ((major, minor + 1), (major + 1, 0))
