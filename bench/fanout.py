"""Releasing the N dependents of one job into RQ: tracker's success against RQ's depends_on.

    python bench/fanout.py [--url URL ...] [--quick] [--n 10000] [--big 100000]
                           [--rounds 3] [--rq-rounds 1] [--budgets 30,300] [--slowlog]

tracker: a job "root" and N dependents, each registered with ``prerequisites=[root]``
and a payload (``os.path.join("a")``) for an RQ queue of the run's own (pipelined
1,000 at a time). Root is started, then the clock runs over ``Tracker.success(root)``:
one FCALL that releases what its graph budget allows and, while fan-out work
remains, the drain FCALLs ``success`` runs itself, until every dependent is on
``rq:queue:<name>`` with its RQ job hash (checked after: LLEN is N).

RQ: a parent and N jobs ``queue.enqueue(os.path.join, "a", depends_on=parent)``; the
clock runs over a ``SimpleWorker`` taking the parent and, in ``handle_job_success``,
enqueueing its dependents. The same worker for a parent without dependents is
timed too ("worker alone"), and the speedup is taken against RQ's time less that
(which favours RQ).

Also: N = ``--big`` for tracker alone (target: at most 12x the time of N), and the
release of N with other graph budgets. FCALLs and their server time come from INFO
commandstats (target: under 15 us per dependent); the longest single FCALL from
SLOWLOG at 1 ms (target: under 5 ms), on servers started here only, unless
``--slowlog`` (it changes the server's configuration).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
import rq
from _harness import (
    cleanup,
    cleanup_rq,
    label,
    machine,
    median,
    namespace,
    parser,
    server_usec,
    spread,
    stores,
    table,
    tag,
    verdict,
)
from _internals import default_graph_budget, graph_budget, key, load_library, pipelined, plans

from tracker import Settings, Tracker

FUNC = "os.path.join"
PAYLOAD = {"func": FUNC, "args": ["a"]}
BATCH = 1000
SPEEDUP_TARGET, SCALE_TARGET, LONGEST_TARGET_MS, PER_DEPENDENT_TARGET_US = 50, 12, 5, 15


@dataclass
class Release:
    seconds: float
    fcalls: int = 0
    fcall_us: int = 0
    longest_ms: float | None = None  # from SLOWLOG; 0 when none took 1 ms


@contextlib.contextmanager
def slowlog(client: redis.Redis, on: bool) -> Iterator[list[dict[str, Any]]]:
    """SLOWLOG's entries over 1 ms inside the block (only when ``on``)."""
    entries: list[dict[str, Any]] = []
    if not on:
        yield entries
        return
    saved = client.config_get("slowlog-*")
    client.config_set("slowlog-max-len", 100_000)
    client.slowlog_reset()
    client.config_set("slowlog-log-slower-than", 1000)
    try:
        yield entries
    finally:
        client.config_set("slowlog-log-slower-than", saved["slowlog-log-slower-than"])
        entries.extend(client.slowlog_get(-1))
        client.slowlog_reset()
        client.config_set("slowlog-max-len", saved["slowlog-max-len"])


def register_dependents(tracker: Tracker, queue: str, jids: list[str], payload: bool) -> None:
    tracker.register("root", queue=queue)
    for first in range(0, len(jids), BATCH):
        pipelined(tracker, (
            plans(tracker).register(jid, queue=queue, prerequisites=["root"],
                                    payload=PAYLOAD if payload else None)
            for jid in jids[first : first + BATCH]
        ))  # fmt: skip
    tracker.start("root")


def tracker_release(url: str, n: int, budget: int | None, slow: bool) -> Release:
    run = tag("fo")
    client = redis.Redis.from_url(url)
    with graph_budget(budget):
        tracker = Tracker(client, Settings(namespace=namespace()))
    try:
        load_library(tracker)
        register_dependents(tracker, run, [f"{run}-{i:06d}" for i in range(n)], payload=True)
        assert client.llen(f"rq:queue:{run}") == 0
        with slowlog(client, slow) as log, server_usec(client) as fcall:
            start = time.perf_counter()
            tracker.success("root")
            seconds = time.perf_counter() - start
        assert client.llen(f"rq:queue:{run}") == n
        assert client.llen(key(tracker, "fanout")) == 0
        longest = None
        if slow:
            fcalls = [e for e in log if bytes(e["command"]).upper().startswith(b"FCALL ")]
            longest = max((e["duration"] for e in fcalls), default=0) / 1000
        return Release(seconds, fcall[0], fcall[1], longest)
    finally:
        cleanup(client, tracker.settings.namespace)
        cleanup_rq(client, run)
        client.close()


