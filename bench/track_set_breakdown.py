"""Where TRACK SET and TRACK GET spend their time: from the raw call to tracker's, step by step.

    python bench/track_set_breakdown.py [--url URL ...] [--quick] [--rounds 5] [--seconds 0.5]

The companion of ``track_set.py``: each step adds one thing tracker does to the raw
call before it, and reports its rate (median of rounds, the order rotating), that
rate over the raw one, the client's CPU per operation (this process, kernel
included) and the server's time per operation (INFO commandstats; on a shared
server, other clients' commands of the same name blur it).

One at a time, and asyncio (8 tasks):
  raw          a minimal HSET+PEXPIRE script by EVALSHA: 1 key, 3 arguments, replies 1
  raw fcall    the same script as a Redis function, called with FCALL
  +args        the same work, sent TRACK SET's KEYS and ARGV as tracker builds them
  function     tracker's own track_set function, its call built beforehand
  tracker      Tracker.track_set / AsyncTracker.track_set: validation, plan, reply check
Batches of 100: raw (a pipeline of 100 EVALSHA), function (track_set_many, built
beforehand), tracker (Tracker.track_set_many). TRACK GET: raw (HGETALL), +decode
(HGETALL, then tracker's decoding into a Track), tracker (Tracker.track_get).

The two raw functions are a library of the run's own, deleted at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
from _harness import cleanup, command_stats, label, machine, median, namespace, parser, stores
from _harness import table as print_table
from _internals import HOT_LAYOUT, aprebuilt, decode, hot_call, job_key, plans, prebuilt
from track_set import EXPIRY_MS, RAW_TRACK_SET, desc

from tracker import AsyncTracker, Settings, Tracker

RAW_LIBRARY = """#!lua name={name}
redis.register_function('{name}_raw', function(KEYS, ARGV)
  redis.call('HSET', KEYS[1], 'p', ARGV[1], 'd', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end)
redis.register_function('{name}_wide', function(KEYS, ARGV)
  redis.call('HSET', KEYS[{hash}], 'p', ARGV[{percent}], 'd', ARGV[{desc}])
  redis.call('PEXPIRE', KEYS[{hash}], 3600000)
  return 1
end)
"""
JOBS, TASKS, BATCH, CHUNK = 1000, 8, 100, 50


@dataclass
class Step:
    name: str
    command: str  # whose commandstats give the server's time
    per_call: int  # operations per command
    body: Callable[[int], Any]
    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    server_us: list[float] = field(default_factory=list)


def measured(stats: redis.Redis, step: Step, ops_of: Callable[[], int], keep: bool) -> None:
    before = command_stats(stats).get(step.command, (0, 0))
    start, cpu = time.perf_counter(), time.process_time()
    ops = ops_of()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if keep:
        record(step, ops, wall, cpu, before, command_stats(stats))


def record(step: Step, ops: int, wall: float, cpu: float, before: Any, stats: Any) -> None:
    after = stats.get(step.command, (0, 0))
    step.rates.append(ops / wall)
    step.cpu_us.append(cpu * 1e6 / ops)
    step.server_us.append((after[1] - before[1]) / max(after[0] - before[0], 1) / step.per_call)


def fcall(client: Any, name: str, keys: list[str], args: list[Any]) -> Any:
    return client.fcall(name, len(keys), *keys, *args)


def steps(client: Any, tracker: Any, jids: list[str], raw_name: str, asyncio_: bool) -> list[Step]:
    """The one-at-a-time steps, for a sync client or an asyncio one."""
    raw = client.register_script(RAW_TRACK_SET)
    keys = [job_key(tracker, jid) for jid in jids]
    built = prebuilt if not asyncio_ else aprebuilt
    ts = [plans(tracker).track_set(j, percent=i % 101, desc=desc(i)) for i, j in enumerate(jids)]
    hot = [hot_call(tracker, j, i % 101, desc(i)) for i, j in enumerate(jids)]
    calls = [built(tracker, plan) for plan in ts]
    raw_args = [[i % 101, desc(i), EXPIRY_MS] for i in range(len(jids))]
    wide, narrow = raw_name + "_wide", raw_name + "_raw"
    return [
        Step("raw", "evalsha", 1, lambda i: raw(keys=[keys[i]], args=raw_args[i])),
        Step("raw fcall", "fcall", 1, lambda i: fcall(client, narrow, [keys[i]], raw_args[i])),
        Step("+args", "fcall", 1, lambda i: fcall(client, wide, hot[i].keys, hot[i].args)),
        Step("function", "fcall", 1, lambda i: calls[i](client)),
        Step(
            "tracker",
            "fcall",
            1,
            lambda i: tracker.track_set(jids[i], percent=i % 101, desc=desc(i)),
        ),
    ]


def sync_tables(
    tracker: Tracker, client: redis.Redis, jids: list[str], raw_name: str
) -> dict[str, list[Step]]:
    raw = client.register_script(RAW_TRACK_SET)
    keys = [job_key(tracker, jid) for jid in jids]
    updates = [
        [{"jid": jids[b * BATCH + i], "percent": i, "desc": desc(i)} for i in range(BATCH)]
        for b in range(JOBS // BATCH)
    ]
    many = [prebuilt(tracker, plans(tracker).track_set_many(u)) for u in updates]
    raw_get = lambda i: client.hgetall(keys[i])  # noqa: E731

    def raw_pipeline(b: int) -> None:
        pipe = client.pipeline(transaction=False)
        for i in range(BATCH):
            raw(keys=[keys[b * BATCH + i]], args=[i, desc(i), EXPIRY_MS], client=pipe)
        pipe.execute()

    return {
        "TRACK SET, sync, one at a time": steps(client, tracker, jids, raw_name, False),
        "TRACK SET, batches of 100": [
            Step("raw", "evalsha", 1, raw_pipeline),
            Step("function", "fcall", BATCH, lambda b: many[b](client)),
            Step("tracker", "fcall", BATCH, lambda b: tracker.track_set_many(updates[b])),
        ],
        "TRACK GET, sync": [
            Step("raw", "hgetall", 1, lambda i: client.hgetall(keys[i])),
            Step("+decode", "hgetall", 1, lambda i: decode(tracker, jids[i], raw_get(i))),
            Step("tracker", "hgetall", 1, lambda i: tracker.track_get(jids[i])),
        ],
    }


def sync_ops(step: Step, batches: bool, seconds: float) -> Callable[[], int]:
    def run() -> int:
        ops, at, start = 0, 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(1 if batches else CHUNK):
                step.body(at % (JOBS // BATCH if batches else JOBS))
                at += 1
                ops += BATCH if batches else 1
        return ops

    return run


async def async_table(url: str, settings: Settings, jids: list[str], raw_name: str,
                      stats: redis.Redis, rounds: int, seconds: float) -> list[Step]:  # fmt: skip
    client = redis.asyncio.Redis.from_url(url)
    tracker = AsyncTracker(redis.asyncio.Redis.from_url(url), settings)
    share = JOBS // TASKS
    try:
        bodies = steps(client, tracker, jids, raw_name, True)

        async def task(step: Step, n: int, deadline: float) -> int:
            done = 0
            while time.perf_counter() < deadline:
                for i in range(CHUNK):
                    await step.body(n * share + i % share)
                done += CHUNK
            return done

        async def one(step: Step, span: float, keep: bool) -> None:
            before = command_stats(stats).get(step.command, (0, 0))
            start, cpu = time.perf_counter(), time.process_time()
            counts = await asyncio.gather(*(task(step, n, start + span) for n in range(TASKS)))
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            if keep:
                record(step, sum(counts), wall, cpu, before, command_stats(stats))

        for step in bodies:
            await one(step, 0.2, keep=False)
        for r in range(rounds):
            for step in bodies if r % 2 == 0 else bodies[::-1]:
                await one(step, seconds, keep=True)
        return bodies
    finally:
        await client.aclose()
        await tracker.close()


def report(title: str, done: list[Step]) -> None:
    raw = median(done[0].rates)
    print(f"\n{title}:\n")
    print_table(
        ["step", "ops/s", "x raw", "client CPU us/op", "server us/op"],
        [[s.name, f"{median(s.rates):,.0f}", f"{median(s.rates) / raw:.2f}",
          f"{median(s.cpu_us):.1f}", f"{median(s.server_us):.1f}"] for s in done],
    )  # fmt: skip


def run(url: str, rounds: int, seconds: float) -> None:
    settings = Settings(namespace=namespace())
    raw_name = settings.namespace  # the raw library's name: the run's own
    client = redis.Redis.from_url(url)
    tracker = Tracker(client, settings)
    jids = [f"job-{i:05d}" for i in range(JOBS)]
    try:
        client.function_load(RAW_LIBRARY.format(name=raw_name, **HOT_LAYOUT))
        for jid in jids:
            tracker.register(jid)
            tracker.start(jid)
        for title, table in sync_tables(tracker, client, jids, raw_name).items():
            batches = "batches" in title
            for step in table:
                measured(client, step, sync_ops(step, batches, 0.2), keep=False)
            for r in range(rounds):
                for step in table if r % 2 == 0 else table[::-1]:
                    measured(client, step, sync_ops(step, batches, seconds), keep=True)
            report(title, table)
        done = asyncio.run(async_table(url, settings, jids, raw_name, client, rounds, seconds))
        report(f"TRACK SET, asyncio, {TASKS} tasks", done)
    finally:
        with contextlib.suppress(redis.exceptions.ResponseError):
            client.function_delete(raw_name)
        cleanup(client, settings.namespace)
        client.close()


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--rounds", type=int, default=5, help="rounds per step (default 5)")
    options.add_argument("--seconds", type=float, default=0.5, help="one round (default 0.5)")
    args = options.parse_args()
    if args.quick:
        args.rounds, args.seconds = 3, 0.3
    print(f"machine: {machine()}; {args.rounds} rounds of {args.seconds} s per step")
    with stores(args.url) as urls:
        for url in urls:
            print(f"\n## {label(url)}")
            run(url, args.rounds, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
