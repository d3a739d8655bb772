"""Tracking overhead: trivial jobs run by tracker's worker, against plain RQ.

    python bench/worker_overhead.py [--url URL ...] [--rounds 7] [--jobs 5000] [--breakdown]

tracked: ``Tracker.enqueue(noop, queue=Q)`` N times (each job is released into RQ
queue Q at once, by the hand-off stored with its track), then the worker of
``tracker worker --simple --burst Q``, built as the command builds it: a
``TrackedSimpleWorker([Q], connection=tracker.client, tracker=tracker)`` with the
``Maintenance`` thread running beside it.
plain: ``Queue(Q).enqueue(noop)`` N times, then an ``rq.SimpleWorker([Q])``.
``noop`` is ``_common.noop``, a function that does nothing. Both workers use a client
built by ``tracker.store.connect``.

Only the burst runs are timed (RQ's logging at WARNING on both sides), and of them
only the jobs: the worker's teardown, which waits 0 or 1 s at random for its pub/sub
thread, is measured and subtracted (see ``timed_burst``); the whole runs are reported
too. Each round runs every side, the order rotating, each with an RQ queue name (and,
tracked, a tracker namespace) of its own; after each side its keys are deleted (the
namespace, and every RQ key, queue and worker carrying the side's tag). Each side
checks that its N jobs ended well: all ``success`` in the tracker's counts, all in
RQ's finished registry, the queue empty.

``--breakdown`` adds a third side: the tracked worker with its watch thread (the
per-job thread that extends the reservation and watches for a cancel) replaced, in
this process only, by a stand-in that starts no thread. What remains over plain is
the ``start`` and ``success`` calls and the wrapping around the job. Commands per
job and FCALL server time per job come from ``INFO commandstats`` around each run
(on a shared server, other clients' commands blur them). It also times the worker's
two calls alone: ``start`` and ``success`` of 1,000 jobs registered without a
payload, one after the other, with no worker and no RQ (median of 3), the FCALLs'
server time split by command; and counts each side's round trips per job in one
more burst of 500, untimed (every send of a command or a pipeline, patched in).
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis.connection
import rq
from _common import (
    cleanup,
    cleanup_matching,
    command_delta,
    command_stats,
    default_targets,
    machine,
    median,
    namespace,
    noop,
    server_label,
    server_time,
    table,
    timed_burst,
    url_parser,
)

import tracker.worker
from tracker import Settings, Tracker
from tracker.client import connect
from tracker.upkeep import Maintenance
from tracker.worker import TrackedSimpleWorker

TARGET = 0.9


@dataclass
class Measured:
    """One burst: seconds of enqueueing, of the jobs (the run less its teardown) and of
    the teardown; the server's commands meanwhile (name -> calls, usec)."""

    enqueue: float
    jobs: float
    teardown: float
    commands: dict[str, tuple[int, int]]
    sends: int = 0


@dataclass
class Side:
    name: str
    round_: Callable[[str, str, int], Measured]
    runs: list[Measured] = field(default_factory=list)

    def rates(self, n: int) -> list[float]:
        """Jobs per second of each round, teardown left out."""
        return [n / m.jobs for m in self.runs]

    def whole_rates(self, n: int) -> list[float]:
        """Jobs per second of each round's whole burst run."""
        return [n / (m.jobs + m.teardown) for m in self.runs]

    def per_job(self, n: int) -> tuple[float, float]:
        """Median commands per job, and median FCALL server time per job (us)."""
        calls = [
            sum(c for name, (c, _) in m.commands.items() if name != "info") / n for m in self.runs
        ]
        fcall = [m.commands.get("fcall", (0, 0))[1] / n for m in self.runs]
        return median(calls), median(fcall)


#: Set to count what the bursts send (see :func:`counted_sends`); off when timing.
COUNT_SENDS = False


