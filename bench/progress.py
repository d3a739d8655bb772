"""progress() x100 inside a tracked job, against 100 raw EVALSHA round trips.

    python bench/progress.py [--url URL ...] [--jobs 200] [--rounds 200] [--calls 100]

(a) Inside real jobs: ``--jobs`` tracked jobs of ``_common.progress_against_raw``,
    enqueued with ``Tracker.enqueue`` and run by the worker of ``tracker worker
    --simple`` (a ``TrackedSimpleWorker``, burst mode). Each job times its own 100
    ``progress(percent=i)`` calls and 100 ``EVALSHA`` of a minimal script (HSET of
    percent on the job's hash, EXPIRE) through the same client, the tracker's, from
    the same thread, so on the same pooled connection; which goes first alternates
    from job to job. The worker's watch thread runs beside each job, as it does in
    production.
(b) Directly: one job registered and started, and marked as the running one in this
    thread with ``context.enter`` (what the worker does before it calls the job), then
    rounds of three blocks of 100 calls, the order rotating: ``progress(percent=i)``,
    ``Tracker.track_set(jid, percent=i)`` (the TRACK SET beneath progress, without
    the context lookup), and the raw EVALSHA.

The figure judged is the ratio of the median times, progress / raw ("paired" is the
median of each job's or round's own ratio). (a) is the faithful one: the job runs as
it does in production, its watch thread included; (b) has no worker around it and
takes more samples, and its third side tells progress()'s own cost from TRACK SET's.
The run's namespace and RQ keys are deleted afterwards; the raw script stays in the
server's script cache.
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
    RAW_EXPIRY,
    RAW_PROGRESS,
    cleanup,
    cleanup_matching,
    command_delta,
    command_stats,
    default_targets,
    first_call,
    machine,
    median,
    namespace,
    progress_against_raw,
    server_label,
    server_time,
    table,
    timed_burst,
    url_parser,
)

from tracker import Settings, Tracker, context, progress
from tracker.worker import TrackedSimpleWorker

TARGET = 1.2


def inside_jobs(url: str, jobs: int, calls: int) -> list[list[float]]:
    """(a): ``[progress, raw]`` seconds, one pair per job."""
    settings = Settings(namespace=namespace())
    tracker = Tracker.from_url(url, settings)
    tag = "bp" + uuid.uuid4().hex[:8]
    try:
        queue = rq.Queue(f"{tag}-q", connection=tracker.client)
        jids = [
            tracker.enqueue(
                progress_against_raw, [calls, i % 2 == 1], jid=f"{tag}-{i:04d}", queue=queue.name
            )
            for i in range(jobs)
        ]
        worker = TrackedSimpleWorker(
            [queue], connection=tracker.client, tracker=tracker, name=f"{tag}-w"
        )
        timed_burst(worker)
        states = tracker.stats().states
        assert states == {"success": jobs}, states
        results = []
        for jid in jids:
            value = rq.job.Job.fetch(jid, connection=tracker.client).return_value()
            assert isinstance(value, list) and len(value) == 2, value
            results.append(value)
        return results
    finally:
        cleanup(tracker.client, settings.namespace)
        cleanup_matching(tracker.client, tag)
        tracker.close()


@dataclass
class Block:
    """One side of (b): per block, wall and client CPU seconds; in all, the server's
    commands (name -> calls, usec)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    commands: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, commands: dict[str, tuple[int, int]]) -> None:
        for name, (calls, usec) in commands.items():
            calls0, usec0 = self.commands.get(name, (0, 0))
            self.commands[name] = (calls0 + calls, usec0 + usec)


