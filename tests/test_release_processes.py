"""Exactly-once release (SPEC section 4) under real concurrency and crashes, on real servers.

Worker processes finish prerequisites in random order while some of them are SIGKILLed;
big fan-outs go out in bounded chunks, and one left half done is finished by whoever
drains next. Every release is counted twice where the stream can hold it: in the
dependent's RQ queue, where the releasing script pushed it, and in the namespace's event
stream, as the one event that set it ``enqueued``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from conftest import MakeTracker, wait_until

import tracker as tracker_module
from tracker import State, Track, Tracker
from tracker.calls import EVENTS_KEPT, GRAPH_BUDGET, Call

PAYLOAD = {"func": "os.path.join", "args": ["x"]}
PREREQUISITES = 1_000
DEPENDENTS = 50  # each waits for 20 to 200 of the prerequisites
HUBS, HUB_FAN_OUT = 2, 300  # prerequisites whose own release takes several script calls
WORKERS = 8

#: A worker process: reads its steps (JSON on stdin), waits for the start signal so that
#: all workers begin at once, then runs them. A refused start is expected (another worker
#: holds the job or finished it); any other error fails the process.
WORKER = """
import json, sys
from tracker import Conflict, Settings, Tracker

url, settings, ready, gate = sys.argv[1:]
steps = json.load(sys.stdin)
with Tracker.from_url(url, Settings(**json.loads(settings))) as tracker:
    tracker.client.incr(ready)
    if tracker.client.blpop([gate], timeout=60) is None:
        sys.exit("no start signal")
    for op, args, kwargs in steps:
        try:
            getattr(tracker, op)(*args, **kwargs)
        except Conflict:
            if op != "start":
                raise
"""

#: One call a worker makes: (Tracker method, positional args, keyword args).
Step = tuple[str, list[Any], dict[str, Any]]


def server_url(tracker: Tracker) -> str:
    """The URL of ``tracker``'s server, for other processes to connect with."""
    kwargs = tracker.client.connection_pool.connection_kwargs
    db = kwargs.get("db") or 0
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={db}"
    auth = ""
    if kwargs.get("password"):
        auth = f"{quote(kwargs.get('username') or '')}:{quote(kwargs['password'])}@"
    return f"redis://{auth}{kwargs['host']}:{kwargs['port']}/{db}"


class Workers:
    """Worker processes on one tracker's server and namespace: started together, always
    reaped (the fixture kills whatever a failed test left running)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.processes: dict[subprocess.Popen[bytes], Path] = {}

    def start(
        self, tracker: Tracker, plans: Sequence[Sequence[Step]]
    ) -> list[subprocess.Popen[bytes]]:
        """One process per plan; returns once every one of them has begun, at one moment."""
        round_id = uuid.uuid4().hex[:8]
        ready = tracker.keys.prefix + "test:ready:" + round_id
        gate = tracker.keys.prefix + "test:gate:" + round_id
        argv = [sys.executable, "-c", WORKER, server_url(tracker)]
        argv += [json.dumps(asdict(tracker.settings)), ready, gate]
        # the workers import the very tracker this process runs, whatever the directory
        package_root = str(Path(tracker_module.__file__).resolve().parents[1])
        paths = [package_root, *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        started = []
        for n, plan in enumerate(plans):
            log = self.logs / f"worker-{round_id}-{n}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.logs,
                    env=env,
                )
            self.processes[process] = log
            started.append(process)
            assert process.stdin is not None
            process.stdin.write(json.dumps(plan).encode())
            process.stdin.close()

        def all_ready() -> bool:
            exited = any(process.poll() is not None for process in started)
            return exited or int(tracker.client.get(ready) or 0) == len(started)

        wait_until(all_ready, timeout=60)
        for process in started:
            assert process.poll() is None, f"a worker died on startup:\n{self.log(process)}"
        tracker.client.rpush(gate, *["go"] * len(started))
        return started

    def wait(
        self,
        processes: Iterable[subprocess.Popen[bytes]],
        killed: Sequence[subprocess.Popen[bytes]] = (),
    ) -> None:
        """Wait for each to end: well, or (for those in ``killed``) by SIGKILL."""
        for process in processes:
            code = process.wait(timeout=60)
            allowed = {0, -signal.SIGKILL} if process in killed else {0}
            assert code in allowed, f"a worker exited with {code}:\n{self.log(process)}"

    def log(self, process: subprocess.Popen[bytes]) -> str:
        return self.processes[process].read_text(errors="replace")

    def reap(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(tmp_path)
    try:
        yield pool
    finally:
        pool.reap()


@dataclass
class RqQueue:
    """An RQ queue of one test. RQ's keys are shared by every namespace (SPEC section 8),
    so the queue's name is unique and :meth:`delete` removes its keys and no others."""

    client: redis.Redis
    name: str
    jids: list[str] = field(default_factory=list)  # its jobs, queued or not yet

    @property
    def key(self) -> str:
        return "rq:queue:" + self.name

    def queued(self) -> list[str]:
        return [jid.decode() for jid in self.client.lrange(self.key, 0, -1)]

    def delete(self) -> None:
        jobs = ["rq:job:" + jid for jid in {*self.jids, *self.queued()}]
        for start in range(0, len(jobs), 500):
            self.client.delete(*jobs[start : start + 500])
        self.client.delete(self.key)
        self.client.srem("rq:queues", self.key)


