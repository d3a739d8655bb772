"""TRACK SET and TRACK GET through tracker, against the raw redis-py calls beneath them.

    python bench/track_set.py [--url URL ...] [--quick] [--rounds 9] [--seconds 0.5]

Four comparisons, each in rounds that alternate tracker and raw:

(a) sync, one at a time: ``Tracker.track_set`` against a raw ``EVALSHA`` of a minimal
    script that writes percent and desc to the job's hash and sets its expiry;
(b) asyncio, 8 concurrent tasks: ``AsyncTracker.track_set`` against the same script
    through ``redis.asyncio``;
(c) batches of 100: ``Tracker.track_set_many`` against a pipeline of 100 raw EVALSHA;
(d) ``Tracker.track_get`` against a raw ``HGETALL`` of the same hash;
(e) ``Tracker.track_set`` against what an RQ user writes for progress:
    ``job.meta["progress"] = i; job.save_meta()`` on 1,000 enqueued RQ jobs.

1,000 jobs are registered and started first, so TRACK SET hits working jobs. The
figure is the median of the rounds' tracker/raw ratios, with their range.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio
import rq
from _harness import (
    alternate,
    cleanup,
    cleanup_rq,
    label,
    machine,
    median,
    namespace,
    paired,
    parser,
    rate,
    ratios,
    stores,
    table,
    tag,
    verdict,
)
from _internals import job_key

from tracker import AsyncTracker, Settings, Tracker, TrackerError

#: The least a TRACK SET must do: write percent and desc, set the hash's expiry.
RAW_TRACK_SET = """
-- KEYS[1] the job's hash; ARGV[1] percent, ARGV[2] desc, ARGV[3] expiry (ms)
redis.call('HSET', KEYS[1], 'p', ARGV[1], 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
EXPIRY_MS = 3_600_000
JOBS, TASKS, BATCH, CHUNK = 1000, 8, 100, 50
TARGETS = {"(a)": 0.85, "(b)": 0.85, "(c)": 0.7, "(d)": 0.85, "(e)": 1.0}


def desc(i: int) -> str:
    return f"copying files 17/40{i % 10}"  # 20 characters


def looped(body: Callable[[int], object]) -> Callable[[], int]:
    """CHUNK calls of ``body`` over the jobs, a cursor carried between calls."""
    at = [0]

    def run() -> int:
        first = at[0]
        for i in range(first, first + CHUNK):
            body(i)
        at[0] = first + CHUNK
        return CHUNK

    return run


def sync_sides(
    tracker: Tracker, raw_client: redis.Redis, jids: list[str], run: str
) -> dict[str, tuple[Callable[[], int], Callable[[], int]]]:
    raw = raw_client.register_script(RAW_TRACK_SET)
    keys = [job_key(tracker, jid) for jid in jids]
    updates = [
        [{"jid": jids[(b * BATCH + i) % JOBS], "percent": i, "desc": desc(i)} for i in range(BATCH)]
        for b in range(JOBS // BATCH)
    ]
    errors = [r for r in tracker.track_set_many(updates[0]) if isinstance(r, TrackerError)]
    assert not errors, errors[:3]
    turn = [0]

    def tracker_many() -> int:
        turn[0] += 1
        tracker.track_set_many(updates[turn[0] % len(updates)])
        return BATCH

    def raw_many() -> int:
        turn[0] += 1
        pipe = raw_client.pipeline(transaction=False)
        for u in updates[turn[0] % len(updates)]:
            raw(keys=[job_key(tracker, u["jid"])], args=[u["percent"], u["desc"], EXPIRY_MS],
                client=pipe)  # fmt: skip
        pipe.execute()
        return BATCH

    queue = rq.Queue(run, connection=raw_client)
    rq_jobs = [queue.enqueue("os.path.join", "a", job_id=f"{queue.name}-{i}") for i in range(JOBS)]

    def save_meta(i: int) -> None:
        job = rq_jobs[i % JOBS]
        job.meta["progress"] = {"percent": i % 101, "desc": desc(i)}
        job.save_meta()

    return {
        "(e) TRACK SET, sync, against RQ's save_meta": (
            looped(lambda i: tracker.track_set(jids[i % JOBS], percent=i % 101, desc=desc(i))),
            looped(save_meta),
        ),
        "(a) TRACK SET, sync, one at a time": (
            looped(lambda i: tracker.track_set(jids[i % JOBS], percent=i % 101, desc=desc(i))),
            looped(lambda i: raw(keys=[keys[i % JOBS]], args=[i % 101, desc(i), EXPIRY_MS])),
        ),
        "(c) TRACK SET, batches of 100": (tracker_many, raw_many),
        "(d) TRACK GET, sync": (
            looped(lambda i: tracker.track_get(jids[i % JOBS])),
            looped(lambda i: raw_client.hgetall(keys[i % JOBS])),
        ),
    }


async def async_side(
    url: str, settings: Settings, jids: list[str], rounds: int, seconds: float
) -> list[list[float]]:
    """(b): rates of TASKS concurrent tasks, tracker's and raw, in alternating rounds."""
    tracker = AsyncTracker(redis.asyncio.Redis.from_url(url), settings)
    raw_client = redis.asyncio.Redis.from_url(url)
    raw = raw_client.register_script(RAW_TRACK_SET)
    keys = [job_key(tracker, jid) for jid in jids]
    share = JOBS // TASKS

    def task(call: Callable[[int, int], Awaitable[Any]]) -> Callable[[int, float], Awaitable[int]]:
        async def run(n: int, deadline: float) -> int:
            done = 0
            while time.perf_counter() < deadline:
                for i in range(CHUNK):
                    await call(n * share + i % share, i)
                done += CHUNK
            return done

        return run

    ours = task(lambda j, i: tracker.track_set(jids[j], percent=i, desc=desc(i)))
    theirs = task(lambda j, i: raw(keys=[keys[j]], args=[i, desc(i), EXPIRY_MS]))

    async def measured(side: Callable[[int, float], Awaitable[int]], span: float) -> float:
        start = time.perf_counter()
        counts = await asyncio.gather(*(side(n, start + span) for n in range(TASKS)))
        return sum(counts) / (time.perf_counter() - start)

    try:
        await measured(ours, 0.2)  # warm up: opens every task's connection
        await measured(theirs, 0.2)
        got: list[list[float]] = [[], []]
        for r in range(rounds):
            for i in (0, 1) if r % 2 == 0 else (1, 0):
                got[i].append(await measured((ours, theirs)[i], seconds))
        return got
    finally:
        await tracker.close()
        await raw_client.aclose()


def run(url: str, rounds: int, seconds: float) -> dict[str, list[list[float]]]:
    settings = Settings(namespace=namespace())
    client, raw_client = redis.Redis.from_url(url), redis.Redis.from_url(url)
    tracker = Tracker(client, settings)
    jids = [f"job-{i:05d}" for i in range(JOBS)]
    run_tag = tag("ts")
    try:
        for jid in jids:
            tracker.register(jid)
            tracker.start(jid)
        sides = sync_sides(tracker, raw_client, jids, run_tag)
        results = {
            name: alternate(rounds, lambda o=o: rate(o, seconds), lambda t=t: rate(t, seconds))
            for name, (o, t) in sides.items()
        }
        results["(b) TRACK SET, asyncio, 8 tasks"] = asyncio.run(
            async_side(url, settings, jids, rounds, seconds)
        )
        return dict(sorted(results.items()))
    finally:
        cleanup(client, settings.namespace)
        cleanup_rq(client, run_tag)
        client.close()
        raw_client.close()


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--rounds", type=int, default=9, help="rounds per side (default 9)")
    options.add_argument("--seconds", type=float, default=0.5, help="one round (default 0.5)")
    args = options.parse_args()
    if args.quick:
        args.rounds, args.seconds = 5, 0.3
    print(f"machine: {machine()}; {args.rounds} rounds of {args.seconds} s per side")
    with stores(args.url) as urls:
        for url in urls:
            rows = []
            for name, (ours, theirs) in run(url, args.rounds, args.seconds).items():
                target = TARGETS[name[:3]]
                rows.append([name, f"{median(ours):,.0f}", f"{median(theirs):,.0f}",
                             paired(ours, theirs), f">= {target}",
                             verdict(median(ratios(ours, theirs)) >= target)])  # fmt: skip
            print(f"\n{label(url)}: operations per second, medians; ratio with its range:\n")
            table(["benchmark", "tracker/s", "raw/s", "ratio (range)", "target", "met"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