def rq_release(url: str, n: int) -> float:
    run = tag("fo")
    client = redis.Redis.from_url(url)
    queue = rq.Queue(run, connection=client)
    try:
        parent = queue.enqueue(FUNC, "a", job_id=f"{run}-parent")
        for i in range(n):
            queue.enqueue(FUNC, "a", depends_on=parent, job_id=f"{run}-{i:06d}")
        worker = rq.SimpleWorker([queue], connection=client, name=f"{run}-worker")
        handled: list[float] = []
        handle_job_success = worker.handle_job_success

        def timed(*args: Any, **kwargs: Any) -> None:  # the clock stops before the teardown
            handle_job_success(*args, **kwargs)
            handled.append(time.perf_counter())

        worker.handle_job_success = timed  # type: ignore[method-assign]
        start = time.perf_counter()
        worker.work(burst=True, max_jobs=1, logging_level="WARNING")
        assert queue.count == n, (queue.count, n)
        return handled[0] - start
    finally:
        cleanup_rq(client, run)
        client.close()


def longest_of(release: Release) -> str:
    return "n/a" if release.longest_ms is None else f"{release.longest_ms:.1f}"


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--n", type=int, default=10_000, help="dependents (default 10,000)")
    options.add_argument("--big", type=int, default=100_000, help="tracker only (0: skip)")
    options.add_argument("--rounds", type=int, default=3, help="tracker rounds at N (default 3)")
    options.add_argument("--rq-rounds", type=int, default=1, help="RQ rounds at N (default 1)")
    options.add_argument("--budgets", default="30,300", help="other graph budgets at N ('': none)")
    options.add_argument("--slowlog", action="store_true", help="SLOWLOG on --url servers too")
    args = options.parse_args()
    if args.quick:
        args.big, args.rounds, args.budgets = 0, 2, ""
    n, budgets = args.n, [int(b) for b in args.budgets.split(",") if b]
    logging.getLogger("rq").setLevel(logging.WARNING)
    print(f"machine: {machine()}; N={n:,}, {args.rounds} tracker rounds, {args.rq_rounds} RQ; "
          f"graph budget {default_graph_budget()}")  # fmt: skip
    rows, scale_rows, budget_rows = [], [], []
    with stores(args.url) as urls:
        for url in urls:
            server = label(url)
            slow = args.slowlog or "tracker-bench-" in url  # a server started here
            tracker_release(url, min(n, 1000), None, slow)  # warm up
            ours = [tracker_release(url, n, None, slow) for _ in range(args.rounds)]
            theirs = [rq_release(url, n) for _ in range(args.rq_rounds)]
            alone = median([rq_release(url, 0) for _ in range(3)])
            seconds = [r.seconds for r in ours]
            speedup = (median(theirs) - alone) / median(seconds)
            per_dep = median([r.fcall_us / n for r in ours])
            longest = [r.longest_ms for r in ours if r.longest_ms is not None]
            rows.append([server, spread([s * 1000 for s in seconds]), f"{median(theirs):.2f}",
                         f"{alone * 1000:.0f}", f"{speedup:.0f}x", f">= {SPEEDUP_TARGET}x",
                         verdict(speedup >= SPEEDUP_TARGET), f"{per_dep:.1f}",
                         f"{median([r.fcalls for r in ours]):.0f}",
                         f"{max(longest):.1f}" if longest else "n/a"])  # fmt: skip
            if args.big:
                big = tracker_release(url, args.big, None, slow)
                ratio = big.seconds / median(seconds)
                scale_rows.append([server, f"{big.seconds * 1000:,.0f}", f"{ratio:.1f}x",
                                   f"<= {SCALE_TARGET}x", verdict(ratio <= SCALE_TARGET),
                                   f"{big.fcall_us / args.big:.1f}", longest_of(big)])  # fmt: skip
            for budget in budgets:
                r = tracker_release(url, n, budget, slow)
                mean = r.fcall_us / max(r.fcalls, 1)
                budget_rows.append([server, budget, f"{r.seconds * 1000:,.0f}", r.fcalls,
                                    f"{mean:,.0f}", longest_of(r)])  # fmt: skip
    print(f"\nRelease of N={n:,} dependents into RQ (tracker: median and range of rounds):\n")
    table(["server", "tracker ms", "RQ s", "RQ worker alone ms", "speedup", "target", "met",
           f"FCALL us/dependent (< {PER_DEPENDENT_TARGET_US})", "FCALLs",
           f"longest FCALL ms (< {LONGEST_TARGET_MS})"], rows)  # fmt: skip
    if scale_rows:
        print(f"\ntracker, N={args.big:,} against N={n:,}:\n")
        table(["server", "ms", "ratio", "target", "met", "FCALL us/dependent", "longest ms"],
              scale_rows)  # fmt: skip
    if budget_rows:
        print(f"\ntracker, N={n:,} by graph budget (default {default_graph_budget()}):\n")
        table(["server", "budget", "ms", "FCALLs", "mean FCALL us", "longest ms"], budget_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
