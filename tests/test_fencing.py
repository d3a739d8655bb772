"""SPEC section 10, fencing: every write of a worker names its attempt, and a write from
an attempt that was superseded (reaped, then started again) is a 409 naming the current
attempt, and changes nothing. Writes without an attempt behave as before."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
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

import fakeredis
import jobs
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import rq
from click.testing import CliRunner
from conftest import (
    REDIS_URL,
    FakeClock,
    MakeTracker,
    cleanup,
    local_client,
    own_namespace,
    wait_until,
)
from starlette.testclient import TestClient

from tracker import (
    AsyncTracker,
    Conflict,
    InvalidInput,
    JobSuperseded,
    Settings,
    State,
    Tracker,
    context,
)
from tracker.cli import main
from tracker.testing import memory_async_tracker, memory_tracker
from tracker.web import create_app
from tracker.worker import TrackedSimpleWorker

PROBLEM = "application/problem+json"


def superseded(tracker: Tracker, clock: FakeClock, jid: str = "job-1") -> Any:
    """A job whose first attempt was reaped and whose second attempt runs; returns the
    track as attempt 2 left it."""
    tracker.register(jid)
    assert tracker.start(jid, reserve_for=1).attempts == 1
    tracker.track_set(jid, percent=10, desc="attempt 1", attempt=1)
    clock.advance(2)
    assert [t.jid for t in tracker.reap()] == [jid]
    assert tracker.start(jid, reserve_for=60).attempts == 2
    tracker.track_set(jid, percent=50, desc="attempt 2", attempt=2)
    return tracker.track_get(jid)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fenced(make_tracker: MakeTracker, clock: FakeClock) -> Tracker:
    return make_tracker(clock=clock)


# --- the Python client ---------------------------------------------------------------------


def test_start_returns_the_attempts_number(tracker: Tracker) -> None:
    tracker.register("job-1")
    assert tracker.start("job-1").attempts == 1
    tracker.fail("job-1", "boom", attempt=1)
    assert tracker.start("job-1").attempts == 2


def test_a_write_of_the_current_attempt_is_applied(tracker: Tracker) -> None:
    tracker.register("job-1")
    tracker.start("job-1")
    tracker.track_set(
        "job-1", percent=40, desc="step 2", reserve_until="2099-01-01T00:00:00Z", attempt=1
    )
    track = tracker.success("job-1", attempt=1)
    assert (track.state, track.percent, track.desc) == (State.SUCCESS, 40, "step 2")


def test_a_stale_attempts_track_set_is_a_conflict_naming_the_current_attempt(
    fenced: Tracker, clock: FakeClock
) -> None:
    before = superseded(fenced, clock)
    events = fenced.client.xlen(fenced.keys.events)
    with pytest.raises(JobSuperseded) as refused:
        fenced.track_set("job-1", percent=90, desc="attempt 1 woke up", attempt=1)
    assert (refused.value.state, refused.value.attempt) == ("working", 2)
    assert isinstance(refused.value, Conflict)
    assert "attempt 1" in refused.value.detail and "2" in refused.value.detail
    assert fenced.track_get("job-1") == before
    assert fenced.client.xlen(fenced.keys.events) == events


def test_a_stale_attempts_reservation_extension_is_refused(
    fenced: Tracker, clock: FakeClock
) -> None:
    before = superseded(fenced, clock)
    with pytest.raises(JobSuperseded):
        fenced.track_set("job-1", reserve_until="2099-01-01T00:00:00Z", attempt=1)
    assert fenced.track_get("job-1") == before


def test_a_stale_attempts_success_and_fail_are_refused(fenced: Tracker, clock: FakeClock) -> None:
    before = superseded(fenced, clock)
    with pytest.raises(JobSuperseded) as refused:
        fenced.success("job-1", attempt=1)
    assert refused.value.attempt == 2
    with pytest.raises(JobSuperseded):
        fenced.fail("job-1", "attempt 1 broke", attempt=1)
    assert fenced.track_get("job-1") == before
    assert fenced.success("job-1", attempt=2).state is State.SUCCESS


def test_a_stale_success_after_the_next_attempts_success_is_refused_not_a_no_op(
    fenced: Tracker, clock: FakeClock
) -> None:
    superseded(fenced, clock)
    fenced.success("job-1", attempt=2)
    with pytest.raises(JobSuperseded) as refused:
        fenced.success("job-1", attempt=1)
    assert (refused.value.state, refused.value.attempt) == ("success", 2)
    assert fenced.success("job-1", attempt=2).state is State.SUCCESS  # the same attempt: no-op


def test_an_attempt_that_has_not_started_yet_is_refused(tracker: Tracker) -> None:
    tracker.register("job-1")
    with pytest.raises(JobSuperseded) as refused:
        tracker.track_set("job-1", percent=5, attempt=1)
    assert (refused.value.state, refused.value.attempt) == ("enqueued", 0)
    assert tracker.track_get("job-1").percent is None


def test_a_reaped_attempt_may_not_write_before_the_next_one_starts(
    fenced: Tracker, clock: FakeClock
) -> None:
    fenced.register("job-1")
    fenced.start("job-1", reserve_for=1)
    clock.advance(2)
    reaped = fenced.reap()[0]
    for write in (
        lambda: fenced.track_set("job-1", percent=90, attempt=1),
        lambda: fenced.success("job-1", attempt=1),
        lambda: fenced.fail("job-1", "late", attempt=1),
    ):
        with pytest.raises(JobSuperseded) as refused:
            write()
        assert (refused.value.state, refused.value.attempt) == ("failed", 1)
        assert "attempt 1 has ended" in refused.value.detail
    assert fenced.track_get("job-1") == reaped


def test_a_stale_attempt_racing_the_reap_and_restart_never_lands_in_the_next_attempt(
    make_real_tracker: MakeTracker,
) -> None:
    """A thread keeps writing as attempt 1 while the job is reaped and started again:
    in the event stream, no write of attempt 1 comes after attempt 2's start."""
    clock = FakeClock()
    tracker = make_real_tracker(clock=clock)
    tracker.register("job-1")
    tracker.start("job-1", reserve_for=1)
    stop, accepted, refused = threading.Event(), [0], [0]

    def stale() -> None:
        client = redis.Redis(connection_pool=tracker.client.connection_pool)
        with Tracker(client, tracker.settings, clock=clock) as writer:
            while not stop.is_set():
                try:
                    writer.track_set("job-1", desc="attempt 1", attempt=1)
                    accepted[0] += 1
                except JobSuperseded:
                    refused[0] += 1

    thread = threading.Thread(target=stale)
    thread.start()
    try:
        wait_until(lambda: accepted[0] > 20, timeout=10, interval=0.005)
        clock.advance(2)
        assert tracker.reap()
        assert tracker.start("job-1").attempts == 2
        tracker.track_set("job-1", desc="attempt 2", attempt=2)
        wait_until(lambda: refused[0] > 20, timeout=10, interval=0.005)
    finally:
        stop.set()
        thread.join(timeout=10)
    events = tracker.events("0", 100_000)
    restart = max(
        i
        for i, event in enumerate(events)
        if event.was is State.FAILED and event.track.state is State.WORKING
    )
    later = [event.track.desc for event in events[restart + 1 :]]
    assert later == ["attempt 2"]
    assert tracker.track_get("job-1").desc == "attempt 2"


