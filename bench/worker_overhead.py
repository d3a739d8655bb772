"""Tracking overhead: trivial jobs run by tracker's worker, against plain RQ.

    python bench/worker_overhead.py [--url URL ...] [--quick] [--rounds 7] [--jobs 5000]
                                    [--breakdown]

tracked: ``Tracker.enqueue(noop, queue=Q)`` N times (each job released into RQ queue Q
at once), then the worker of ``tracker worker --simple --burst Q``: a
``TrackedSimpleWorker`` with the ``Maintenance`` thread beside it. plain:
``Queue(Q).enqueue(noop)`` N times, then ``rq.SimpleWorker([Q])``. Only the burst
runs are timed, their teardown left out (see ``_harness.timed_burst``). Each round
runs every side, the order rotating, each with keys of its own, deleted after; each
side checks its N jobs ended well.

``--breakdown`` adds a side whose worker starts no watch thread (the per-job thread
that extends the reservation and watches for a cancel), times the worker's two
calls alone (``start`` and ``success`` of 1,000 jobs, no worker, no RQ), and counts
each side's round trips per job in one more burst of 500.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis.connection
import rq
from _harness import (
    cleanup,
    cleanup_rq,
    command_stats,
    label,
    machine,
    median,
    namespace,
    noop,
    paired,
    parser,
    ratios,
    server_usec,
    stores,
    table,
    tag,
    timed_burst,
    verdict,
)
from _internals import Maintenance, TrackedSimpleWorker, no_watch_thread

from tracker import Settings, Tracker

TARGET = 1.0  # issue 13: tracking for free (it was 0.9)


@dataclass
class Side:
    name: str
    burst: Callable[[str, str, int], tuple[float, int, float]]  # seconds, commands, FCALL us
    seconds: list[float] = field(default_factory=list)
    commands: list[int] = field(default_factory=list)
    fcall_us: list[float] = field(default_factory=list)

    def rates(self, n: int) -> list[float]:
        return [n / s for s in self.seconds]


def measured_burst(client: Any, worker: rq.Worker) -> tuple[float, int, float]:
    before = command_stats(client)
    seconds = timed_burst(worker)
    after = command_stats(client)
    commands = sum(c - before.get(k, (0, 0))[0] for k, (c, _) in after.items() if k != "info")
    fcall = after.get("fcall", (0, 0))[1] - before.get("fcall", (0, 0))[1]
    return seconds, commands, fcall


def tracked(url: str, run: str, n: int) -> tuple[float, int, float]:
    settings = Settings(namespace=namespace())
    tracker = Tracker.from_url(url, settings)
    try:
        queue = rq.Queue(f"{run}-q", connection=tracker.client)
        for i in range(n):
            tracker.enqueue(noop, jid=f"{run}-{i:05d}", queue=queue.name)
        assert queue.count == n, queue.count
        worker = TrackedSimpleWorker(
            [queue], connection=tracker.client, tracker=tracker, name=f"{run}-w"
        )
        maintenance = Maintenance(tracker)
        maintenance.start()
        try:
            got = measured_burst(tracker.client, worker)
        finally:
            maintenance.stop()
        assert tracker.stats().states == {"success": n}
        assert queue.count == 0 and queue.finished_job_registry.count == n
        return got
    finally:
        cleanup(tracker.client, settings.namespace)
        cleanup_rq(tracker.client, run)
        tracker.close()


def unwatched(url: str, run: str, n: int) -> tuple[float, int, float]:
    with no_watch_thread():
        return tracked(url, run, n)


def plain(url: str, run: str, n: int) -> tuple[float, int, float]:
    client = redis.Redis.from_url(url)
    try:
        queue = rq.Queue(f"{run}-q", connection=client)
        for i in range(n):
            queue.enqueue(noop, job_id=f"{run}-{i:05d}")
        worker = rq.SimpleWorker([queue], connection=client, name=f"{run}-w")
        got = measured_burst(client, worker)
        assert queue.count == 0 and queue.finished_job_registry.count == n
        return got
    finally:
        cleanup_rq(client, run)
        client.close()


@contextlib.contextmanager
def counted_sends() -> Iterator[list[int]]:
    """Count every send of this process's connections: one per command or pipeline."""
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


