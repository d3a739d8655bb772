"""Fan-in: completing the N prerequisites of one job, against N jobs without dependents.

    python bench/fanin.py [--url URL ...] [--quick] [--jobs 500] [--rounds 9] [--rq]

tracker: each round registers a job "sink" whose prerequisites are N jobs; as a
control, N / 10 sinks of 10 prerequisites each; and N jobs that nothing waits for.
All are registered and started first (pipelined). The clock then runs over
``Tracker.success`` of each job of a group, one at a time (the last prerequisite of
a sink releases it), the groups taking turns going first. The figure is the median
of the rounds' own ratios, fan-in against no dependents (target: at most 1.1), with
their range; "server us" is the FCALL time per success (INFO commandstats).

N is 500 by default: one registration with 1,000 prerequisites is refused (409, "too
many to check for a cycle"), since the cycle check of ``lua/_cycle.lua`` spends one
call of its budget on each prerequisite, even when nothing waits for the new job.
500 is the largest round number within that budget; ``--jobs`` tries others.

``--rq``: RQ's own figure, one round: a ``SimpleWorker`` runs N jobs on which one job
depends (``depends_on`` all of them), against N jobs that nothing depends on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import redis
import rq
from _harness import (
    cleanup,
    cleanup_rq,
    label,
    machine,
    median,
    namespace,
    paired,
    parser,
    ratios,
    server_usec,
    stores,
    table,
    tag,
    verdict,
)
from _internals import load_library, pipelined, plans

from tracker import Conflict, Settings, State, Tracker

TARGET = 1.1
BATCH = 1000
SMALL = 10
GROUPS = ("fan_in", "small", "alone")


def timed_successes(tracker: Tracker, jids: list[str]) -> tuple[float, float]:
    """Seconds of ``success`` of each job, and FCALL us per success."""
    with server_usec(tracker.client) as fcall:
        start = time.perf_counter()
        for jid in jids:
            tracker.success(jid)
        seconds = time.perf_counter() - start
    return seconds, fcall[1] / max(fcall[0], 1)


def run_tracker(url: str, jobs: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    client = redis.Redis.from_url(url)
    tracker = Tracker(client, Settings(namespace=namespace()))
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in GROUPS}
    try:
        load_library(tracker)
        for r in range(-1, rounds):  # round -1 warms up, and is forgotten
            groups = {name: [f"r{r}-{name}-{i:05d}" for i in range(jobs)] for name in GROUPS}
            everything = [jid for group in groups.values() for jid in group]
            for at in range(0, len(everything), BATCH):
                pipelined(tracker, (plans(tracker).register(j) for j in everything[at:][:BATCH]))
                pipelined(tracker, (plans(tracker).start(j) for j in everything[at:][:BATCH]))
            sinks = [(f"r{r}-sink", groups["fan_in"])]
            sinks += [(f"r{r}-sink-{i:05d}", groups["small"][i : i + SMALL])
                      for i in range(0, jobs, SMALL)]  # fmt: skip
            try:
                for sink, prerequisites in sinks:
                    tracker.register(sink, prerequisites=prerequisites)
            except Conflict as refused:
                raise SystemExit(
                    f"a sink of {jobs:,} prerequisites is refused: {refused}"
                ) from None
            assert tracker.track_get(sinks[0][0]).state is State.WAITING
            for name in GROUPS[r % 3 :] + GROUPS[: r % 3]:
                measured = timed_successes(tracker, groups[name])
                if r >= 0:
                    got[name].append(measured)
            for sink, _ in sinks:
                assert tracker.track_get(sink).state is State.ENQUEUED
        return got
    finally:
        cleanup(client, tracker.settings.namespace)
        client.close()


def run_rq(url: str, jobs: int) -> tuple[float, float]:
    """Seconds for a SimpleWorker to run ``jobs`` prerequisites of one job; ``jobs`` alone."""
    run = tag("fi")
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
                    ids = [f"{prefix}-{i:05d}" for i in range(first, min(first + BATCH, jobs))]
                    data = [rq.Queue.prepare_data("os.path.join", ("a",), job_id=i) for i in ids]
                    made += queue.enqueue_many(data, pipeline=pipe)
                    pipe.execute()
            return made

        def with_sink(queue: rq.Queue) -> None:
            parents = enqueue(queue, f"{run}-pre")
            queue.enqueue("os.path.join", "a", depends_on=parents, job_id=f"{run}-sink")

        def without_sink(queue: rq.Queue) -> None:
            enqueue(queue, f"{run}-job")

        alone = work(without_sink, "alone")
        fan_in = work(with_sink, "fanin")
        sink = rq.job.Job.fetch(f"{run}-sink", connection=client)
        assert sink.get_status() == rq.job.JobStatus.QUEUED, sink.get_status()
        return fan_in, alone
    finally:
        cleanup_rq(client, run)
        client.close()


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--jobs", type=int, default=500, help="prerequisites (default 500)")
    options.add_argument("--rounds", type=int, default=9, help="rounds per side (default 9)")
    options.add_argument("--rq", action="store_true", help="also RQ's figure, one round")
    args = options.parse_args()
    if args.quick:
        args.rounds = 5
    jobs = args.jobs
    print(f"machine: {machine()}; {jobs:,} prerequisites, {args.rounds} rounds")
    rows, rq_rows = [], []
    with stores(args.url) as urls:
        for url in urls:
            server = label(url)
            got = run_tracker(url, jobs, args.rounds)
            seconds = {name: [s for s, _ in got[name]] for name in GROUPS}
            us = [f"{median(seconds[n]) * 1e6 / jobs:.0f}" for n in GROUPS]
            fcall = " / ".join(f"{median([u for _, u in got[n]]):.0f}" for n in GROUPS)
            met = median(ratios(seconds["fan_in"], seconds["alone"])) <= TARGET
            rows.append([server, *us, paired(seconds["fan_in"], seconds["alone"], 3),
                         paired(seconds["small"], seconds["alone"], 3), fcall, f"<= {TARGET}",
                         verdict(met)])  # fmt: skip
            if args.rq:
                fan_in, alone = run_rq(url, jobs)
                rq_rows.append([server, f"{fan_in * 1e6 / jobs:,.0f}", f"{alone * 1e6 / jobs:,.0f}",
                                f"{fan_in / alone:.2f}"])  # fmt: skip
    print(f"\ntracker: us per success, medians of {args.rounds} rounds; ratios with their range:\n")
    table(["server", f"of 1 sink of {jobs:,}", f"of sinks of {SMALL}", "no dependents",
           "ratio (range)", f"ratio, of {SMALL}", "server us (the three)", "target", "met"],
          rows)  # fmt: skip
    if rq_rows:
        print(f"\nRQ, SimpleWorker: us per job run, one round of {jobs:,}:\n")
        table(["server", "prerequisite", "no dependents", "ratio"], rq_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