def test_writes_without_an_attempt_are_not_fenced(fenced: Tracker, clock: FakeClock) -> None:
    superseded(fenced, clock)
    fenced.track_set("job-1", percent=60)
    assert fenced.success("job-1").state is State.SUCCESS


def test_track_set_many_fences_each_update(fenced: Tracker, clock: FakeClock) -> None:
    superseded(fenced, clock)
    fenced.register("job-2")
    fenced.start("job-2")
    results = fenced.track_set_many(
        [
            {"jid": "job-1", "percent": 99, "attempt": 1},
            {"jid": "job-1", "desc": "from 2", "attempt": 2},
            {"jid": "job-2", "percent": 7, "attempt": 1},
            {"jid": "job-2", "desc": "unfenced"},
        ]
    )
    assert isinstance(results[0], JobSuperseded) and results[0].attempt == 2
    assert results[1:] == [None, None, None]
    one, two = fenced.track_get("job-1"), fenced.track_get("job-2")
    assert (one.percent, one.desc) == (50, "from 2")
    assert (two.percent, two.desc) == (7, "unfenced")


@pytest.mark.parametrize("attempt", [0, -1, True, "1", 1.0])
def test_an_attempt_must_be_a_positive_integer(tracker: Tracker, attempt: Any) -> None:
    tracker.register("job-1")
    tracker.start("job-1")
    for write in (
        lambda: tracker.track_set("job-1", percent=1, attempt=attempt),
        lambda: tracker.success("job-1", attempt=attempt),
        lambda: tracker.fail("job-1", "boom", attempt=attempt),
        lambda: tracker.track_set_many([{"jid": "job-1", "attempt": attempt}]),
    ):
        with pytest.raises(InvalidInput) as refused:
            write()
        assert refused.value.field == "attempt"
    assert tracker.track_get("job-1").percent is None


