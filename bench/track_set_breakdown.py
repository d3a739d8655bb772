"""Where TRACK SET and TRACK GET spend their time: from the raw call to tracker's, step by step.

    python bench/track_set_breakdown.py [--url URL ...] [--rounds 5] [--seconds 0.5]

The companion of ``track_set.py``: each step adds one thing tracker does to the
raw call before it, and reports its rate (median of interleaved rounds), that
rate over the raw one, the client's CPU per operation (this process's CPU time,
kernel included) and the server's time per command (from INFO commandstats; on
a shared server other clients' commands of the same name blur it).

One at a time and asyncio (8 tasks):
  raw          a minimal HSET+PEXPIRE script by EVALSHA: 1 key, 3 arguments, replies 1
  raw fcall    the same script as a Redis function, called with FCALL
  +args        the same function work, sent tracker's hot layout: 8 keys, 11 arguments
  function     tracker's own track_set function, its call built beforehand
  tracker      Tracker.track_set / AsyncTracker.track_set: validation, plan, reply check
Batches of 100:
  raw          a pipeline of 100 raw EVALSHA calls
  function     tracker's track_set_many function, its call built beforehand
  tracker      Tracker.track_set_many
TRACK GET:
  raw          HGETALL
  +decode      HGETALL, then tracker's decoding into a Track
  tracker      Tracker.track_get

The two raw functions are loaded as a library of this run's own, deleted at the end;
tracker's own library stays loaded (other clients of a shared server may use it).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
from _common import (
    cleanup,
    default_targets,
    first_call,
    machine,
    median,
    namespace,
    server_label,
    table,
    url_parser,
)
from track_set import EXPIRY_MS, RAW_TRACK_SET, desc

from tracker import AsyncTracker, Settings, Tracker
from tracker.calls import Call

#: RAW_TRACK_SET as functions: ``raw`` takes its KEYS and ARGV; ``wide`` is handed
#: tracker's hot layout (KEYS[8] the hash, ARGV[7] percent, ARGV[9] desc).
RAW_LIBRARY = """#!lua name={name}
redis.register_function('{name}_raw', function(KEYS, ARGV)
  redis.call('HSET', KEYS[1], 'p', ARGV[1], 'd', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end)
redis.register_function('{name}_wide', function(KEYS, ARGV)
  redis.call('HSET', KEYS[8], 'p', ARGV[7], 'd', ARGV[9])
  redis.call('PEXPIRE', KEYS[8], 3600000)
  return 1
end)
"""
JOBS = 1000
TASKS = 8
BATCH = 100
CHUNK = 50


@dataclass
class Step:
    name: str
    command: str  # whose commandstats tell the server's time
    per_call: int  # operations per command
    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    server_us: list[float] = field(default_factory=list)

    def forget(self) -> None:
        self.rates.clear()
        self.cpu_us.clear()
        self.server_us.clear()


def command_usec(client: redis.Redis, command: str) -> tuple[int, int]:
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def record(step: Step, ops: int, wall: float, cpu: float, calls: int, usec: int) -> None:
    step.rates.append(ops / wall)
    step.cpu_us.append(cpu * 1e6 / ops)
    step.server_us.append(usec / max(calls, 1) / step.per_call)


def sync_round(stats: redis.Redis, step: Step, run: Callable[[], int], seconds: float) -> None:
    calls0, usec0 = command_usec(stats, step.command)
    ops, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        ops += run()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    calls1, usec1 = command_usec(stats, step.command)
    record(step, ops, wall, cpu, calls1 - calls0, usec1 - usec0)


def fcall(client: Any, name: str, keys: list[str], args: list[Any]) -> Any:
    return client.fcall(name, len(keys), *keys, *args)


def sync_steps(
    url: str, tracker: Tracker, jids: list[str], raw_name: str
) -> list[tuple[str, list[tuple[Step, Callable[[], int]]]]]:
    client = redis.Redis.from_url(url)
    raw = client.register_script(RAW_TRACK_SET)
    library = tracker._library
    keys = [tracker.keys.job(jid) for jid in jids]
    calls: list[Call] = [
        first_call(tracker.plans.track_set(jid, percent=i % 101, desc=desc(i)))
        for i, jid in enumerate(jids)
    ]
    updates = [
        [{"jid": jids[b * BATCH + i], "percent": i, "desc": desc(i)} for i in range(BATCH)]
        for b in range(JOBS // BATCH)
    ]
    many_calls: list[Call] = [first_call(tracker.plans.track_set_many(u)) for u in updates]
    at = [0]

    def loop(body: Callable[[int], object]) -> Callable[[], int]:
        def run() -> int:
            first = at[0]
            for i in range(first, first + CHUNK):
                body(i % JOBS)
            at[0] = first + CHUNK
            return CHUNK

        return run

    def batch(body: Callable[[int], object]) -> Callable[[], int]:
        def run() -> int:
            at[0] += 1
            body(at[0] % len(updates))
            return BATCH

        return run

    def raw_pipeline(b: int) -> None:
        pipe = client.pipeline(transaction=False)
        for i in range(BATCH):
            raw(keys=[keys[b * BATCH + i]], args=[i, desc(i), EXPIRY_MS], client=pipe)
        pipe.execute()

    one_at_a_time = [
        (
            Step("raw", "evalsha", 1),
            loop(lambda i: raw(keys=[keys[i]], args=[i % 101, desc(i), EXPIRY_MS])),
        ),
        (
            Step("raw fcall", "fcall", 1),
            loop(
                lambda i: fcall(client, raw_name + "_raw", [keys[i]], [i % 101, desc(i), EXPIRY_MS])
            ),
        ),
        (
            Step("+args", "fcall", 1),
            loop(lambda i: fcall(client, raw_name + "_wide", calls[i].keys, calls[i].args)),
        ),
        (
            Step("function", "fcall", 1),
            loop(lambda i: library.call(client, "track_set", calls[i].keys, calls[i].args)),
        ),
        (
            Step("tracker", "fcall", 1),
            loop(lambda i: tracker.track_set(jids[i], percent=i % 101, desc=desc(i))),
        ),
    ]
    batches = [
        (Step("raw", "evalsha", 1), batch(raw_pipeline)),
        (
            Step("function", "fcall", BATCH),
            batch(
                lambda b: library.call(
                    client, "track_set_many", many_calls[b].keys, many_calls[b].args
                )
            ),
        ),
        (Step("tracker", "fcall", BATCH), batch(lambda b: tracker.track_set_many(updates[b]))),
    ]
    gets = [
        (Step("raw", "hgetall", 1), loop(lambda i: client.hgetall(keys[i]))),
        (
            Step("+decode", "hgetall", 1),
            loop(lambda i: tracker.plans.decode(jids[i], client.hgetall(keys[i]))),
        ),
        (Step("tracker", "hgetall", 1), loop(lambda i: tracker.track_get(jids[i]))),
    ]
    return [
        ("TRACK SET, sync, one at a time", one_at_a_time),
        ("TRACK SET, batches of 100", batches),
        ("TRACK GET, sync", gets),
    ]


async def async_steps(
    url: str,
    settings: Settings,
    jids: list[str],
    raw_name: str,
    stats: redis.Redis,
    rounds: int,
    seconds: float,
) -> list[Step]:
    client = redis.asyncio.Redis.from_url(url)
    tracker = AsyncTracker(redis.asyncio.Redis.from_url(url), settings)
    raw = client.register_script(RAW_TRACK_SET)
    library = tracker._library
    keys = [tracker.keys.job(jid) for jid in jids]
    calls = [
        first_call(tracker.plans.track_set(jid, percent=i % 101, desc=desc(i)))
        for i, jid in enumerate(jids)
    ]
    share = JOBS // TASKS
    bodies: list[tuple[Step, Callable[[int], Awaitable[object]]]] = [
        (
            Step("raw", "evalsha", 1),
            lambda i: raw(keys=[keys[i]], args=[i % 101, desc(i), EXPIRY_MS]),
        ),
        (
            Step("raw fcall", "fcall", 1),
            lambda i: fcall(client, raw_name + "_raw", [keys[i]], [i % 101, desc(i), EXPIRY_MS]),
        ),
        (
            Step("+args", "fcall", 1),
            lambda i: fcall(client, raw_name + "_wide", calls[i].keys, calls[i].args),
        ),
        (
            Step("function", "fcall", 1),
            lambda i: library.acall(client, "track_set", calls[i].keys, calls[i].args),
        ),
        (
            Step("tracker", "fcall", 1),
            lambda i: tracker.track_set(jids[i], percent=i % 101, desc=desc(i)),
        ),
    ]

    async def task(body: Callable[[int], Awaitable[object]], n: int, deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            for i in range(CHUNK):
                await body(n * share + i % share)
            done += CHUNK
        return done

    async def one_round(step: Step, body: Callable[[int], Awaitable[object]], span: float) -> None:
        calls0, usec0 = command_usec(stats, step.command)
        start, cpu = time.perf_counter(), time.process_time()
        counts = await asyncio.gather(*(task(body, n, start + span) for n in range(TASKS)))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        calls1, usec1 = command_usec(stats, step.command)
        record(step, sum(counts), wall, cpu, calls1 - calls0, usec1 - usec0)

    try:
        for step, body in bodies:  # warm up, then forget
            await one_round(step, body, 0.2)
            step.forget()
        for r in range(rounds):
            order = bodies if r % 2 == 0 else bodies[::-1]
            for step, body in order:
                await one_round(step, body, seconds)
        return [step for step, _ in bodies]
    finally:
        await client.aclose()
        await tracker.close()


def report(title: str, steps: list[Step]) -> None:
    raw = median(steps[0].rates)
    rows = [
        [
            step.name,
            f"{median(step.rates):,.0f}",
            f"{median(step.rates) / raw:.2f}",
            f"{median(step.cpu_us):.1f}",
            f"{median(step.server_us):.1f}",
        ]
        for step in steps
    ]
    print(f"\n{title}:\n")
    print(
        table(
            ["step", "ops/s", "x raw", "client CPU us/op", "server us/op"],
            rows,
        )
    )


def run(url: str, rounds: int, seconds: float) -> None:
    settings = Settings(namespace=namespace())
    raw_name = settings.namespace  # the raw library's name: this run's own
    client = redis.Redis.from_url(url)
    tracker = Tracker(client, settings)
    jids = [f"job-{i:05d}" for i in range(JOBS)]
    try:
        client.function_load(RAW_LIBRARY.format(name=raw_name))
        for jid in jids:
            tracker.register(jid)
            tracker.start(jid)
        for title, steps in sync_steps(url, tracker, jids, raw_name):
            for step, body in steps:  # warm up, then forget
                sync_round(client, step, body, 0.2)
                step.forget()
            for r in range(rounds):
                for step, body in steps if r % 2 == 0 else steps[::-1]:
                    sync_round(client, step, body, seconds)
            report(title, [step for step, _ in steps])
        report(
            f"TRACK SET, asyncio, {TASKS} tasks",
            asyncio.run(async_steps(url, settings, jids, raw_name, client, rounds, seconds)),
        )
    finally:
        with contextlib.suppress(redis.exceptions.ResponseError):
            client.function_delete(raw_name)
        cleanup(client, settings.namespace)
        client.close()


def main() -> int:
    parser = url_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per step (default 5)")
    parser.add_argument("--seconds", type=float, default=0.5, help="one round (default 0.5)")
    options = parser.parse_args()
    print(f"machine: {machine()}; {options.rounds} rounds of {options.seconds} s per step")
    with default_targets(options.url) as urls:
        for url in urls:
            print(f"\n## {server_label(url)}")
            run(url, options.rounds, options.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
