"""Faults during a run (SPEC section 10): Redis killed (-9, restarted from its AOF) or
paused, a worker or its work horse killed, a worker giving up in an outage, a job dequeued
by a worker that died before its start. Each run ends with every job done, none released
twice, and the workers alive (but those the test ended, or expected to end).

Each test runs its own redis-server (AOF, ``appendfsync everysec``) on a unix socket, and
``tracker worker`` processes that run the maintenance too. Jobs note each run in a file,
outside the Redis the test crashes: a job may run twice (a report lost in an outage, then
the job reaped and retried), which is allowed (at least once) and printed, not refused.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jobs
import pytest
import redis
from conftest import wait_until

from tracker import Settings, State, Tracker

HERE = Path(__file__).parent
REDIS_SERVER = shutil.which("redis-server")
HANDOFF_TIMEOUT = 2

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(REDIS_SERVER is None, reason="needs redis-server on PATH"),
]


class RedisServer:
    """A redis-server of the test's own, with an append-only file synced every second."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [
                *(REDIS_SERVER, "--port", "0", "--unixsocket", str(self.socket)),
                *("--unixsocketperm", "700", "--dir", str(self.directory), "--save", ""),
                *("--appendonly", "yes", "--appendfsync", "everysec"),
                *("--logfile", str(self.directory / "redis.log")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._ready, timeout=30, interval=0.05)

    def _ready(self) -> bool:
        try:
            with redis.Redis(unix_socket_path=str(self.socket)) as client:
                return bool(client.ping())
        except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    # a short directory: a unix socket's path holds at most about 100 bytes
    directory = Path(tempfile.mkdtemp(prefix="tf-"))
    redis_server = RedisServer(directory)
    redis_server.start()
    try:
        yield redis_server
    finally:
        redis_server.stop()
        shutil.rmtree(directory, ignore_errors=True)