def lifecycle_alone(url: str, n: int = 1000) -> tuple[float, float]:
    """us per job of ``start`` + ``success`` with no worker and no RQ, and FCALL us."""
    settings = Settings(namespace=namespace())
    tracker = Tracker.from_url(url, settings)
    try:
        jids = [f"job-{i:05d}" for i in range(n)]
        for jid in jids:
            tracker.register(jid)
        with server_usec(tracker.client) as fcall:
            start = time.perf_counter()
            for jid in jids:
                tracker.start(jid)
                tracker.success(jid)
            seconds = time.perf_counter() - start
        return seconds / n * 1e6, fcall[1] / n
    finally:
        cleanup(tracker.client, settings.namespace)
        tracker.close()


def measure(url: str, rounds: int, n: int, breakdown: bool) -> list[Side]:
    sides = [Side("tracked", tracked), Side("plain", plain)]
    if breakdown:
        sides.insert(1, Side("tracked, no watch thread", unwatched))
    for side in sides:  # warm up: imports, FUNCTION LOAD, RQ's first-use paths
        side.burst(url, tag("bw"), 100)
    for r in range(rounds):
        k = r % len(sides)
        for side in sides[k:] + sides[:k]:
            seconds, commands, fcall = side.burst(url, tag("bw"), n)
            side.seconds.append(seconds)
            side.commands.append(commands)
            side.fcall_us.append(fcall)
        print(f"  round {r + 1}: " + ", ".join(f"{s.name} {s.seconds[-1]:.2f} s" for s in sides))
    if breakdown:
        trips = []
        for side in sides:
            with counted_sends() as sends:
                side.burst(url, tag("bw"), 500)
            trips.append(f"{side.name} {sends[0] / 500:.1f}")
        print(f"  round trips per job (500 jobs): {', '.join(trips)}")
        alone = [lifecycle_alone(url) for _ in range(3)]
        print(f"  start + success alone, per job: {median([a[0] for a in alone]):,.0f} us, "
              f"FCALL {median([a[1] for a in alone]):,.0f} us")  # fmt: skip
    return sides


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--rounds", type=int, default=7, help="rounds per side (default 7)")
    options.add_argument("--jobs", type=int, default=5000, help="jobs per burst (default 5000)")
    options.add_argument("--breakdown", action="store_true", help="the watch thread, round trips")
    args = options.parse_args()
    if args.quick:
        args.rounds, args.jobs = 3, 1000
    n = args.jobs
    print(f"machine: {machine()}; rq {rq.__version__}; {args.rounds} rounds of {n:,} jobs")
    rows, per_job = [], []
    with stores(args.url) as urls:
        for url in urls:
            server = label(url)
            print(f"\n{server}:")
            sides = measure(url, args.rounds, n, args.breakdown)
            ours, theirs = sides[0].rates(n), sides[-1].rates(n)
            more = 1e6 / median(ours) - 1e6 / median(theirs)
            rows.append([server, f"{median(ours):,.0f}", f"{median(theirs):,.0f}",
                         paired(ours, theirs, 3), f"{more:+,.0f}", f">= {TARGET}",
                         verdict(median(ratios(ours, theirs)) >= TARGET)])  # fmt: skip
            for side in sides:
                per_job.append([server, side.name, f"{1e6 / median(side.rates(n)):,.0f}",
                                f"{median(side.commands) / n:.1f}",
                                f"{median(side.fcall_us) / n:.0f}"])  # fmt: skip
    print(f"\njobs per second (burst less teardown), medians of {args.rounds} rounds:\n")
    table(["server", "tracked/s", "plain/s", "ratio (range)", "us/job more", "target", "met"], rows)
    print("\nper job, medians: us, server commands, FCALL server us:\n")
    table(["server", "side", "us/job", "commands", "FCALL us"], per_job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