def direct(url: str, rounds: int, calls: int) -> dict[str, Block]:
    """(b): each side's blocks of ``calls``, one per round."""
    settings = Settings(namespace=namespace())
    tracker = Tracker.from_url(url, settings)
    jid = "job-0001"
    try:
        tracker.register(jid)
        tracker.start(jid)
        raw = tracker.client.register_script(RAW_PROGRESS)
        keys = [tracker.keys.job(jid)]

        def with_progress() -> None:
            for i in range(calls):
                progress(percent=i)

        def with_track_set() -> None:
            for i in range(calls):
                tracker.track_set(jid, percent=i)

        def with_raw() -> None:
            for i in range(calls):
                raw(keys=keys, args=[i, RAW_EXPIRY])

        prebuilt = [first_call(tracker.plans.track_set(jid, percent=i)) for i in range(calls)]

        def with_function() -> None:
            for call in prebuilt:
                tracker._library.call(tracker.client, call.script, call.keys, call.args)

        def plan_only() -> None:
            for i in range(calls):
                first_call(tracker.plans.track_set(jid, percent=i))

        sides: list[tuple[str, Callable[[], None]]] = [
            ("progress", with_progress),
            ("track_set", with_track_set),
            ("function", with_function),
            ("raw", with_raw),
            ("plan", plan_only),
        ]
        blocks = {name: Block() for name, _ in sides}
        token = context.enter(tracker, jid)
        try:
            for _, run_block in sides:  # warm up, and SCRIPT LOAD the raw script
                run_block()
            for r in range(rounds):
                k = r % len(sides)
                for name, run_block in sides[k:] + sides[:k]:
                    block = blocks[name]
                    before = command_stats(tracker.client)
                    cpu = time.process_time()
                    start = time.perf_counter()
                    run_block()
                    block.wall.append(time.perf_counter() - start)
                    block.cpu.append(time.process_time() - cpu)
                    block.add(command_delta(before, command_stats(tracker.client)))
        finally:
            context.leave(token)
        return blocks
    finally:
        cleanup(tracker.client, settings.namespace)
        tracker.close()


def row(
    label: str, name: str, ours: list[float], raw: list[float], calls: int
) -> tuple[list[str], float]:
    ratio = median(ours) / median(raw)
    paired = median([a / b for a, b in zip(ours, raw, strict=True)])
    return [
        label,
        name,
        f"{median(ours) / calls * 1e6:,.0f}",
        f"{median(raw) / calls * 1e6:,.0f}",
        f"{ratio:.3f}",
        f"{paired:.3f}",
        f"<= {TARGET}",
        "yes" if ratio <= TARGET else "NO",
    ], ratio


def main() -> int:
    parser = url_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs for (a) (default 200)")
    parser.add_argument("--rounds", type=int, default=200, help="rounds for (b) (default 200)")
    parser.add_argument("--calls", type=int, default=100, help="calls per block (default 100)")
    options = parser.parse_args()
    calls = options.calls
    print(
        f"machine: {machine()}; redis-py {redis.__version__}, rq {rq.__version__}; "
        f"(a) {options.jobs} jobs, (b) {options.rounds} rounds; {calls} calls per block"
    )
    rows: list[list[str]] = []
    parts: list[list[str]] = []
    servers: list[str] = []
    with default_targets(options.url) as urls:
        for url in urls:
            label = server_label(url)
            pairs = inside_jobs(url, options.jobs, calls)
            rows.append(
                row(
                    label,
                    "(a) progress, in a running job",
                    [p for p, _ in pairs],
                    [r for _, r in pairs],
                    calls,
                )[0]
            )
            blocks = direct(url, options.rounds, calls)
            raw_wall = blocks["raw"].wall
            for name, text in (
                ("progress", "(b) progress, context set"),
                ("track_set", "(b) Tracker.track_set"),
            ):
                rows.append(row(label, text, blocks[name].wall, raw_wall, calls)[0])
            for name, text in (
                ("progress", "progress"),
                ("track_set", "Tracker.track_set"),
                ("function", "TRACK SET's function, its call built beforehand"),
                ("raw", "raw EVALSHA"),
                ("plan", "TRACK SET's call built, not sent"),
            ):
                block = blocks[name]
                per = calls * len(block.wall)
                outer = "evalsha" if name == "raw" else "fcall"
                server = block.commands.get(outer, (0, 0))[1] / per
                parts.append(
                    [
                        label,
                        text,
                        f"{median(block.wall) / calls * 1e6:,.1f}",
                        f"{median(block.cpu) / calls * 1e6:,.1f}",
                        f"{server:.1f}" if name != "plan" else "",
                    ]
                )
                if name in ("progress", "raw"):
                    servers.append(f"{label}, {text}: {server_time(block.commands, per, outer)}")
    print(f"\nus per call, medians; ratio = median time / median raw time ({calls} calls):\n")
    header = ["server", "side", "us/call", "raw us/call", "ratio", "paired", "target", "met"]
    print(table(header, rows))
    print("\n(b) per call: wall and client CPU us (this process, kernel included), medians of")
    print("the blocks; server us (the side's FCALL or EVALSHA, INFO commandstats, mean):\n")
    print(table(["server", "side", "wall", "client CPU", "server"], parts))
    print("\n(b) server time per call:\n")
    print("\n".join(servers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
