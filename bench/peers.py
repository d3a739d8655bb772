"""Enqueue and progress reports: tracker against the libraries users would pick instead.

    pip install -e '.[bench]'    # in a venv of its own: not with constraints.txt
    python bench/peers.py [--url URL ...] [--quick] [--rounds 9] [--seconds 0.5]

One unit of work is what an application and its worker send for one job: enqueue it,
then report its progress ``REPORTS`` times (percent and a 20-character desc), one call
at a time. Rounds alternate the two sides; the figure is the median of the rounds'
own rate ratios (tracker / peer), with their range. Two pairs:

(a) sync: ``Tracker.enqueue`` (the job handed to an RQ queue) and ``Tracker.track_set``,
    against Celery with its Redis broker and result backend: ``app.send_task`` and
    ``app.backend.store_result(id, meta, "PROGRESS")`` (what ``task.update_state`` runs);
(b) asyncio: ``AsyncTracker.enqueue`` and ``AsyncTracker.track_set``, against saq:
    ``queue.enqueue`` and ``job.update(progress=..., meta=...)``.

No worker runs: both sides measure what enqueueing and reporting cost the client and
the store. Every key the run made carries its tag and is deleted after.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio
from _harness import (
    cleanup,
    cleanup_rq,
    label,
    machine,
    median,
    namespace,
    noop,
    paired,
    parser,
    rate,
    ratios,
    stores,
    table,
    tag,
)

from tracker import AsyncTracker, Settings, Tracker

REPORTS = 10
DESC = "copying files 17/40"


def celery_url(url: str) -> str:
    """Celery's name for the same server: ``redis+socket://`` for a unix socket."""
    return "redis+socket://" + url.removeprefix("unix://") if url.startswith("unix://") else url


def sync_pair(url: str, run: str) -> tuple[Callable[[], int], Callable[[], int], Tracker]:
    from celery import Celery

    tracker = Tracker.from_url(url, Settings(namespace=namespace()))
    app = Celery(run, broker=celery_url(url), backend=celery_url(url))
    app.conf.task_default_queue = run
    count = [0]

    def ours() -> int:
        count[0] += 1
        jid = tracker.enqueue(noop, jid=f"{run}-t{count[0]}", queue=run)
        for i in range(REPORTS):
            tracker.track_set(jid, percent=i * 10, desc=DESC)
        return 1

    def theirs() -> int:
        count[0] += 1
        result = app.send_task("peers.noop", task_id=f"{run}-c{count[0]}")
        for i in range(REPORTS):
            app.backend.store_result(result.id, {"percent": i * 10, "desc": DESC}, "PROGRESS")
        return 1

    return ours, theirs, tracker


async def async_rounds(url: str, run: str, rounds: int, seconds: float) -> list[list[float]]:
    from saq.queue.redis import RedisQueue

    tracker = AsyncTracker(redis.asyncio.Redis.from_url(url), Settings(namespace=namespace()))
    queue = RedisQueue(redis.asyncio.Redis.from_url(url), name=run)  # from_url: no unix://
    await queue.connect()
    count = [0]

    async def ours() -> None:
        count[0] += 1
        jid = await tracker.enqueue(noop, jid=f"{run}-a{count[0]}", queue=run)
        for i in range(REPORTS):
            await tracker.track_set(jid, percent=i * 10, desc=DESC)

    async def theirs() -> None:
        job = await queue.enqueue("noop")
        assert job is not None
        for i in range(REPORTS):
            await job.update(progress=i / 10, meta={"desc": DESC})

    async def measured(side: Callable[[], Awaitable[None]]) -> float:
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            await side()
            done += 1
        return done / (time.perf_counter() - start)

    try:
        await measured(ours)  # warm up
        await measured(theirs)
        got: list[list[float]] = [[], []]
        for r in range(rounds):
            for i in (0, 1) if r % 2 == 0 else (1, 0):
                got[i].append(await measured((ours, theirs)[i]))
        return got
    finally:
        with redis.Redis.from_url(url) as client:
            cleanup(client, tracker.settings.namespace)
        await tracker.close()
        await queue.disconnect()


def run_pairs(url: str, rounds: int, seconds: float) -> dict[str, list[list[float]]]:
    run = tag("pe")
    ours, theirs, tracker = sync_pair(url, run)
    try:
        ours()  # warm up: the library, connections
        theirs()
        sync: list[list[float]] = [[], []]
        for r in range(rounds):
            for i in (0, 1) if r % 2 == 0 else (1, 0):
                sync[i].append(rate((ours, theirs)[i], seconds))
        got = {"(a) sync: tracker / Celery": sync}
        got["(b) asyncio: AsyncTracker / saq"] = asyncio.run(
            async_rounds(url, run, rounds, seconds)
        )
        return got
    finally:
        cleanup(tracker.client, tracker.settings.namespace)
        cleanup_rq(tracker.client, run)  # RQ's, Celery's and saq's keys all carry the tag
        tracker.close()


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--rounds", type=int, default=9, help="rounds per side (default 9)")
    options.add_argument("--seconds", type=float, default=0.5, help="one round (default 0.5)")
    args = options.parse_args()
    if args.quick:
        args.rounds, args.seconds = 5, 0.3
    import celery
    import saq

    print(f"machine: {machine()}; celery {celery.__version__}, saq {saq.__version__}; "
          f"a unit: enqueue + {REPORTS} progress reports")  # fmt: skip
    rows: list[list[Any]] = []
    with stores(args.url) as urls:
        for url in urls:
            for name, (ours, theirs) in run_pairs(url, args.rounds, args.seconds).items():
                rows.append([label(url), name, f"{median(ours):,.0f}", f"{median(theirs):,.0f}",
                             paired(ours, theirs), "yes" if median(ratios(ours, theirs)) >= 1
                             else "NO"])  # fmt: skip
    print("\nunits per second, medians; ratio with its range:\n")
    table(["server", "pair", "tracker/s", "peer/s", "ratio (range)", ">= 1"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