class Workers:
    """``tracker worker`` processes on one queue; whatever is left is killed at the end."""

    def __init__(self, server: RedisServer, namespace: str, queue: str, logs: Path) -> None:
        self.server, self.queue, self.logs = server, queue, logs
        self.env = {
            **os.environ,
            "TRACKER_REDIS_URL": server.url,
            "TRACKER_NAMESPACE": namespace,
            "TRACKER_HANDOFF_TIMEOUT": str(HANDOFF_TIMEOUT),
            "TRACKER_OUTAGE_GRACE": "60",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.ended: list[subprocess.Popen[bytes]] = []  # by the test, or as it expects

    def start(self, *options: str, **env: str) -> subprocess.Popen[bytes]:
        log = self.logs / f"worker-{len(self.processes)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(Path(sys.executable).with_name("tracker")), "worker", self.queue, *options],
                env={**self.env, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def log(self, process: subprocess.Popen[bytes]) -> str:
        return (self.logs / f"worker-{self.processes.index(process)}.log").read_text()

    def horses(self, process: subprocess.Popen[bytes]) -> list[int]:
        """A worker's work horses (each runs in a process group of its own)."""
        found = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
        return [int(pid) for pid in found.stdout.split()]

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        self.ended.append(process)
        for pid in [process.pid, *self.horses(process)]:
            os.kill(pid, signal.SIGKILL)
        process.wait(timeout=10)

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [process for process in self.processes if process.poll() is None]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                self.kill(process)


@pytest.fixture
def workers(server: RedisServer, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(server, "t-" + uuid.uuid4().hex[:12], "q-" + uuid.uuid4().hex[:12], tmp_path)
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture
def tracker(workers: Workers) -> Iterator[Tracker]:
    """The test's own client, in the workers' namespace."""
    namespace = workers.env["TRACKER_NAMESPACE"]
    settings = Settings(namespace=namespace, handoff_timeout=HANDOFF_TIMEOUT)
    with Tracker.from_url(workers.server.url, settings) as client:
        yield client


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """The file where jobs note their runs."""
    return tmp_path / "runs"


def register_workload(
    tracker: Tracker, queue: str, runs: Path, rng: random.Random, **common: Any
) -> list[str]:
    """A fan-out of 60, 8 chains of 5, a batch of 40 and 100 single jobs (about 250),
    each noting its run and taking 20 to 100 ms, some of them a second. Registered with
    every write synced, so that the crash to come cannot lose a registration."""
    tracker.client.config_set("appendfsync", "always")
    every: list[str] = []

    def job(**fields: Any) -> str:
        seconds = 1.0 if rng.random() < 0.05 else rng.uniform(0.02, 0.1)
        jid = tracker.enqueue(
            jobs.record_run, (str(runs), seconds), queue=queue, **common, **fields
        )
        every.append(jid)
        return jid

    root = job()
    for _ in range(60):
        job(prerequisites=[root])
    for _ in range(8):
        link = job()
        for _ in range(4):
            link = job(prerequisites=[link])
    batch = "batch-" + uuid.uuid4().hex[:8]
    tracker.register(batch, batch=True)
    every.append(batch)
    for _ in range(40):
        job(parent=batch)
    tracker.seal(batch)
    for _ in range(100):
        job()
    tracker.client.config_set("appendfsync", "everysec")
    return every


def count(tracker: Tracker, jids: Sequence[str], state: State) -> int:
    pipe = tracker.client.pipeline(transaction=False)
    for jid in jids:
        pipe.hget(tracker.keys.job(jid), "s")
    return sum(1 for got in pipe.execute() if got == state.value.encode())


def answering(tracker: Tracker, check: Any) -> Any:
    """``check()``, or False while Redis does not answer (the test's own client)."""
    try:
        return check()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return False
    except Exception as exc:  # a StoreUnavailable from the tracker's own calls
        if "did not answer" in str(exc):
            return False
        raise


def releases(tracker: Tracker) -> tuple[Counter[str], int]:
    """Per jid, the events that moved it into ``enqueued``; and the hand-offs made again
    (events of a job that stays enqueued)."""
    found: Counter[str] = Counter()
    again = 0
    for event in tracker.events("0", 100_000):
        if event.track.state is State.ENQUEUED and event.was is State.ENQUEUED:
            again += 1
        elif event.track.state is State.ENQUEUED and event.change:
            found[event.track.jid] += 1
    return found, again


def finish_and_check(
    tracker: Tracker, workers: Workers, every: Sequence[str], runs: Path, fault: str
) -> None:
    """Wait for every job to succeed; then no release twice and every worker alive.
    Prints the counts of the run (for the report of repeated runs)."""

    def done() -> bool:
        return answering(tracker, lambda: count(tracker, every, State.SUCCESS) == len(every))

    try:
        wait_until(done, timeout=90, interval=0.2)
    finally:
        ran = Counter(runs.read_text().split()) if runs.exists() else Counter()
        succeeded = answering(tracker, lambda: count(tracker, every, State.SUCCESS))
        released, again = answering(tracker, lambda: releases(tracker)) or (Counter(), 0)
        twice = sorted(jid for jid, n in released.items() if n > 1)
        print(
            f"\nfault-run {fault}: jobs={len(every)} succeeded={succeeded} "
            f"lost={len(every) - (succeeded or 0)} double_releases={len(twice)} "
            f"handed_again={again} ran_twice={sum(1 for n in ran.values() if n > 1)}"
        )
    assert twice == []
    assert all(released[jid] == 1 for jid in every if not jid.startswith("batch-"))
    dead = [p for p in workers.processes if p.poll() is not None and p not in workers.ended]
    assert dead == [], "\n".join(workers.log(p) for p in dead)


def noticed_outage(workers: Workers) -> bool:
    """Whether every live worker has logged that Redis stopped answering."""
    return all("Redis does not answer" in workers.log(p) for p in workers.alive())


def started(tracker: Tracker, every: Sequence[str], share: float) -> bool:
    """Whether a share of the jobs succeeded and some job is running."""
    working = count(tracker, every, State.WORKING)
    return working > 0 and count(tracker, every, State.SUCCESS) >= share * len(every)


def under_way(tracker: Tracker, workers: Workers, runs: Path, **common: Any) -> list[str]:
    """The workload registered and a third of it done by a forking and a simple worker,
    with some job running; returns the workload's jids."""
    every = register_workload(tracker, workers.queue, runs, random.Random(), **common)
    workers.start()
    workers.start("--simple")
    wait_until(lambda: started(tracker, every, 1 / 3), timeout=60)
    return every


def kill_and_restart(server: RedisServer, workers: Workers, also: Any = lambda: True) -> None:
    """Kill Redis; restart it from its AOF once the workers noticed, ``also()`` holds, and
    it was down long enough for hand-offs to fall due meanwhile, as in a real restart."""
    server.kill()
    killed_at = time.monotonic()
    wait_until(
        lambda: (
            noticed_outage(workers)
            and also()
            and time.monotonic() - killed_at > HANDOFF_TIMEOUT + 1
        ),
        timeout=30,
    )
    server.start()


def test_redis_killed_mid_run_and_restarted_from_its_aof(
    server: RedisServer, workers: Workers, tracker: Tracker, runs: Path
) -> None:
    every = under_way(tracker, workers, runs)
    kill_and_restart(server, workers)
    finish_and_check(tracker, workers, every, runs, "redis-kill")


def test_redis_killed_mid_run_while_a_busy_worker_gives_up(
    server: RedisServer, workers: Workers, tracker: Tracker, runs: Path
) -> None:
    # the first fault report's case: a worker dies in the outage with a job in hand (a
    # short reservation, so that the reaper soon fails what it ran)
    every = under_way(tracker, workers, runs, reserve_for=4)
    quitter = workers.start(TRACKER_OUTAGE_GRACE="1")
    wait_until(lambda: workers.horses(quitter), timeout=30)
    kill_and_restart(server, workers, also=lambda: quitter.poll() is not None)
    assert quitter.returncode == 4, workers.log(quitter)
    workers.ended.append(quitter)
    finish_and_check(tracker, workers, every, runs, "redis-kill-quitter")


def test_redis_paused_mid_run(
    server: RedisServer, workers: Workers, tracker: Tracker, runs: Path
) -> None:
    every = under_way(tracker, workers, runs)
    server.signal(signal.SIGSTOP)
    time.sleep(HANDOFF_TIMEOUT + 1)  # the length of the pause: nothing to wait for
    server.signal(signal.SIGCONT)
    finish_and_check(tracker, workers, every, runs, "redis-pause")


def test_a_killed_work_horse_and_a_killed_worker(
    server: RedisServer, workers: Workers, tracker: Tracker, runs: Path
) -> None:
    # a short reservation, so that the reaper soon fails what the killed ones ran
    every = register_workload(tracker, workers.queue, runs, random.Random(), reserve_for=3)
    first, second = workers.start(), workers.start()
    wait_until(lambda: started(tracker, every, 1 / 4) and workers.horses(first), timeout=60)
    for horse in workers.horses(first):
        os.kill(horse, signal.SIGKILL)
    wait_until(lambda: started(tracker, every, 1 / 2) and workers.horses(second), timeout=60)
    workers.kill(second)
    workers.start()  # its replacement
    finish_and_check(tracker, workers, every, runs, "worker-kill")


def test_a_job_dequeued_by_a_worker_that_died_before_its_start_is_run(
    server: RedisServer, workers: Workers, tracker: Tracker, runs: Path
) -> None:
    jid = tracker.enqueue(jobs.record_run, (str(runs), 0), queue=workers.queue)
    rq_queue = f"rq:queue:{workers.queue}"
    assert tracker.client.lmove(rq_queue, rq_queue + ":intermediate") == jid.encode()
    workers.start()
    wait_until(lambda: tracker.state(jid) is State.SUCCESS, timeout=30, interval=0.1)
    assert tracker.track_get(jid).attempts == 1
    assert runs.read_text().split() == [jid]
    events = tracker.events("0", 100_000)
    assert any(e.was is e.track.state is State.ENQUEUED for e in events), "not handed again"
    assert workers.alive() == workers.processes


@pytest.mark.parametrize("options", [(), ("--simple",)], ids=["forking", "simple"])
def test_a_busy_worker_gives_up_past_the_outage_grace_with_exit_code_4(
    server: RedisServer, workers: Workers, tracker: Tracker, options: tuple[str, ...]
) -> None:
    jid = tracker.enqueue(jobs.ignore_cancel, (60,), queue=workers.queue)
    worker = workers.start(*options, TRACKER_OUTAGE_GRACE="2")
    wait_until(lambda: tracker.state(jid) is State.WORKING)
    horses = workers.horses(worker)
    server.kill()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker did not give up:\n" + workers.log(worker))
    assert worker.returncode == 4, workers.log(worker)
    last = workers.log(worker).strip().splitlines()[-1]
    assert last == (
        "tracker: Redis did not answer for 2 s (TRACKER_OUTAGE_GRACE): the worker stops"
    )
    wait_until(lambda: not any(_exists(pid) for pid in horses))  # its job went with it


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
