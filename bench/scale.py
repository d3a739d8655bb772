"""Reads, registers and upkeep against a large state: does any call grow with it?

    python bench/scale.py [--url URL] [--quick] [--sizes 1000 100000] [--full] [--rounds 5]

For each size N (``--full`` adds 1,000,000) a fresh server (an embedded Valkey, or
with ``--url redis-server`` a private Redis; a ``--url`` of a running server is used
as it is, the keys made deleted after, and SLOWLOG's configuration changed) is filled
through tracker's own plans, pipelined: N live tracks in 1,000 queues, 90% of them
with 3 labels (``env=prod``, ``team`` of 100 values, ``batch`` of N / 10 values),
1% working, 0.01% failed, and ``root``, registered last, which N / 10 jobs wait for (registered
before it: any order is allowed). Then, each ``--rounds`` times (medians shown, with
the range):

- ``label, no match``: the first page of ``label=env:prod``, ``state=enqueued`` and
  ``queue=q0`` (whose jobs carry no label): the page comes back empty, with ``next``;
- ``label, match``: the first page of ``label=env:prod`` and ``state=enqueued``;
- ``label, rare state``: the first page of ``label=env:prod`` and ``state=failed``
  (1 labelled job in 10,000 failed);
- ``list 1000``: ``list(limit=1000)`` across every queue and state;
- ``list state``: ``list(state="enqueued", limit=50)``;
- ``maintenance``: one ``Maintenance.run_once()`` with nothing due (after untimed
  rounds that finish what is due), then one with
  every label zset and state band made due (scores set to 0: the worst a round meets);
- ``register root``: ``root`` with a prerequisite of its own (accepted, waiting),
  deleted again between rounds; and ``register huge``: a job 3,000 others wait for,
  with a batch of 3,000 children as prerequisite, refused for its size (the cycle
  check's whole budget).

Columns: wall time of the call (ms), FCALLs it made, their server time (ms, from INFO
commandstats), the longest single command (ms, an FCALL or any other, from SLOWLOG at
0.5 ms, < 0.5 when none) and how many commands of all rounds took over 5 ms.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis
from _harness import (
    cleanup,
    label,
    machine,
    median,
    namespace,
    parser,
    server_usec,
    stores,
    table,
)
from _internals import job_key, key, load_library, pipelined, plans

from tracker import Conflict, Settings, Tracker
from tracker.upkeep import Maintenance

QUEUES = 1000
LABEL = "env:prod"  # 9 jobs in 10 carry it; those of queue q0 never
CHUNK = 5000


def fill(tracker: Tracker, n: int) -> None:
    """N live tracks, 1% working, 90% labelled, and ``root`` that N / 10 jobs wait for."""
    waiting = n // 10
    load_library(tracker)  # pipelined calls cannot load it on the way

    def jobs(start: int, stop: int) -> Iterator[Any]:
        for i in range(start, stop):
            fields: dict[str, Any] = {"queue": f"q{i % QUEUES}"}
            if i % 10:
                fields["labels"] = {"env": "prod", "team": f"t{i % 100}", "batch": f"b{i // 10}"}
            if i < waiting:
                fields["prerequisites"] = ["root"]
            yield plans(tracker).register(f"job-{i:07d}", **fields)

    for start in range(0, n, CHUNK):
        pipelined(tracker, jobs(start, min(n, start + CHUNK)))
    pipelined(tracker, (plans(tracker).start(f"job-{i:07d}") for i in range(waiting, n, 100)))
    failing = range(waiting + 1, n, 10_000)  # labelled: 1 in 10,000 fails
    pipelined(tracker, (plans(tracker).start(f"job-{i:07d}") for i in failing))
    pipelined(tracker, (plans(tracker).fail(f"job-{i:07d}", "boom") for i in failing))
    tracker.register("big", batch=True)
    pipelined(tracker, (plans(tracker).register(f"child-{i}", parent="big") for i in range(3000)))
    leaves = (plans(tracker).register(f"leaf-{i}", prerequisites=["huge"]) for i in range(3000))
    pipelined(tracker, leaves)


@contextlib.contextmanager
def slowlog(client: redis.Redis, slower_than_us: int) -> Iterator[list[dict[str, Any]]]:
    """SLOWLOG entries slower than the threshold inside the block: FCALLs, and any
    command, those a function runs included (a plain read can hold Redis too)."""
    client.slowlog_reset()
    client.config_set("slowlog-log-slower-than", slower_than_us)
    entries: list[dict[str, Any]] = []
    try:
        yield entries
    finally:
        got = client.slowlog_get(100_000)
        client.config_set("slowlog-log-slower-than", 10_000)
        client.slowlog_reset()
        entries.extend(got)


def measure(client: redis.Redis, run: Callable[[], object]) -> tuple[Any, ...]:
    """(wall ms, FCALLs, their server ms, the longest command's ms, how many commands
    took over 5 ms) of one call of ``run``."""
    with slowlog(client, 500) as slow, server_usec(client) as fcall:
        start = time.perf_counter()
        run()
        wall = (time.perf_counter() - start) * 1000
    calls, usec = fcall
    top = max(slow, key=lambda e: e["duration"], default=None)
    longest = (top["duration"] / 1000, top["command"].split()[0].decode()) if top else (0, "")
    return wall, calls, usec / 1000, longest, sum(e["duration"] > 5000 for e in slow)


def register_root(tracker: Tracker) -> None:
    track = tracker.register("root", prerequisites=["prep"]).track
    assert track.state.value == "waiting", track


def register_huge(tracker: Tracker) -> None:
    """Refused for its size (accepted before the budget, then undone for the next round)."""
    with contextlib.suppress(Conflict):
        tracker.register("huge", prerequisites=["big"])
        tracker.client.delete(job_key(tracker, "huge"))
        tracker.client.srem(key(tracker, "dependents", "big"), job_key(tracker, "huge"))


Case = tuple[str, Callable[[], object], Callable[[], object]]


def cases(tracker: Tracker) -> list[Case]:
    """(name, what prepares it untimed, what is measured)."""
    maintenance = Maintenance(tracker)

    def settle() -> None:  # finish what earlier cases made due, however many rounds
        due = [key(tracker, "labels_in_use"), key(tracker, "bands_due")]
        maintenance.run_once()
        while True:
            now = tracker.client.time()[0] * 1000
            if not any(
                tracker.client.type(k) == b"zset" and tracker.client.zcount(k, 0, now) for k in due
            ):
                return
            maintenance.run_once()

    def all_due() -> None:
        # before: a set of label zsets, and no bands due: every one read each round
        for index in (key(tracker, "labels_in_use"), key(tracker, "bands_due")):
            if tracker.client.type(index) == b"zset":
                tracker.client.zunionstore(index, {index: 0})

    def nothing() -> None:
        pass

    return [
        (
            "label, no match",
            nothing,
            lambda: tracker.list(label=LABEL, state="enqueued", queue="q0"),
        ),
        ("label, match", nothing, lambda: tracker.list(label=LABEL, state="enqueued")),
        ("label, rare state", nothing, lambda: tracker.list(label=LABEL, state="failed")),
        ("list 1000", nothing, lambda: tracker.list(limit=1000)),
        ("list state", nothing, lambda: tracker.list(state="enqueued", limit=50)),
        ("maintenance, none due", settle, maintenance.run_once),
        ("maintenance, all due", all_due, maintenance.run_once),
        ("register root", nothing, lambda: register_root(tracker)),
        ("register huge", nothing, lambda: register_huge(tracker)),
    ]


def run(url: str, n: int, rounds: int, ours: bool) -> None:
    client = redis.Redis.from_url(url)
    ns = namespace()
    tracker = Tracker(client, Settings(namespace=ns))
    start = time.perf_counter()
    fill(tracker, n)
    print(f"\n{label(url)}, N = {n:,}: filled in {time.perf_counter() - start:.0f} s")
    samples: dict[str, list[tuple[Any, ...]]] = {}
    for _ in range(rounds):
        for name, prepare, call in cases(tracker):
            prepare()
            samples.setdefault(name, [])
            try:
                samples[name].append(measure(client, call))
            except Conflict as refused:
                print(f"{name}: refused ({refused})")
            client.delete(job_key(tracker, "root"))
    rows = []
    for name, got in samples.items():
        if not got:
            rows.append((name, "refused", "", "", "", ""))
            continue
        walls = [g[0] for g in got]
        longest = max(g[3] for g in got)  # (ms, command)
        rows.append(
            (
                name,
                f"{median(walls):.1f} ({min(walls):.1f}-{max(walls):.1f})",
                f"{median([g[1] for g in got]):.0f}",
                f"{median([g[2] for g in got]):.2f}",
                f"{longest[0]:.2f} {longest[1]}" if longest[0] else "< 0.5",
                sum(int(g[4]) for g in got),
            )
        )
    header = ("case", "wall ms (range)", "FCALLs", "FCALL ms", "longest command ms", "over 5 ms")
    table(header, rows)
    if not ours:
        cleanup(client, ns)
    client.close()


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    options.add_argument("--full", action="store_true", help="add N = 1,000,000")
    options.add_argument("--rounds", type=int, default=5)
    args = options.parse_args()
    if args.quick:
        args.sizes, args.rounds = [1000, 100_000], 3
    sizes = [*args.sizes, *([1_000_000] if args.full else [])]
    print(f"scale: {machine()}")
    for n in sizes:  # a fresh server per size, when the server is one started here
        with stores(args.url) as urls:
            for url in urls:
                run(url, n, args.rounds, ours="tracker-bench-" in url)


if __name__ == "__main__":
    main()