def test_state_and_attempt_reads_both(tracker: Tracker) -> None:
    assert tracker.state_and_attempt("nobody") == (State.UNKNOWN, 0)
    tracker.register("job-1")
    assert tracker.state_and_attempt("job-1") == (State.ENQUEUED, 0)
    tracker.start("job-1")
    assert tracker.state_and_attempt("job-1") == (State.WORKING, 1)


# --- the asyncio client ----------------------------------------------------------------------


def _async_clients(backend: str, url: str) -> tuple[Any, Any]:
    """An asyncio client on ``backend`` and a blocking one on the same data, to clean up."""
    if backend == "fake":
        server = fakeredis.FakeServer()
        return fakeredis.FakeAsyncRedis(server=server), fakeredis.FakeRedis(server=server)
    if backend == "cluster":
        return (
            redis.asyncio.cluster.RedisCluster.from_url(url),
            redis.cluster.RedisCluster.from_url(url),
        )
    return redis.asyncio.Redis.from_url(url), redis.Redis.from_url(url)


async def _async_fencing(tracker: AsyncTracker, clock: FakeClock) -> None:
    await tracker.register("job-1")
    assert (await tracker.start("job-1", reserve_for=1)).attempts == 1
    await tracker.track_set("job-1", percent=10, attempt=1)
    clock.advance(2)
    assert len(await tracker.reap()) == 1
    assert (await tracker.start("job-1")).attempts == 2
    track = await tracker.track_set_returning("job-1", desc="attempt 2", attempt=2)
    assert (track.percent, track.desc) == (10, "attempt 2")
    for stale in (
        tracker.track_set("job-1", percent=90, attempt=1),
        tracker.track_set_returning("job-1", reserve_until="2099-01-01T00:00:00Z", attempt=1),
        tracker.success("job-1", attempt=1),
        tracker.fail("job-1", "late", attempt=1),
    ):
        with pytest.raises(JobSuperseded) as refused:
            await stale
        assert (refused.value.state, refused.value.attempt) == ("working", 2)
    [refusal] = await tracker.track_set_many([{"jid": "job-1", "percent": 1, "attempt": 1}])
    assert isinstance(refusal, JobSuperseded)
    assert await tracker.track_get("job-1") == track
    assert await tracker.state_and_attempt("job-1") == (State.WORKING, 2)
    assert (await tracker.success("job-1", attempt=2)).state is State.SUCCESS


def test_the_async_client_fences_every_write(
    backend: str, valkey_url: str, request: pytest.FixtureRequest
) -> None:
    if backend == "cluster":
        url = request.getfixturevalue("cluster_url")
    else:
        url = REDIS_URL if backend == "redis" else valkey_url
    assert url is not None
    settings = Settings(namespace="t-" + uuid.uuid4().hex[:12], redis_cluster=backend == "cluster")
    clock = FakeClock()
    client, sync = _async_clients(backend, url)

    async def run() -> None:
        async with AsyncTracker(client, settings, clock=clock) as tracker:
            await _async_fencing(tracker, clock)

    try:
        asyncio.run(run())
    finally:
        cleanup(sync, settings.namespace)
        sync.close()


# --- the HTTP API ----------------------------------------------------------------------------


@pytest.fixture
def store(real_url: str, namespace: str, clock: FakeClock) -> Iterator[Tracker]:
    with Tracker(redis.Redis.from_url(real_url), Settings(namespace=namespace), clock=clock) as t:
        yield t


@pytest.fixture
def http(real_url: str, namespace: str) -> Iterator[TestClient]:
    app = create_app(Settings(namespace=namespace), url=real_url, maintenance=False)
    with local_client(app, raise_server_exceptions=False) as client:
        yield client


def _refused(response: Any) -> dict[str, Any]:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    return body


def test_http_start_returns_attempts_and_writes_may_name_it(
    http: TestClient, store: Tracker
) -> None:
    store.register("j1")
    assert http.post("/jobs/j1/start").json()["attempts"] == 1
    track = http.post("/jobs/j1/track", json={"percent": 30, "attempt": 1})
    assert (track.status_code, track.json()["percent"]) == (200, 30)
    done = http.post("/jobs/j1/success", json={"attempt": 1})
    assert (done.status_code, done.json()["state"]) == (200, "success")