@pytest.fixture
def rq_queue() -> Iterator[Callable[[Tracker], RqQueue]]:
    made: list[RqQueue] = []

    def new(tracker: Tracker) -> RqQueue:
        made.append(RqQueue(tracker.client, "q-" + uuid.uuid4().hex))
        return made[-1]

    yield new
    for queue in made:
        queue.delete()


def dependent(queue: RqQueue, prerequisites: Sequence[str]) -> dict[str, Any]:
    """The registration of a job that RQ runs once its prerequisites have succeeded."""
    return {"queue": queue.name, "payload": PAYLOAD, "prerequisites": list(prerequisites)}


def register_all(tracker: Tracker, jobs: Mapping[str, Mapping[str, Any]]) -> None:
    """Register each job, in order, with the very script call ``Tracker.register`` makes;
    pipelined, 2,000 to a round trip."""
    tracker._library.load(tracker.client)  # a pipeline cannot load it on demand
    items = list(jobs.items())
    for start in range(0, len(items), 2000):
        chunk = items[start : start + 2000]
        pipe = tracker.client.pipeline(transaction=False)
        for jid, fields in chunk:
            call = next(tracker.plans.register(jid, **fields))
            tracker._library.queue(pipe, call)
        for (jid, _), reply in zip(chunk, pipe.execute(), strict=True):
            assert reply[:2] == [0, 1], f"{jid} was not created: {reply[:2]}"


