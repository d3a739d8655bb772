"""progress() inside a tracked job, against raw EVALSHA round trips and RQ's save_meta.

    python bench/progress.py [--url URL ...] [--quick] [--jobs 200] [--rounds 200] [--calls 100]

(a) Inside real jobs: ``--jobs`` tracked jobs of :func:`progress_against_raw`, enqueued
    with ``Tracker.enqueue`` and run by the worker of ``tracker worker --simple`` (burst
    mode, its watch thread running as in production). Each job times ``--calls``
    ``progress(percent=i)`` and as many EVALSHA of a minimal script (HSET of percent on
    the job's hash, EXPIRE) through the same client; which goes first alternates.
(b) Directly: one job registered, started and marked as this thread's running job (as
    the worker marks it), then rounds of blocks of ``--calls``, the order rotating:
    ``progress``, ``Tracker.track_set``, TRACK SET's function with its call built
    beforehand, the raw EVALSHA, and the call built but not sent.

The figure is the median of the jobs' (or rounds') own progress/raw ratios, with
their range; per call also the client CPU and the server's FCALL or EVALSHA time.
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
    command_stats,
    label,
    machine,
    median,
    namespace,
    paired,
    parser,
    ratios,
    stores,
    table,
    tag,
    timed_burst,
    verdict,
)
from _internals import (
    TrackedSimpleWorker,
    first_call,
    job_key,
    plans,
    prebuilt,
    running_job,
    running_tracker,
)

from tracker import Settings, Tracker, progress

#: The least a progress report must do: write percent to the job's hash, set its expiry.
RAW_PROGRESS = """
-- KEYS[1] the job's hash; ARGV[1] percent, ARGV[2] expiry (s)
redis.call('HSET', KEYS[1], 'p', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""
RAW_EXPIRY = 86_400
TARGET = 1.2  # progress / raw, at most


def progress_against_raw(calls: int, raw_first: bool) -> list[float]:
    """Run inside a tracked job: seconds of ``calls`` progress() and of ``calls`` raw
    EVALSHA on the job's hash, through the tracker's client: ``[progress, raw]``."""
    tracker, jid = running_tracker()
    raw = tracker.client.register_script(RAW_PROGRESS)
    keys = [job_key(tracker, jid)]
    progress(percent=0)
    raw(keys=keys, args=[0, RAW_EXPIRY])  # SCRIPT LOAD, untimed

    def timed(call: Callable[[int], object]) -> float:
        start = time.perf_counter()
        for i in range(calls):
            call(i)
        return time.perf_counter() - start

    sides = [lambda i: progress(percent=i), lambda i: raw(keys=keys, args=[i, RAW_EXPIRY])]
    if raw_first:
        raw_seconds = timed(sides[1])
        return [timed(sides[0]), raw_seconds]
    return [timed(sides[0]), timed(sides[1])]


def inside_jobs(url: str, jobs: int, calls: int) -> list[list[float]]:
    """(a): ``[progress, raw]`` seconds, one pair per job."""
    settings = Settings(namespace=namespace())
    tracker = Tracker.from_url(url, settings)
    run = tag("bp")
    try:
        queue = rq.Queue(f"{run}-q", connection=tracker.client)
        jids = [
            tracker.enqueue(progress_against_raw, [calls, i % 2 == 1], jid=f"{run}-{i:04d}",
                            queue=queue.name)
            for i in range(jobs)
        ]  # fmt: skip
        worker = TrackedSimpleWorker(
            [queue], connection=tracker.client, tracker=tracker, name=f"{run}-w"
        )
        timed_burst(worker)
        states = tracker.stats().states
        assert states == {"success": jobs}, states
        return [rq.job.Job.fetch(j, connection=tracker.client).return_value() for j in jids]
    finally:
        cleanup(tracker.client, settings.namespace)
        cleanup_rq(tracker.client, run)
        tracker.close()


def direct(url: str, rounds: int, calls: int) -> dict[str, list[tuple[float, float, float]]]:
    """(b): per side, per round: (wall s, client CPU s, server us) of a block of ``calls``."""
    settings = Settings(namespace=namespace())
    tracker = Tracker.from_url(url, settings)
    jid = "job-0001"
    try:
        tracker.register(jid)
        tracker.start(jid)
        raw = tracker.client.register_script(RAW_PROGRESS)
        keys = [job_key(tracker, jid)]
        built = [prebuilt(tracker, plans(tracker).track_set(jid, percent=i)) for i in range(calls)]
        sides: dict[str, tuple[str, Callable[[int], object]]] = {
            "progress": ("fcall", lambda i: progress(percent=i)),
            "Tracker.track_set": ("fcall", lambda i: tracker.track_set(jid, percent=i)),
            "TRACK SET's function, built before": ("fcall", lambda i: built[i](tracker.client)),
            "raw EVALSHA": ("evalsha", lambda i: raw(keys=keys, args=[i, RAW_EXPIRY])),
            "TRACK SET's call built, not sent": (
                "none", lambda i: first_call(plans(tracker).track_set(jid, percent=i))),
        }  # fmt: skip
        got: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sides}
        names = list(sides)
        with running_job(tracker, jid):
            for r in range(-1, rounds):  # round -1 warms up (and loads the raw script)
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    command, call = sides[name]
                    before = command_stats(tracker.client).get(command, (0, 0))
                    cpu, start = time.process_time(), time.perf_counter()
                    for i in range(calls):
                        call(i)
                    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                    after = command_stats(tracker.client).get(command, (0, 0))
                    if r >= 0:
                        got[name].append((wall, cpu, (after[1] - before[1]) / calls))
        return got
    finally:
        cleanup(tracker.client, settings.namespace)
        tracker.close()


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--jobs", type=int, default=200, help="jobs for (a) (default 200)")
    options.add_argument("--rounds", type=int, default=200, help="rounds for (b) (default 200)")
    options.add_argument("--calls", type=int, default=100, help="calls per block (default 100)")
    args = options.parse_args()
    if args.quick:
        args.jobs, args.rounds = 50, 50
    calls = args.calls
    print(f"machine: {machine()}; redis-py {redis.__version__}, rq {rq.__version__}; "
          f"(a) {args.jobs} jobs, (b) {args.rounds} rounds; {calls} calls a block")  # fmt: skip
    rows, parts = [], []
    with stores(args.url) as urls:
        for url in urls:
            server = label(url)
            pairs = inside_jobs(url, args.jobs, calls)
            ours, theirs = [p for p, _ in pairs], [r for _, r in pairs]
            sides = [("(a) progress, in a running job", ours, theirs)]
            blocks = direct(url, args.rounds, calls)
            raw = [b[0] for b in blocks["raw EVALSHA"]]
            for name, side in (
                ("(b) progress, context set", "progress"),
                ("(b) Tracker.track_set", "Tracker.track_set"),
            ):
                sides.append((name, [b[0] for b in blocks[side]], raw))  # fmt: skip
            for name, a, b in sides:
                rows.append([server, name, f"{median(a) / calls * 1e6:,.0f}",
                             f"{median(b) / calls * 1e6:,.0f}", paired(a, b, 3), f"<= {TARGET}",
                             verdict(median(ratios(a, b)) <= TARGET)])  # fmt: skip
            for name, block in blocks.items():
                parts.append([server, name, f"{median([b[0] for b in block]) / calls * 1e6:.1f}",
                              f"{median([b[1] for b in block]) / calls * 1e6:.1f}",
                              f"{median([b[2] for b in block]):.1f}"])  # fmt: skip
    print(f"\nus per call, medians; ratio progress / raw with its range ({calls} calls):\n")
    table(["server", "side", "us/call", "raw us/call", "ratio (range)", "target", "met"], rows)
    print("\n(b) per call, medians: wall us, client CPU us, server us (FCALL or EVALSHA):\n")
    table(["server", "side", "wall", "client CPU", "server"], parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