def test_http_writes_of_a_superseded_attempt_are_409_with_state_and_attempt(
    http: TestClient, store: Tracker, clock: FakeClock
) -> None:
    before = superseded(store, clock, "j1")
    for path, body in (
        ("/jobs/j1/track", {"percent": 90, "attempt": 1}),
        ("/jobs/j1/track", {"reserve_until": "2099-01-01T00:00:00Z", "attempt": 1}),
        ("/jobs/j1/success", {"attempt": 1}),
        ("/jobs/j1/fail", {"error": "late", "attempt": 1}),
    ):
        refused = _refused(http.post(path, json=body))
        assert (refused["state"], refused["attempt"]) == ("working", 2), path
    assert store.track_get("j1") == before


def test_http_other_409s_carry_no_attempt(http: TestClient, store: Tracker) -> None:
    store.register("j1")
    store.start("j1")
    store.success("j1")
    refused = _refused(http.post("/jobs/j1/track", json={"percent": 1, "attempt": 1}))
    assert refused["state"] == "success"
    assert "attempt" not in refused


@pytest.mark.parametrize("attempt", [0, -3, "1", 1.5, True])
def test_http_attempt_must_be_a_positive_integer(
    http: TestClient, store: Tracker, attempt: Any
) -> None:
    store.register("j1")
    store.start("j1")
    for path, body in (
        ("/jobs/j1/track", {"percent": 1}),
        ("/jobs/j1/success", {}),
        ("/jobs/j1/fail", {"error": "boom"}),
    ):
        response = http.post(path, json={**body, "attempt": attempt})
        assert response.status_code == 400, (path, response.text)
        assert response.json()["field"] == "attempt"
    assert store.track_get("j1").state is State.WORKING


def test_the_openapi_schema_names_the_attempt(http: TestClient) -> None:
    schemas = http.get("/openapi.json").json()["components"]["schemas"]
    for body in ("TrackSet", "Success", "Fail"):
        attempt = schemas[body]["properties"]["attempt"]["anyOf"][0]
        assert (attempt["type"], attempt["minimum"]) == ("integer", 1)
    assert schemas["Problem"]["properties"]["attempt"]["type"] == "integer"


# --- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def cli_namespace(valkey_url: str) -> Iterator[str]:
    yield from own_namespace(valkey_url, "cli-")


def _cli(valkey_url: str, namespace: str, *args: str) -> Any:
    env = {"TRACKER_REDIS_URL": valkey_url, "TRACKER_NAMESPACE": namespace}
    return CliRunner().invoke(main, list(args), env=env)


def test_cli_writes_take_attempt(valkey_url: str, cli_namespace: str) -> None:
    clock = FakeClock()
    with Tracker(
        redis.Redis.from_url(valkey_url), Settings(namespace=cli_namespace), clock=clock
    ) as store:
        before = superseded(store, clock, "job-1")
        for args in (
            ("set", "job-1", "--percent", "90", "--attempt", "1"),
            ("success", "job-1", "--attempt", "1"),
            ("fail", "job-1", "late", "--attempt", "1"),
        ):
            result = _cli(valkey_url, cli_namespace, *args)
            assert result.exit_code == 3, (args, result.output)
            assert "attempt 1 was superseded" in result.stderr
            assert "current attempt is 2" in result.stderr
        assert store.track_get("job-1") == before
        shown = _cli(valkey_url, cli_namespace, "set", "job-1", "--percent", "70", "--attempt", "2")
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["percent"] == 70
        done = _cli(valkey_url, cli_namespace, "success", "job-1", "--attempt", "2")
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["state"] == "success"


def test_cli_attempt_must_be_positive(valkey_url: str, cli_namespace: str) -> None:
    result = _cli(valkey_url, cli_namespace, "set", "job-1", "--percent", "1", "--attempt", "0")
    assert result.exit_code == 2
    assert "attempt" in result.stderr


def test_both_clients_take_the_attempt_keyword() -> None:
    sync, twin = memory_tracker(), memory_async_tracker()
    try:
        for name in ("track_set", "success", "fail"):
            assert "attempt" in inspect.signature(getattr(sync, name)).parameters, name
            assert "attempt" in inspect.signature(getattr(twin, name)).parameters, name
    finally:
        sync.close()
        asyncio.run(twin.close())


# --- progress() and the tracked worker -------------------------------------------------------