def count_script_calls(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """From now on, how many times ``tracker`` calls each script."""
    calls: Counter[str] = Counter()
    call = tracker._library.call

    def counted(client: Any, made: Call) -> Any:
        calls[made.script] += 1
        return call(client, made)

    monkeypatch.setattr(tracker._library, "call", counted)
    return calls


def interrupted(tracker: Tracker, op: str, jid: str, *args: Any) -> int:
    """Run one operation's script call alone, as a process would that died right after it,
    before finishing the fan-out; returns whether it left fan-out work."""
    call = next(getattr(tracker.plans, op)(jid, *args))
    reply = tracker._library.call(tracker.client, call)
    assert reply[0] == 0, reply
    return int(reply[-1])


def stream_id(raw: str) -> tuple[int, int]:
    ms, seq = raw.split("-")
    return int(ms), int(seq)


def state_events(tracker: Tracker) -> dict[str, list[tuple[tuple[int, int], str]]]:
    """Per jid, the events of the stream: (event id, the state it set). Nothing here sends
    TRACK SET, so each event is a write of the job's state: a repeat of one (a second
    success, a second release) counts as much as a change."""
    events: dict[str, list[tuple[tuple[int, int], str]]] = defaultdict(list)
    for event in tracker.events("0", EVENTS_KEPT * 2):
        events[event.track.jid].append((stream_id(event.id), event.track.state.value))
    return events


def states(tracker: Tracker, jids: Sequence[str]) -> Counter[str]:
    """How many of ``jids`` are in each state."""
    pipe = tracker.client.pipeline(transaction=False)
    for jid in jids:
        pipe.hget(tracker.keys.job(jid), "s")
    return Counter(state.decode() if state else "unknown" for state in pipe.execute())


def tracks(tracker: Tracker, jids: Sequence[str]) -> dict[str, Track]:
    pipe = tracker.client.pipeline(transaction=False)
    for jid in jids:
        pipe.hgetall(tracker.keys.job(jid))
    replies = pipe.execute()
    return {jid: tracker.plans.decode(jid, raw) for jid, raw in zip(jids, replies, strict=True)}


def assert_queued_once_each(queue: RqQueue, jids: Iterable[str]) -> None:
    """The RQ queue holds each of ``jids`` exactly once, and nothing else."""
    queued, wanted = Counter(queue.queued()), set(jids)
    twice = sorted(jid for jid, n in queued.items() if n > 1)
    missing, strangers = sorted(wanted - set(queued)), sorted(set(queued) - wanted)
    assert (twice, missing, strangers) == ([], [], []), "queued twice, missing, unexpected"


def assert_released_exactly_once(
    tracker: Tracker, queue: RqQueue, waits_for: Mapping[str, Sequence[str]]
) -> None:
    """Each dependent in ``waits_for`` was handed to RQ once and set ``enqueued`` once,
    after the last of its prerequisites succeeded; each of those succeeded once."""
    client = tracker.client
    assert client.llen(tracker.keys.fanout) == 0, "fan-out work was left undone"
    assert_queued_once_each(queue, waits_for)
    assert client.xlen(tracker.keys.events) < EVENTS_KEPT, "the stream was trimmed"
    events = state_events(tracker)
    succeeded: dict[str, tuple[int, int]] = {}
    for jid in {p for prerequisites in waits_for.values() for p in prerequisites}:
        successes = [at for at, state in events[jid] if state == "success"]
        assert len(successes) == 1, f"prerequisite {jid} succeeded {len(successes)} times"
        succeeded[jid] = successes[0]
    for jid, prerequisites in waits_for.items():
        released = [at for at, state in events[jid] if state == "enqueued"]
        assert len(released) == 1, f"{jid} was released {len(released)} times"
        last = max(prerequisites, key=succeeded.__getitem__)
        assert released[0] > succeeded[last], f"{jid} was released before {last} succeeded"
    assert states(tracker, list(waits_for)) == {"enqueued": len(waits_for)}


@dataclass
class Graph:
    prerequisites: list[str]
    waits_for: dict[str, list[str]]  # each dependent's prerequisites


def dependency_graph(rng: random.Random, namespace: str) -> Graph:
    """1,000 prerequisites; 50 dependents each waiting for a random 20 to 200 of them, and
    two hubs among the prerequisites with 300 dependents each. Dependents have RQ payloads,
    so their jids carry the namespace: RQ's job keys are shared."""
    prerequisites = [f"pre-{n}" for n in range(PREREQUISITES)]
    waits_for = {
        f"{namespace}-dep-{n}": rng.sample(prerequisites, rng.randint(20, 200))
        for n in range(DEPENDENTS)
    }
    for hub in rng.sample(prerequisites, HUBS):
        waits_for.update({f"{namespace}-{hub}-{n}": [hub] for n in range(HUB_FAN_OUT)})
    return Graph(prerequisites, waits_for)


def deal(
    rng: random.Random, prerequisites: Sequence[str], workers: int, twice: float = 0.0
) -> list[list[Step]]:
    """Each prerequisite to one worker, in random order (a share ``twice`` also to another
    worker at about the same point, so that two race to finish it); about half are started
    before they succeed, the others succeed straight from enqueued."""
    plans: list[list[Step]] = [[] for _ in range(workers)]
    for n, jid in enumerate(rng.sample(list(prerequisites), len(prerequisites))):
        owners = [n % workers]
        if rng.random() < twice:
            owners.append((owners[0] + rng.randrange(1, workers)) % workers)
        for owner in owners:
            if rng.random() < 0.5:
                plans[owner].append(("start", [jid], {}))
            plans[owner].append(("success", [jid], {}))
    return plans


def kill_at_random(
    tracker: Tracker,
    processes: Sequence[subprocess.Popen[bytes]],
    rng: random.Random,
    kills: int,
) -> list[subprocess.Popen[bytes]]:
    """SIGKILL ``kills`` of the running ``processes``, each at a random moment of the run:
    once a random number of prerequisites have succeeded, plus a few random milliseconds."""
    succeeded = tracker.keys.state(State.SUCCESS)
    killed: list[subprocess.Popen[bytes]] = []

    def reached(count: int) -> Callable[[], bool]:
        def check() -> bool:
            if all(process.poll() is not None for process in processes):
                return True
            return int(tracker.client.zcard(succeeded)) >= count

        return check

    for count in sorted(rng.sample(range(50, 500), kills)):
        wait_until(reached(count), timeout=60, interval=0.002)
        time.sleep(rng.uniform(0, 0.005))
        running = [p for p in processes if p.poll() is None and p not in killed]
        if running:
            victim = rng.choice(running)
            os.kill(victim.pid, signal.SIGKILL)
            killed.append(victim)
    return killed


# --- processes finishing prerequisites ------------------------------------------------


@pytest.mark.slow
def test_eight_processes_finishing_prerequisites_release_each_dependent_exactly_once(
    make_real_tracker: MakeTracker,
    rq_queue: Callable[[Tracker], RqQueue],
    workers: Workers,
) -> None:
    tracker = make_real_tracker()
    queue = rq_queue(tracker)
    rng = random.Random(1)
    graph = dependency_graph(rng, tracker.settings.namespace)
    queue.jids.extend(graph.waits_for)
    fields = {jid: dependent(queue, waits) for jid, waits in graph.waits_for.items()}
    order = rng.sample(list(fields), len(fields))
    third = len(order) // 3
    register_all(tracker, {jid: fields[jid] for jid in order[:third]})  # before they exist
    register_all(tracker, {jid: {} for jid in graph.prerequisites})
    register_all(tracker, {jid: fields[jid] for jid in order[third : 2 * third]})
    plans = deal(rng, graph.prerequisites, WORKERS, twice=0.1)
    for jid in order[2 * third :]:  # the workers register the rest while they work
        plan = rng.choice(plans)
        plan.insert(rng.randrange(len(plan) + 1), ("register", [jid], fields[jid]))

    workers.wait(workers.start(tracker, plans))

    assert_released_exactly_once(tracker, queue, graph.waits_for)


@pytest.mark.slow
def test_workers_killed_mid_run_and_their_replacements_release_each_dependent_exactly_once(
    make_real_tracker: MakeTracker,
    rq_queue: Callable[[Tracker], RqQueue],
    workers: Workers,
) -> None:
    tracker = make_real_tracker()
    queue = rq_queue(tracker)
    rng = random.Random(2)
    graph = dependency_graph(rng, tracker.settings.namespace)
    queue.jids.extend(graph.waits_for)
    fields = {jid: dependent(queue, waits) for jid, waits in graph.waits_for.items()}
    order = rng.sample(list(fields), len(fields))
    register_all(tracker, {jid: fields[jid] for jid in order[: len(order) // 2]})
    register_all(tracker, {jid: {} for jid in graph.prerequisites})
    register_all(tracker, {jid: fields[jid] for jid in order[len(order) // 2 :]})

    first = workers.start(tracker, deal(rng, graph.prerequisites, WORKERS, twice=0.1))
    killed = kill_at_random(tracker, first, rng, kills=3)
    workers.wait(first, killed)
    assert any(process.returncode == -signal.SIGKILL for process in killed), "no kill landed"
    assert states(tracker, graph.prerequisites)["success"] < PREREQUISITES

    # replacements go through every prerequisite: a success already recorded is a no-op
    workers.wait(workers.start(tracker, deal(rng, graph.prerequisites, WORKERS // 2)))
    tracker.drain()  # what a killed worker left of a fan-out, as maintenance would

    assert_released_exactly_once(tracker, queue, graph.waits_for)


# --- big fan-outs -----------------------------------------------------------------------


@pytest.mark.slow
def test_twenty_thousand_dependents_are_released_exactly_once_in_bounded_chunks(
    make_real_tracker: MakeTracker,
    rq_queue: Callable[[Tracker], RqQueue],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracker = make_real_tracker()
    queue = rq_queue(tracker)
    tracker.register("root")
    dependents = [f"{tracker.settings.namespace}-dep-{n}" for n in range(20_000)]
    queue.jids.extend(dependents)
    register_all(tracker, {jid: dependent(queue, ["root"]) for jid in dependents})
    calls = count_script_calls(tracker, monkeypatch)

    tracker.success("root")

    # 20,000 releases overflow the (capped) event stream: they are counted in the RQ queue
    assert calls["success"] == 1
    assert sum(calls.values()) >= len(dependents) / GRAPH_BUDGET  # no call did more
    assert_queued_once_each(queue, dependents)
    assert states(tracker, dependents) == {"enqueued": len(dependents)}


def test_a_fan_out_cut_short_is_finished_exactly_once_by_another_process(
    make_real_tracker: MakeTracker,
    rq_queue: Callable[[Tracker], RqQueue],
    workers: Workers,
) -> None:
    tracker = make_real_tracker()
    queue = rq_queue(tracker)
    tracker.register("root")
    dependents = [f"{tracker.settings.namespace}-dep-{n}" for n in range(1_000)]
    queue.jids.extend(dependents)
    register_all(tracker, {jid: dependent(queue, ["root"]) for jid in dependents})

    assert interrupted(tracker, "success", "root") == 1  # its process died right after
    assert 0 < len(queue.queued()) <= GRAPH_BUDGET  # the first chunk went out, the rest waits
    assert tracker.client.llen(tracker.keys.fanout) > 0
    workers.wait(workers.start(tracker, [[("drain", [], {})]]))
    assert tracker.drain() == 1  # nothing is left: one call that finds nothing
    assert tracker.success("root").state is State.SUCCESS  # a late repeat: a no-op

    assert_released_exactly_once(tracker, queue, {jid: ["root"] for jid in dependents})


def test_two_threads_draining_at_once_release_each_dependent_exactly_once(
    make_real_tracker: MakeTracker, rq_queue: Callable[[Tracker], RqQueue]
) -> None:
    tracker = make_real_tracker()
    queue = rq_queue(tracker)
    rng = random.Random(3)
    roots = ["root-a", "root-b", "root-c"]
    register_all(tracker, {root: {} for root in roots})
    waits_for = {
        f"{tracker.settings.namespace}-dep-{n}": rng.sample(roots, rng.randint(1, len(roots)))
        for n in range(3_000)
    }
    queue.jids.extend(waits_for)
    register_all(tracker, {jid: dependent(queue, waits) for jid, waits in waits_for.items()})
    for root in roots:  # three fan-outs, each cut short after its first chunk
        assert interrupted(tracker, "success", root) == 1
    assert len(queue.queued()) < len(waits_for)

    url, barrier = server_url(tracker), threading.Barrier(2)

    def drain() -> int:
        with Tracker.from_url(url, tracker.settings) as other:
            barrier.wait(timeout=30)
            return other.drain()

    with ThreadPoolExecutor(2) as pool:
        rounds = [pool.submit(drain) for _ in range(2)]
        assert all(done.result(timeout=60) >= 1 for done in rounds)

    assert_released_exactly_once(tracker, queue, waits_for)


# --- failure propagation at scale ----------------------------------------------------


@pytest.mark.slow
def test_a_dead_root_kills_five_thousand_dependents_in_chunks_each_once(
    make_real_tracker: MakeTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = make_real_tracker(propagate_failures=True)
    rng = random.Random(4)
    tracker.register("root")
    # a chain 1,000 deep, and 4,000 jobs each waiting for 1 to 3 jobs before it
    chain = [f"chain-{n}" for n in range(1_000)]
    jobs: dict[str, dict[str, Any]] = {
        jid: {"prerequisites": [chain[n - 1] if n else "root"]} for n, jid in enumerate(chain)
    }
    earlier = ["root", *chain]
    for n in range(4_000):
        jid = f"node-{n}"
        jobs[jid] = {"prerequisites": rng.sample(earlier, rng.randint(1, 3))}
        earlier.append(jid)
    register_all(tracker, jobs)
    calls = count_script_calls(tracker, monkeypatch)

    assert tracker.fail("root", "x", retry=False).state is State.DEAD

    assert sum(calls.values()) >= len(jobs) / GRAPH_BUDGET  # in bounded chunks
    assert tracker.client.llen(tracker.keys.fanout) == 0
    for jid, track in tracks(tracker, list(jobs)).items():
        assert track.state is State.DEAD, jid
        assert [(e["type"], e.get("source")) for e in track.errors] == [
            ("PrerequisiteFailed", "root")
        ], jid
    # the newest events are the deaths, all of them still in the (capped) stream
    events = state_events(tracker)
    deaths = Counter(jid for jid in events for _, state in events[jid] if state == "dead")
    assert deaths == Counter(["root", *jobs])
