"""TRACK SET and TRACK GET through tracker, against the raw redis-py calls beneath them.

    python bench/track_set.py [--url URL ...] [--rounds 9] [--seconds 0.5]

Four comparisons, each as rounds that alternate tracker and raw (which goes first
alternates too), reporting the median rate of each side, the ratio of medians (what
the targets are judged on) and, as a check on the machine's noise, the median of the
rounds' own ratios ("paired"):

(a) sync, one at a time: ``Tracker.track_set`` against a raw ``EVALSHA`` of a minimal
    script that writes percent and desc to the job's hash and sets its expiry;
(b) asyncio, 8 concurrent tasks: ``AsyncTracker.track_set`` against the same raw
    script through ``redis.asyncio``;
(c) batches of 100: ``Tracker.track_set_many`` against a pipeline (transaction=False)
    of 100 raw ``EVALSHA`` calls;
(d) ``Tracker.track_get`` against a raw ``HGETALL`` of the same hash.

tracker's side is an FCALL of its function library (TRACK SET's lean path, which
replies with the state alone; ``track_set`` returns None, ``track_set_many`` a list
of None or the error per update); the raw side stays the EVALSHA a user would write.

Every job (1,000 of them, a fresh namespace per run) is registered and started first,
so TRACK SET hits working jobs; the raw script writes the same hashes. The namespace's
keys are deleted afterwards; the raw script stays in the server's script cache.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from _common import (
    cleanup,
    default_targets,
    machine,
    median,
    namespace,
    rate,
    server_label,
    table,
    url_parser,
)

from tracker import AsyncTracker, Settings, Tracker, TrackerError

#: The least a TRACK SET must do: write percent and desc, set the hash's expiry.
RAW_TRACK_SET = """
-- KEYS[1] the job's hash; ARGV[1] percent, ARGV[2] desc, ARGV[3] expiry (ms)
redis.call('HSET', KEYS[1], 'p', ARGV[1], 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
EXPIRY_MS = 3_600_000
DESC = "copying files 17/40"  # desc() appends a digit: 20 characters
JOBS = 1000
TASKS = 8
BATCH = 100
CHUNK = 50  # operations between two looks at the clock


@dataclass
class Result:
    name: str
    tracker: list[float]
    raw: list[float]
    target: float

    @property
    def ratio(self) -> float:
        """The ratio of the medians: the figure the targets are judged on."""
        return median(self.tracker) / median(self.raw)

    @property
    def paired(self) -> float:
        """The median of each round's own ratio: less moved by a slow spell of the machine."""
        return median([ours / theirs for ours, theirs in zip(self.tracker, self.raw, strict=True)])


def interleave(
    rounds: int, seconds: float, tracker_run: Callable[[], float], raw_run: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """``rounds`` rounds of each, alternating which side goes first."""
    tracker_run()  # warm up: connections, the script cache
    raw_run()
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(rounds):
        if i % 2 == 0:
            ours.append(tracker_run())
            theirs.append(raw_run())
        else:
            theirs.append(raw_run())
            ours.append(tracker_run())
    return ours, theirs


def desc(i: int) -> str:
    return DESC + str(i % 10)


def bench_sync(
    tracker: Tracker, raw_client: redis.Redis, jids: list[str], rounds: int, seconds: float
) -> list[Result]:
    raw_set = raw_client.register_script(RAW_TRACK_SET)
    keys = [tracker.keys.job(jid) for jid in jids]
    cursor = [0]

    def tracker_set() -> int:
        at = cursor[0]
        for i in range(at, at + CHUNK):
            tracker.track_set(jids[i % JOBS], percent=i % 101, desc=desc(i))
        cursor[0] = at + CHUNK
        return CHUNK

    def raw_set_chunk() -> int:
        at = cursor[0]
        for i in range(at, at + CHUNK):
            raw_set(keys=[keys[i % JOBS]], args=[i % 101, desc(i), EXPIRY_MS])
        cursor[0] = at + CHUNK
        return CHUNK

    def tracker_get() -> int:
        at = cursor[0]
        for i in range(at, at + CHUNK):
            tracker.track_get(jids[i % JOBS])
        cursor[0] = at + CHUNK
        return CHUNK

    def raw_get() -> int:
        at = cursor[0]
        for i in range(at, at + CHUNK):
            raw_client.hgetall(keys[i % JOBS])
        cursor[0] = at + CHUNK
        return CHUNK

    updates: list[list[dict[str, Any]]] = [
        [{"jid": jids[(b * BATCH + i) % JOBS], "percent": i, "desc": desc(i)} for i in range(BATCH)]
        for b in range(JOBS // BATCH)
    ]
    raw_batches = [
        [([tracker.keys.job(u["jid"])], [u["percent"], u["desc"], EXPIRY_MS]) for u in batch]
        for batch in updates
    ]
    replies = tracker.track_set_many(updates[0])
    errors = [r for r in replies if isinstance(r, TrackerError)]
    assert not errors, errors[:3]

    def tracker_many() -> int:
        batch = updates[cursor[0] % len(updates)]
        cursor[0] += 1
        tracker.track_set_many(batch)
        return BATCH

    def raw_pipeline() -> int:
        batch = raw_batches[cursor[0] % len(raw_batches)]
        cursor[0] += 1
        pipe = raw_client.pipeline(transaction=False)
        for keys_, args in batch:
            raw_set(keys=keys_, args=args, client=pipe)
        pipe.execute()
        return BATCH

    def timed(run: Callable[[], int]) -> Callable[[], float]:
        return lambda: rate(run, seconds)

    return [
        Result(
            "(a) TRACK SET, sync, one at a time",
            *interleave(rounds, seconds, timed(tracker_set), timed(raw_set_chunk)),
            target=0.85,
        ),
        Result(
            "(c) TRACK SET, batches of 100",
            *interleave(rounds, seconds, timed(tracker_many), timed(raw_pipeline)),
            target=0.7,
        ),
        Result(
            "(d) TRACK GET, sync",
            *interleave(rounds, seconds, timed(tracker_get), timed(raw_get)),
            target=0.85,
        ),
    ]


async def _async_rate(task: Callable[[int, float], Awaitable[int]], seconds: float) -> float:
    """Run ``TASKS`` copies of ``task(n, deadline)`` until the deadline; total ops/s."""
    start = time.perf_counter()
    deadline = start + seconds
    counts = await asyncio.gather(*(task(n, deadline) for n in range(TASKS)))
    return sum(counts) / (time.perf_counter() - start)


async def _bench_async(
    url: str, settings: Settings, jids: list[str], rounds: int, seconds: float
) -> Result:
    tracker = AsyncTracker(redis.asyncio.Redis.from_url(url), settings)
    raw_client = redis.asyncio.Redis.from_url(url)
    raw_set = raw_client.register_script(RAW_TRACK_SET)
    keys = [tracker.keys.job(jid) for jid in jids]
    share = JOBS // TASKS

    async def tracker_task(n: int, deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            for i in range(CHUNK):
                await tracker.track_set(jids[n * share + i % share], percent=i, desc=desc(i))
            done += CHUNK
        return done

    async def raw_task(n: int, deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            for i in range(CHUNK):
                await raw_set(keys=[keys[n * share + i % share]], args=[i, desc(i), EXPIRY_MS])
            done += CHUNK
        return done

    try:
        await _async_rate(tracker_task, 0.3)  # warm up: opens all TASKS connections
        await _async_rate(raw_task, 0.3)
        ours: list[float] = []
        theirs: list[float] = []
        for i in range(rounds):
            first, second = (tracker_task, raw_task) if i % 2 == 0 else (raw_task, tracker_task)
            a = await _async_rate(first, seconds)
            b = await _async_rate(second, seconds)
            ours.append(a if first is tracker_task else b)
            theirs.append(b if first is tracker_task else a)
        return Result("(b) TRACK SET, asyncio, 8 tasks", ours, theirs, target=0.85)
    finally:
        await tracker.close()
        await raw_client.aclose()


def run(url: str, rounds: int, seconds: float) -> list[Result]:
    settings = Settings(namespace=namespace())
    client = redis.Redis.from_url(url)
    raw_client = redis.Redis.from_url(url)
    tracker = Tracker(client, settings)
    jids = [f"job-{i:05d}" for i in range(JOBS)]
    try:
        for jid in jids:
            tracker.register(jid)
            tracker.start(jid)
        results = bench_sync(tracker, raw_client, jids, rounds, seconds)
        results.append(asyncio.run(_bench_async(url, settings, jids, rounds, seconds)))
        results.sort(key=lambda r: r.name)
        return results
    finally:
        cleanup(client, settings.namespace)
        client.close()
        raw_client.close()


def main() -> int:
    parser = url_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="rounds per side (default 9)")
    parser.add_argument(
        "--seconds", type=float, default=0.5, help="length of one round (default 0.5)"
    )
    options = parser.parse_args()
    print(f"machine: {machine()}; {options.rounds} rounds of {options.seconds} s per side")
    met = True
    with default_targets(options.url) as urls:
        for url in urls:
            label = server_label(url)
            results = run(url, options.rounds, options.seconds)
            rows = []
            for r in results:
                ok = r.ratio >= r.target
                met = met and ok
                rows.append(
                    [
                        r.name,
                        f"{median(r.tracker):,.0f}",
                        f"{median(r.raw):,.0f}",
                        f"{r.ratio:.2f}",
                        f"{r.paired:.2f}",
                        f">= {r.target}",
                        "yes" if ok else "NO",
                    ]
                )
            print(f"\n{label}, rates in operations (updates or reads) per second, medians:\n")
            print(
                table(
                    ["benchmark", "tracker/s", "raw/s", "ratio", "paired", "target", "met"],
                    rows,
                )
            )
            print("\nrounds (tracker | raw):")
            for r in results:
                ours = " ".join(f"{x:,.0f}" for x in r.tracker)
                theirs = " ".join(f"{x:,.0f}" for x in r.raw)
                print(f"  {r.name}: {ours} | {theirs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