def test_progress_names_the_attempt_and_raises_job_superseded(
    fenced: Tracker, clock: FakeClock
) -> None:
    before = superseded(fenced, clock)
    token = context.enter(fenced, "job-1", 1)
    try:
        with pytest.raises(JobSuperseded) as refused:
            context.progress(percent=99, desc="attempt 1 woke up")
    finally:
        context.leave(token)
    assert refused.value.attempt == 2
    assert fenced.track_get("job-1") == before
    token = context.enter(fenced, "job-1", 2)
    try:
        context.progress(percent=60)
    finally:
        context.leave(token)
    assert fenced.track_get("job-1").percent == 60


@pytest.fixture
def queue(make_real_tracker: MakeTracker) -> Iterator[str]:
    """A queue name of this test's own; its RQ keys are deleted after it."""
    name = "q-" + uuid.uuid4().hex[:12]
    yield name
    client = make_real_tracker().client
    client.srem("rq:queues", f"rq:queue:{name}")
    for key in client.scan_iter(match=f"rq:*{name}*", count=1000):
        client.delete(key)


def _worker_process(tracker: Tracker, queue: str) -> subprocess.Popen[bytes]:
    """``tracker worker QUEUE --burst``: a forking worker, in a process of its own."""
    kwargs = tracker.client.connection_pool.connection_kwargs
    url = (
        f"unix://{kwargs['path']}"
        if "path" in kwargs
        else f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"
    )
    env = {
        **os.environ,
        "TRACKER_REDIS_URL": url,
        "TRACKER_NAMESPACE": tracker.settings.namespace,
        "PYTHONPATH": str(Path(__file__).parent),
    }
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("tracker")), "worker", queue, "--burst"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.mark.rq
@pytest.mark.slow
@pytest.mark.parametrize("then", ["report", "finish"])
def test_a_stopped_then_resumed_work_horse_never_writes_into_the_next_attempt(
    real_tracker: Tracker, queue: str, then: str
) -> None:
    """The work horse is frozen (SIGSTOP) past its reservation, reaped, and the job is
    started again (attempt 2, here by the test as another worker would); then it
    resumes, reporting progress or finishing. Nothing it sends is accepted."""
    tracker, key = real_tracker, f"pause-{queue}"
    jid = tracker.enqueue(jobs.pause_point, (key, then), queue=queue, reserve_for=1)
    process = _worker_process(tracker, queue)
    horse = 0
    try:
        horse = int(wait_until(lambda: tracker.client.get(key), timeout=30))
        assert tracker.track_get(jid).desc == "attempt 1"
        os.kill(horse, signal.SIGSTOP)
        # reaped here, or by the worker's own maintenance, whichever comes first
        wait_until(lambda: tracker.reap() or tracker.state(jid) is State.FAILED, timeout=10)
        assert tracker.state(jid) is State.FAILED
        assert tracker.start(jid, reserve_for=60).attempts == 2
        tracker.track_set(jid, percent=50, desc="attempt 2", attempt=2)
        second = tracker.track_get(jid)
        tracker.client.set(key + ":go", 1, ex=60)
        os.kill(horse, signal.SIGCONT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(horse, signal.SIGKILL)
            process.wait(timeout=10)
        tracker.client.delete(key, key + ":go")
    track = tracker.track_get(jid)
    assert track == second
    assert (track.state, track.attempts, track.percent, track.desc) == (
        State.WORKING,
        2,
        50,
        "attempt 2",
    )
    assert [e["message"] for e in track.errors] == ["reservation expired"]


@pytest.mark.rq
def test_the_worker_stops_a_job_whose_attempt_was_superseded(
    real_tracker: Tracker, queue: str
) -> None:
    """While the job runs (never reporting), its attempt is failed and the job started
    again elsewhere: the worker's watcher stops it, as it stops a cancelled job, and
    reports nothing for it."""
    tracker = real_tracker
    jid = tracker.enqueue(jobs.ignore_cancel, (20,), queue=queue)

    def supersede() -> None:
        wait_until(lambda: tracker.state(jid) is State.WORKING, timeout=10)
        tracker.fail(jid, "lost its worker", attempt=1)
        tracker.start(jid, reserve_for=60)

    thread = threading.Thread(target=supersede)
    thread.start()
    started = time.monotonic()
    worker = TrackedSimpleWorker(
        [rq.Queue(queue, connection=tracker.client)], connection=tracker.client, tracker=tracker
    )
    worker.work(burst=True, logging_level="WARNING")
    thread.join()
    assert time.monotonic() - started < 10  # stopped, far short of its 20 s
    track = tracker.track_get(jid)
    assert (track.state, track.attempts) == (State.WORKING, 2)
    assert [e["message"] for e in track.errors] == ["lost its worker"]
