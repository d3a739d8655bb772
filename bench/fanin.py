"""Fan-in: completing the 1,000 prerequisites of one job, against 1,000 jobs without dependents.

    python bench/fanin.py [--url URL ...] [--jobs 1000] [--rounds 9] [--rq]

tracker: each round registers a job "sink" whose prerequisites are 1,000 jobs;
as a control, 100 sinks of 10 prerequisites each (1,000 jobs again, each with one
dependent, as above, but the sinks are small); and 1,000 jobs that nothing waits
for. All 3,000 are registered and started first (pipelined). The clock then runs
over ``Tracker.success`` of each job of a group, one at a time, sync (the last
prerequisite of a sink releases it). The three groups take turns going first;
reported are the medians of the rounds' times per success, the ratio of the
medians, fan-in against no dependents (target: at most 1.1), the median of the
rounds' own ratios ("paired"), and the control's ratio. "server us" is the FCALL
time per success from INFO commandstats (on a shared server, other clients'
FCALLs blur it).

With ``--rq``, RQ's own figure for context, one round: a real ``SimpleWorker``
runs 1,000 jobs on which one job depends (``depends_on`` the list of all 1,000),
against 1,000 jobs that nothing depends on; the worker stops after 1,000 jobs, so
the released job is not run. The setup takes RQ a few seconds more.

The namespace's keys, and the RQ keys (found by the run's unique tag in every job
id, queue name and worker name), are deleted at the end.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
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
    pipelined,
    server_label,
    server_time,
    table,
    url_parser,
)

from tracker import Settings, Tracker
from tracker.model import State

TARGET = 1.1
BATCH = 1000
SMALL_FAN_IN = 10


@dataclass
class Side:
    seconds: list[float] = field(default_factory=list)
    server_us: list[float] = field(default_factory=list)
    commands: list[dict[str, tuple[int, int]]] = field(default_factory=list)


def timed_successes(tracker: Tracker, jids: list[str], side: Side) -> None:
    before = command_stats(tracker.client)
    start = time.perf_counter()
    for jid in jids:
        tracker.success(jid)
    side.seconds.append(time.perf_counter() - start)
    commands = command_delta(before, command_stats(tracker.client))
    calls, usec = commands.get("fcall", (1, 0))
    side.server_us.append(usec / calls)
    side.commands.append(commands)


@dataclass
class Sides:
    fan_in: Side = field(default_factory=Side)  # the prerequisites of one sink
    small: Side = field(default_factory=Side)  # prerequisites of sinks of SMALL_FAN_IN each
    alone: Side = field(default_factory=Side)  # jobs that nothing waits for


def run_tracker(url: str, jobs: int, rounds: int) -> Sides:
    client = redis.Redis.from_url(url)
    settings = Settings(namespace=namespace())
    tracker = Tracker(client, settings)
    sides = Sides()
    try:
        tracker._library.load(client)  # the registrations below are pipelined
        for r in range(-1, rounds):  # round -1 warms up, and is forgotten
            if r == 0:
                sides = Sides()
            groups = {
                name: [f"r{r}-{name}-{i:05d}" for i in range(jobs)]
                for name in ("fan_in", "small", "alone")
            }
            everything = [jid for group in groups.values() for jid in group]
            for chunk in range(0, len(everything), BATCH):
                pipelined(tracker, (tracker.plans.register(j) for j in everything[chunk:][:BATCH]))
                pipelined(tracker, (tracker.plans.start(j) for j in everything[chunk:][:BATCH]))
            sinks = [(f"r{r}-sink", groups["fan_in"])]
            sinks += [
                (f"r{r}-sink-{i:05d}", groups["small"][i : i + SMALL_FAN_IN])
                for i in range(0, jobs, SMALL_FAN_IN)
            ]
            for sink, prerequisites in sinks:
                tracker.register(sink, prerequisites=prerequisites)
            assert tracker.track_get(sinks[0][0]).state is State.WAITING
            order = ["fan_in", "small", "alone"]
            for name in order[r % 3 :] + order[: r % 3]:
                timed_successes(tracker, groups[name], getattr(sides, name))
            for sink, _ in sinks:
                assert tracker.track_get(sink).state is State.ENQUEUED
        return sides
    finally:
        cleanup(client, settings.namespace)
        client.close()


def run_rq(url: str, jobs: int) -> tuple[float, float]:
    """Seconds for a SimpleWorker to run ``jobs`` prerequisites of one job; ``jobs`` alone."""
    run = "fi" + uuid.uuid4().hex[:10]
    client = redis.Redis.from_url(url)
    try:

        def work(setup: Callable[[rq.Queue], None], name: str) -> float:
            queue = rq.Queue(f"{run}-{name}", connection=client)
            setup(queue)
            worker = rq.SimpleWorker([queue], connection=client, name=f"{run}-{name}-worker")
            start = time.perf_counter()
            worker.work(burst=True, max_jobs=jobs, logging_level="WARNING")
            return time.perf_counter() - start

        def enqueue(queue: rq.Queue, prefix: str) -> list[rq.job.Job]:
            made: list[rq.job.Job] = []
            for first in range(0, jobs, BATCH):
                with client.pipeline() as pipe:
                    data = [
                        rq.Queue.prepare_data("os.path.join", ("a",), job_id=f"{prefix}-{i:05d}")
                        for i in range(first, min(first + BATCH, jobs))
                    ]
                    made += queue.enqueue_many(data, pipeline=pipe)
                    pipe.execute()
            return made

        def with_sink(queue: rq.Queue) -> None:
            parents = enqueue(queue, f"{run}-pre")
            sink = queue.enqueue("os.path.join", "a", depends_on=parents, job_id=f"{run}-sink")
            assert sink.get_status() == rq.job.JobStatus.DEFERRED

        def without_sink(queue: rq.Queue) -> None:
            enqueue(queue, f"{run}-job")

        alone = work(without_sink, "alone")
        fan_in = work(with_sink, "fanin")
        sink = rq.job.Job.fetch(f"{run}-sink", connection=client)
        assert sink.get_status() == rq.job.JobStatus.QUEUED, sink.get_status()
        return fan_in, alone
    finally:
        cleanup_matching(client, run)
        client.close()


def main() -> int:
    parser = url_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="prerequisites (default 1,000)")
    parser.add_argument("--rounds", type=int, default=9, help="rounds per side (default 9)")
    parser.add_argument("--rq", action="store_true", help="also RQ's figure, one round")
    options = parser.parse_args()
    jobs = options.jobs
    print(f"machine: {machine()}; {jobs:,} prerequisites, {options.rounds} rounds")
    rows, rq_rows = [], []
    with default_targets(options.url) as urls:
        for url in urls:
            label = server_label(url)
            sides = run_tracker(url, jobs, options.rounds)
            alone = median(sides.alone.seconds)
            ratio = median(sides.fan_in.seconds) / alone
            paired = median(
                [a / b for a, b in zip(sides.fan_in.seconds, sides.alone.seconds, strict=True)]
            )
            rows.append(
                [
                    label,
                    f"{median(sides.fan_in.seconds) * 1e6 / jobs:.0f}",
                    f"{median(sides.small.seconds) * 1e6 / jobs:.0f}",
                    f"{alone * 1e6 / jobs:.0f}",
                    f"{ratio:.3f}",
                    f"{paired:.3f}",
                    f"{median(sides.small.seconds) / alone:.3f}",
                    " / ".join(
                        f"{median(side.server_us):.0f}"
                        for side in (sides.fan_in, sides.small, sides.alone)
                    ),
                    f"<= {TARGET}",
                    "yes" if ratio <= TARGET else "NO",
                ]
            )
            print(f"\n{label}, ms per {jobs:,} successes, and server time per success:")
            names = (f"fan-in of {jobs:,}", f"fan-in of {SMALL_FAN_IN}", "no dependents")
            for name, side in zip(names, (sides.fan_in, sides.small, sides.alone), strict=True):
                print(f"  {name}: " + " ".join(f"{s * 1000:.0f}" for s in side.seconds))
                middle = sorted(side.commands, key=lambda c: c.get("fcall", (0, 0))[1])
                print(f"    {server_time(middle[len(middle) // 2], jobs)}", flush=True)
            if options.rq:
                rq_fan_in, rq_alone = run_rq(url, jobs)
                rq_rows.append(
                    [
                        label,
                        f"{rq_fan_in * 1e6 / jobs:,.0f}",
                        f"{rq_alone * 1e6 / jobs:,.0f}",
                        f"{rq_fan_in / rq_alone:.2f}",
                    ]
                )
    print(f"\ntracker: us per success, medians of {options.rounds} rounds:\n")
    print(
        table(
            [
                "server",
                f"prerequisite of 1 sink of {jobs:,}",
                f"of sinks of {SMALL_FAN_IN}",
                "no dependents",
                "ratio",
                "paired",
                f"ratio, of {SMALL_FAN_IN}",
                "server us (the three)",
                "target",
                "met",
            ],
            rows,
        )
    )
    if rq_rows:
        print(f"\nRQ, SimpleWorker: us per job run, one round of {jobs:,}:\n")
        print(table(["server", "prerequisite", "no dependents", "ratio"], rq_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
