"""Releasing the N dependents of one job into RQ: tracker's success against RQ's depends_on.

    python bench/fanout.py [--url URL ...] [--n 10000] [--big 100000] [--big-servers 1]
                           [--rounds 3] [--rq-rounds 1] [--budgets 30,100,150,300,1000]

tracker: a job "root" and N dependents, each registered with ``prerequisites=[root]``
and a payload (``os.path.join("a")``) for an RQ queue of the run's own; the
registrations are pipelined 1,000 at a time. Root is started, then the clock runs
over ``Tracker.success(root)``: one FCALL that releases as many dependents as
its budget allows (``tracker.calls.GRAPH_BUDGET``, in the units _graph.lua counts)
and, while fan-out work remains, the drain FCALLs that ``success`` itself runs
until every dependent is enqueued, i.e. pushed onto ``rq:queue:<name>`` with its
RQ job hash (checked after: LLEN is N).

RQ: a parent job and N jobs ``queue.enqueue(os.path.join, "a", depends_on=parent)``
(deferred). The clock runs over what releases them in production: a
``SimpleWorker([queue]).work(burst=True, max_jobs=1)`` that takes the parent, runs
it, and in ``handle_job_success`` moves its dependents to the ready registry and
enqueues them (``move_dependents_to_ready`` then ``enqueue_ready_jobs_by_queue``);
checked after: the queue holds N jobs. The same worker run for a parent without
dependents is measured too ("worker alone"), and the ratio is taken against RQ's
time less that, which favours RQ.

Also measured: N = ``--big`` for tracker alone (target: at most 12x the time for
N; on the first ``--big-servers`` servers only, as its setup takes 30-40 s), and,
by budget (``tracker.calls.GRAPH_BUDGET``, read when a Tracker is built; the
default is not changed), the release of N. The number of FCALLs of a release and
their mean time come from INFO commandstats, which also gives the server time of
each command the functions ran ("server time per dependent"). The longest single
FCALL comes from SLOWLOG, with ``slowlog-log-slower-than`` set to 1 ms for the
release only (not 0: Redis 7 logs the commands a function runs too, and a release
of 100,000 runs over a million); "<1,000" means none took 1 ms. By default the
script starts its own servers (a ``redis-server`` on a unix socket without
persistence, and the embedded Valkey), so that this configuration change touches
nobody else. With ``--url`` the servers are not ours: SLOWLOG is left alone (and
the longest call not reported) unless ``--slowlog`` is given; the FCALL counts
then include other clients'.

Every key is deleted after each round: the tracker namespace, and the RQ keys,
found by the run's unique tag in every job id, queue name and worker name.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
import rq
from _common import (
    cleanup,
    cleanup_matching,
    command_delta,
    command_stats,
    machine,
    median,
    namespace,
    pipelined,
    private_servers,
    server_label,
    server_time,
    slow_commands,
    table,
    url_parser,
)

from tracker import Settings, Tracker, plans

FUNC = "os.path.join"
PAYLOAD = {"func": FUNC, "args": ["a"]}
BATCH = 1000
SPEEDUP_TARGET = 50  # tracker at least 50x faster than RQ at N
SCALE_TARGET = 12  # the release of --big at most 12x that of N
LONGEST_TARGET_US = 5000
SLOW_US = 1000  # SLOWLOG's threshold during a release: far above any command a function runs


@dataclass
class Release:
    seconds: float  # the timed release
    setup: float  # registering or enqueueing the dependents
    calls: int | None = None  # FCALLs during the release (from INFO commandstats)
    longest_us: int | None = None  # the longest of them (from SLOWLOG; 0: none over 1 ms)
    commands: dict[str, tuple[int, int]] | None = None  # name: (calls, usec) in the release


def tag() -> str:
    """Unique to a round; in every RQ name, so that cleanup finds exactly our RQ keys."""
    return "fo" + uuid.uuid4().hex[:10]


@contextlib.contextmanager
def graph_budget(budget: int | None) -> Iterator[None]:
    """``plans.GRAPH_BUDGET`` for the Trackers built inside (PlanBase reads it)."""
    default = plans.GRAPH_BUDGET
    if budget is not None:
        plans.GRAPH_BUDGET = budget
    try:
        yield
    finally:
        plans.GRAPH_BUDGET = default


def tracker_release(url: str, n: int, budget: int | None, slowlog: bool) -> Release:
    run = tag()
    client = redis.Redis.from_url(url)
    settings = Settings(namespace=namespace())
    with graph_budget(budget):
        tracker = Tracker(client, settings)
    queue = run
    jids = [f"{run}-{i:06d}" for i in range(n)]
    try:
        start = time.perf_counter()
        tracker.register("root", queue=queue)
        for first in range(0, n, BATCH):
            pipelined(
                tracker,
                (
                    tracker.plans.register(
                        jid, queue=queue, prerequisites=["root"], payload=PAYLOAD
                    )
                    for jid in jids[first : first + BATCH]
                ),
            )
        tracker.start("root")
        setup = time.perf_counter() - start
        assert client.llen(f"rq:queue:{queue}") == 0
        stats = command_stats(client)
        slow = slow_commands(client, SLOW_US) if slowlog else contextlib.nullcontext([])
        with slow as log:
            start = time.perf_counter()
            tracker.success("root")
            seconds = time.perf_counter() - start
        commands = command_delta(stats, command_stats(client))
        released = client.llen(f"rq:queue:{queue}")
        assert released == n, (released, n)
        assert client.llen(tracker.keys.fanout) == 0
        result = Release(seconds, setup, commands=commands)
        result.calls = commands.get("fcall", (0, 0))[0]
        if slowlog:
            fcalls = [e for e in log if bytes(e["command"]).upper().startswith(b"FCALL ")]
            result.longest_us = max((int(e["duration"]) for e in fcalls), default=0)
        return result
    finally:
        cleanup(client, settings.namespace)
        cleanup_matching(client, run)
        client.close()


def rq_release(url: str, n: int) -> Release:
    run = tag()
    client = redis.Redis.from_url(url)
    queue = rq.Queue(run, connection=client)
    try:
        start = time.perf_counter()
        parent = queue.enqueue(FUNC, "a", job_id=f"{run}-parent")
        for i in range(n):
            queue.enqueue(FUNC, "a", depends_on=parent, job_id=f"{run}-{i:06d}")
        setup = time.perf_counter() - start
        assert queue.count == 1  # the parent; its dependents are deferred
        worker = rq.SimpleWorker([queue], connection=client, name=f"{run}-worker")
        handled: list[float] = []
        handle_job_success = worker.handle_job_success

        def timed_handle_job_success(*args: Any, **kwargs: Any) -> None:
            handle_job_success(*args, **kwargs)
            handled.append(time.perf_counter())

        # stop the clock when the worker has handled the parent's success (dependents
        # enqueued), before its teardown: that joins a pub/sub thread, up to 1 s idle
        worker.handle_job_success = timed_handle_job_success  # type: ignore[method-assign]
        start = time.perf_counter()
        worker.work(burst=True, max_jobs=1, logging_level="WARNING")
        (end,) = handled
        seconds = end - start
        assert parent.get_status(refresh=True) == rq.job.JobStatus.FINISHED
        assert queue.count == n, (queue.count, n)
        return Release(seconds, setup)
    finally:
        cleanup_matching(client, run)
        client.close()


@dataclass
class ServerResult:
    label: str
    tracker: list[Release]
    rq: list[Release]
    worker_alone: list[float]
    big: list[Release]
    budgets: dict[int, list[Release]]


def measure(
    url: str, slowlog: bool, n: int, big: int, rounds: int, rq_rounds: int, budgets: list[int]
) -> ServerResult:
    """Every release of one server, printed as it goes; ``big`` 0 skips N = big."""
    label = server_label(url)
    print(f"\n{label}:", flush=True)
    result = ServerResult(label, [], [], [], [], {})
    tracker_release(url, min(n, 1000), None, slowlog)  # warm up: the library, connections
    for r in range(rounds):
        result.tracker.append(tracker_release(url, n, None, slowlog))
        report("tracker", n, result.tracker[-1])
        breakdown(result.tracker[-1], n)
        if r < rq_rounds:
            result.rq.append(rq_release(url, n))
            report("RQ", n, result.rq[-1])
    for _ in range(3):
        result.worker_alone.append(rq_release(url, 0).seconds)
    print(f"  RQ worker alone (no dependents): {median(result.worker_alone) * 1000:.0f} ms")
    if big:
        result.big.append(tracker_release(url, big, None, slowlog))
        report("tracker", big, result.big[-1])
        breakdown(result.big[-1], big)
    result.budgets[plans.GRAPH_BUDGET] = result.tracker
    for budget in budgets:
        if budget == plans.GRAPH_BUDGET:
            continue
        result.budgets[budget] = [tracker_release(url, n, budget, slowlog)]
        report(f"tracker, budget {budget}", n, result.budgets[budget][-1])
    return result


def breakdown(release: Release, n: int) -> None:
    print(f"    server time per dependent: {server_time(release.commands or {}, n)}")


def report(who: str, n: int, release: Release) -> None:
    calls = ""
    if release.calls:
        calls = f" in {release.calls} FCALLs (mean {mean_us(release)} us"
        calls += ")" if release.longest_us is None else f", longest {longest([release])} us)"
    print(
        f"  {who}, N={n:,}: released in {release.seconds * 1000:,.0f} ms{calls} "
        f"(setup {release.setup:.1f} s)",
        flush=True,
    )


def mean_us(release: Release) -> str:
    """The mean FCALL time of a release, from INFO commandstats."""
    calls, usec = (release.commands or {}).get("fcall", (0, 0))
    return f"{usec / calls:,.0f}" if calls else "n/a"


def longest(releases: list[Release]) -> str:
    """The longest FCALL of these releases, from SLOWLOG (which logs those over 1 ms)."""
    values = [r.longest_us for r in releases if r.longest_us is not None]
    if not values:
        return "n/a"
    return f"{max(values):,}" if max(values) else f"<{SLOW_US:,}"


def summary(results: list[ServerResult], n: int, big: int) -> None:
    rows = []
    for res in results:
        ours = median([r.seconds for r in res.tracker])
        alone = median(res.worker_alone)
        if res.rq:
            theirs = median([r.seconds for r in res.rq])
            speedup = (theirs - alone) / ours
            rq_cells = [f"{theirs:.2f}", f"{alone * 1000:.0f} ms", f"{speedup:,.0f}x"]
            met = "yes" if speedup >= SPEEDUP_TARGET else "NO"
        else:
            rq_cells, met = ["-", "-", "-"], "-"
        rows.append([res.label, f"{ours * 1000:,.0f}", *rq_cells, f">= {SPEEDUP_TARGET}x", met])
    print(f"\nRelease of N={n:,} dependents into RQ (medians; seconds unless marked):\n")
    print(
        table(
            ["server", "tracker ms", "RQ s", "RQ worker alone", "speedup", "target", "met"],
            rows,
        )
    )

    if any(res.big for res in results):
        rows = []
        for res in results:
            if not res.big:
                continue
            ours = median([r.seconds for r in res.tracker])
            large = median([r.seconds for r in res.big])
            scale = large / ours
            rows.append(
                [
                    res.label,
                    f"{ours * 1000:,.0f}",
                    f"{large * 1000:,.0f}",
                    f"{scale:.1f}x",
                    f"<= {SCALE_TARGET}x",
                    "yes" if scale <= SCALE_TARGET else "NO",
                    longest(res.tracker),
                    longest(res.big),
                    f"< {LONGEST_TARGET_US:,}",
                ]
            )
        print(f"\ntracker, N={n:,} against N={big:,} (longest FCALL from SLOWLOG, us):\n")
        print(
            table(
                [
                    "server",
                    f"N={n:,} ms",
                    f"N={big:,} ms",
                    "ratio",
                    "target",
                    "met",
                    f"longest, N={n:,}",
                    f"longest, N={big:,}",
                    "target",
                ],
                rows,
            )
        )

    budgets = sorted({b for res in results for b in res.budgets})
    if budgets:
        rows = []
        for budget in budgets:
            row = [str(budget)]
            for res in results:
                releases = res.budgets.get(budget, [])
                if not releases:
                    row += ["-", "-", "-", "-"]
                    continue
                row += [
                    f"{median([r.seconds for r in releases]) * 1000:,.0f}",
                    str(releases[0].calls),
                    mean_us(releases[0]),
                    longest(releases),
                ]
            rows.append(row)
        header = ["budget"]
        for res in results:
            header += [f"{res.label} ms", "FCALLs", "mean us", "longest us"]
        print(
            f"\ntracker, N={n:,} by GRAPH_BUDGET (one release each; for the default, "
            f"{plans.GRAPH_BUDGET}, the median and longest of the rounds above):\n"
        )
        print(table(header, rows))


def main() -> int:
    parser = url_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="dependents (default 10,000)")
    parser.add_argument(
        "--big", type=int, default=100_000, help="dependents, tracker only (0: skip)"
    )
    parser.add_argument(
        "--big-servers", type=int, default=1, help="how many servers run N=big (default 1)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="tracker rounds at N (default 3)")
    parser.add_argument("--rq-rounds", type=int, default=1, help="RQ rounds at N (default 1)")
    parser.add_argument(
        "--budgets",
        default="30,100,150,300,1000",
        help="GRAPH_BUDGET values to try at N, comma separated ('' to skip)",
    )
    parser.add_argument(
        "--slowlog", action="store_true", help="use SLOWLOG on --url servers too (changes config)"
    )
    options = parser.parse_args()
    budgets = [int(b) for b in options.budgets.split(",") if b]
    logging.getLogger("rq").setLevel(logging.WARNING)
    print(
        f"machine: {machine()}; N={options.n:,}, {options.rounds} tracker rounds, "
        f"{options.rq_rounds} RQ; default GRAPH_BUDGET {plans.GRAPH_BUDGET}"
    )
    results = []
    with private_servers(options.url) as servers:
        for i, (url, ours) in enumerate(servers):
            results.append(
                measure(
                    url,
                    ours or options.slowlog,
                    options.n,
                    options.big if i < options.big_servers else 0,
                    options.rounds,
                    min(options.rq_rounds, options.rounds),
                    budgets,
                )
            )
    summary(results, options.n, options.big)
    return 0


if __name__ == "__main__":
    sys.exit(main())