@contextlib.contextmanager
def counted_sends() -> Iterator[list[int]]:
    """Count the sends of every connection of this process: one per command, one per
    pipeline, so the round trips (and the few of the Maintenance thread, one run a
    second)."""
    count = [0]
    send = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        count[0] += 1
        send(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield count
    finally:
        redis.connection.AbstractConnection.send_packed_command = send  # type: ignore[method-assign]


def _burst(client: Any, worker: Any) -> tuple[float, float, dict[str, tuple[int, int]], int]:
    before = command_stats(client)
    with counted_sends() if COUNT_SENDS else contextlib.nullcontext([0]) as sends:
        run, teardown = timed_burst(worker)
    return run - teardown, teardown, command_delta(before, command_stats(client)), sends[0]


def tracked_round(url: str, tag: str, n: int) -> Measured:
    """Enqueue ``n`` tracked jobs, and run them as ``tracker worker --simple`` would."""
    settings = Settings(namespace=namespace())
    tracker = Tracker.from_url(url, settings)
    try:
        queue = rq.Queue(f"{tag}-q", connection=tracker.client)
        start = time.perf_counter()
        for i in range(n):
            tracker.enqueue(noop, jid=f"{tag}-{i:05d}", queue=queue.name)
        enqueued = time.perf_counter() - start
        assert queue.count == n, queue.count
        worker = TrackedSimpleWorker(
            [queue], connection=tracker.client, tracker=tracker, name=f"{tag}-w"
        )
        maintenance = Maintenance(tracker)
        maintenance.start()
        try:
            jobs, teardown, commands, sends = _burst(tracker.client, worker)
        finally:
            maintenance.stop()
        states = tracker.stats().states
        assert states == {"success": n}, states
        assert queue.count == 0 and queue.finished_job_registry.count == n
        return Measured(enqueued, jobs, teardown, commands, sends)
    finally:
        cleanup(tracker.client, settings.namespace)
        cleanup_matching(tracker.client, tag)
        tracker.close()


def plain_round(url: str, tag: str, n: int) -> Measured:
    """Enqueue ``n`` plain RQ jobs, and run them with a plain ``SimpleWorker``."""
    client = connect(url)
    try:
        queue = rq.Queue(f"{tag}-q", connection=client)
        start = time.perf_counter()
        for i in range(n):
            queue.enqueue(noop, job_id=f"{tag}-{i:05d}")
        enqueued = time.perf_counter() - start
        assert queue.count == n, queue.count
        worker = rq.SimpleWorker([queue], connection=client, name=f"{tag}-w")
        jobs, teardown, commands, sends = _burst(client, worker)
        assert queue.count == 0 and queue.finished_job_registry.count == n
        return Measured(enqueued, jobs, teardown, commands, sends)
    finally:
        cleanup_matching(client, tag)
        client.close()


class _NoWatch:
    """Stands in for ``tracker.worker._Watcher``: starts no thread, so it neither extends
    the reservation nor watches for a cancel. For measuring what the thread costs."""

    def __init__(self, *args: object) -> None:
        pass

    def start(self) -> None:
        pass

    def watch(self, *args: object) -> None:
        pass

    def release(self) -> None:
        pass


def unwatched_round(url: str, tag: str, n: int) -> Measured:
    """:func:`tracked_round` without the worker's watch thread."""
    watcher = tracker.worker._Watcher
    tracker.worker._Watcher = _NoWatch  # type: ignore[misc, assignment]
    try:
        return tracked_round(url, tag, n)
    finally:
        tracker.worker._Watcher = watcher  # type: ignore[misc]


def lifecycle_calls(url: str, n: int) -> tuple[float, float, dict[str, tuple[int, int]]]:
    """The tracked worker's two calls alone, with no worker and no RQ: ``start`` and
    ``success`` of ``n`` jobs registered without a payload, one after the other.
    Returns seconds and client CPU seconds per job, and the server's commands."""
    settings = Settings(namespace=namespace())
    tracker = Tracker.from_url(url, settings)
    try:
        jids = [f"job-{i:05d}" for i in range(n)]
        for jid in jids:
            tracker.register(jid)
        before = command_stats(tracker.client)
        cpu = time.process_time()
        start = time.perf_counter()
        for jid in jids:
            tracker.start(jid)
            tracker.success(jid)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
        return seconds / n, cpu / n, command_delta(before, command_stats(tracker.client))
    finally:
        cleanup(tracker.client, settings.namespace)
        tracker.close()


def round_trips(url: str, sides: list[Side], n: int = 500) -> str:
    """One more burst per side, untimed, its sends counted; sends per job."""
    global COUNT_SENDS
    COUNT_SENDS = True
    try:
        counts = [side.round_(url, f"bw{uuid.uuid4().hex[:8]}", n).sends / n for side in sides]
    finally:
        COUNT_SENDS = False
    return ", ".join(f"{side.name} {count:.1f}" for side, count in zip(sides, counts, strict=True))


def run(url: str, rounds: int, n: int, sides: list[Side]) -> None:
    run_tag = "bw" + uuid.uuid4().hex[:8]
    for side in sides:  # warm up: imports, FUNCTION LOAD, RQ's first-use paths
        side.round_(url, f"{run_tag}-warm{sides.index(side)}", 100)
    for r in range(rounds):
        k = r % len(sides)
        line = []
        for side in sides[k:] + sides[:k]:
            measured = side.round_(url, f"{run_tag}-{r}-{sides.index(side)}", n)
            side.runs.append(measured)
            line.append(f"{side.name} {measured.jobs:.2f} s (+{measured.teardown:.2f})")
        print(f"  round {r + 1}: " + ", ".join(line), flush=True)


def main() -> int:
    parser = url_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per side (default 7)")
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per burst (default 5000)")
    parser.add_argument(
        "--breakdown", action="store_true", help="add a side without the watch thread"
    )
    options = parser.parse_args()
    n = options.jobs
    print(f"machine: {machine()}; rq {rq.__version__}; {options.rounds} rounds of {n:,} jobs")
    print("jobs' seconds per round (+ the teardown's, left out):")
    rows, breakdown = [], []
    with default_targets(options.url) as urls:
        for url in urls:
            label = server_label(url)
            print(f"\n{label}:")
            tracked = Side("tracked", tracked_round)
            plain = Side("plain", plain_round)
            sides = [tracked, plain]
            if options.breakdown:
                sides.insert(1, Side("tracked, no watch thread", unwatched_round))
            run(url, options.rounds, n, sides)
            if options.breakdown:
                print(f"  round trips per job (sends, 500 jobs): {round_trips(url, sides)}")
                lifecycle = [lifecycle_calls(url, 1000) for _ in range(3)]
                seconds = median([s for s, _, _ in lifecycle])
                cpu = median([c for _, c, _ in lifecycle])
                commands = lifecycle[[s for s, _, _ in lifecycle].index(seconds)][2]
                print(
                    f"  start + success alone (no worker, no RQ), per job: {seconds * 1e6:,.0f} us,"
                    f" client CPU {cpu * 1e6:,.0f} us; {server_time(commands, 1000)}"
                )
            ours, theirs = median(tracked.rates(n)), median(plain.rates(n))
            paired = median([a / b for a, b in zip(tracked.rates(n), plain.rates(n), strict=True)])
            whole = median(tracked.whole_rates(n)) / median(plain.whole_rates(n))
            rows.append(
                [
                    label,
                    f"{ours:,.0f}",
                    f"{theirs:,.0f}",
                    f"{ours / theirs:.3f}",
                    f"{paired:.3f}",
                    f"{whole:.3f}",
                    f"{1e6 / ours - 1e6 / theirs:+,.0f}",
                    f">= {TARGET}",
                    "yes" if ours / theirs >= TARGET else "NO",
                ]
            )
            print(
                "  enqueue, median s: "
                + ", ".join(f"{s.name} {median([m.enqueue for m in s.runs]):.2f}" for s in sides)
            )
            for side in sides:
                us = 1e6 / median(side.rates(n))
                calls, fcall = side.per_job(n)
                paired_us = median(
                    [
                        (a.jobs - b.jobs) / n * 1e6
                        for a, b in zip(side.runs, plain.runs, strict=True)
                    ]
                )
                breakdown.append(
                    [
                        label,
                        side.name,
                        f"{us:,.0f}",
                        f"{paired_us:+,.0f}",
                        f"{calls:.1f}",
                        f"{fcall:.0f}",
                    ]
                )
    print(f"\njobs per second (burst run less teardown), medians of {options.rounds} rounds:\n")
    header = ["server", "tracked/s", "plain/s", "ratio", "paired", "whole runs"]
    header += ["us/job more", "target", "met"]
    print(table(header, rows))
    print("\nper job: median us; us more than plain (median of the rounds' differences);")
    print("server commands; FCALL server us:\n")
    print(table(["server", "side", "us/job", "vs plain", "commands", "FCALL us"], breakdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
