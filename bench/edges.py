"""Redis memory per waiting dependency edge: tracker against RQ's deferred jobs.

    python bench/edges.py [--url URL ...] [--quick] [--dependents 10000] [--rq-dependents 2000]
                          [--k 10] [--per-set 100]

tracker: unfinished prerequisites are registered (so enqueued: nothing they wait
for), then 10,000 dependents, each waiting on k of them (a seeded random sample),
registered through tracker's own plans, pipelined 1,000 at a time. The figure is
the growth of ``used_memory`` over the dependents' registration. It is measured
for k = 1, 10 and 20, with 100 dependents per prerequisite on average (so 1,000
prerequisites for k = 10, 2,000 for k = 20: every dependents set has the same
size, and the same encoding, at every k). Reported: bytes per waiting job at each
k; per edge "all in" (the growth at k = 10 over its 100,000 edges, the dependent's
own track included); and per edge "marginal", (m20 - m10) / 10 per dependent, the
cost of one more edge once the job hash has taken its large-hash encoding (a hash
whose ``pl`` field, the names of the sets it waits in, passes 64 bytes is no
longer a listpack: that step falls between k = 1 and k = 10).

Each tracker edge is a member (the dependent's job key) of the prerequisite's
dependents set, plus that set's name in the dependent's ``pl`` field; a dependent
also holds its own track and its entry in the ``waiting`` index (and, with
"+payload", the RQ hand-off list that releasing it will replay).

RQ: unfinished parents (enqueued, never run), then 2,000 jobs
``queue.enqueue(os.path.join, "a", depends_on=<k parents>)``, which RQ defers: the
job hash (with its ``dependency_ids``), its ``dependencies`` set, its entry in each
parent's ``dependents`` set and in the deferred registry; 100 dependents per parent
on average, as for tracker. RQ enqueues a job with dependencies in several round
trips (WATCH, then MULTI/EXEC), hence fewer jobs. Job ids are RQ's own (UUIDs, 36
characters); tracker's are ``dep-0000001`` (11), so a row with UUID jids is given.

Each measurement gets a fresh server of the kind asked for (the embedded Valkey by
default, ``--url redis-server`` for Redis 7); a ``--url`` of a running server is
measured as it is, where anything else that changes meanwhile blurs the figures.
"""

from __future__ import annotations

import random
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis
import rq
from _harness import (
    cleanup,
    cleanup_rq,
    fresh,
    label,
    machine,
    namespace,
    parser,
    stores,
    table,
    tag,
    used_memory,
)
from _internals import load_library, pipelined, plans

from tracker import Settings, Tracker
from tracker.model import State

BATCH = 1000
PAYLOAD = {"func": "os.path.join", "args": ["a"]}
SEED = 7


def samples(count: int, population: int, k: int) -> list[list[int]]:
    chooser = random.Random(SEED)
    return [chooser.sample(range(population), k) for _ in range(count)]


@dataclass
class Growth:
    per_job: float
    edges: int
    jobs: int


def measure_tracker(
    url: str, dependents: int, prerequisites: int, k: int, payload: bool, uuids: bool
) -> Growth:
    settings = Settings(namespace=namespace(len(Settings().namespace)))  # as long as "tracker"
    client = redis.Redis.from_url(url)
    tracker = Tracker(client, settings)

    def jid(kind: str, i: int) -> str:
        if uuids:
            return str(uuid.UUID(int=random.Random(f"{kind}{i}").getrandbits(128)))
        return f"{kind}-{i:07d}"

    try:
        load_library(tracker)
        pre = [jid("pre", i) for i in range(prerequisites)]
        for first in range(0, prerequisites, BATCH):
            pipelined(tracker, (plans(tracker).register(p) for p in pre[first : first + BATCH]))
        before = used_memory(client)
        waits = samples(dependents, prerequisites, k)
        for first in range(0, dependents, BATCH):
            pipelined(
                tracker,
                (
                    plans(tracker).register(
                        jid("dep", i),
                        prerequisites=[pre[j] for j in waits[i]],
                        payload=PAYLOAD if payload else None,
                    )
                    for i in range(first, min(first + BATCH, dependents))
                ),
            )
        after = used_memory(client)
        assert tracker.track_get(jid("dep", dependents - 1)).state is State.WAITING
        return Growth((after - before) / dependents, dependents * k, dependents)
    finally:
        cleanup(client, settings.namespace)  # waiting jobs never wrote to RQ's keys
        client.close()


def measure_rq(url: str, dependents: int, parents: int, k: int) -> Growth:
    run = tag("ed")
    client = redis.Redis.from_url(url)
    queue = rq.Queue(run, connection=client)
    made: list[rq.job.Job] = []
    ids: list[str] = []
    try:
        for first in range(0, parents, BATCH):
            with client.pipeline() as pipe:
                data = [
                    rq.Queue.prepare_data("os.path.join", ("a",))
                    for _ in range(first, min(first + BATCH, parents))
                ]
                made += queue.enqueue_many(data, pipeline=pipe)
                pipe.execute()
        # one deferred job first: what is not per job (the deferred registry, connections)
        queue.enqueue("os.path.join", "a", depends_on=made[0], job_id=f"{run}-first")
        before = used_memory(client)
        for waits in samples(dependents, parents, k):
            job = queue.enqueue(
                "os.path.join", "a", depends_on=[made[j] for j in waits], job_id=str(uuid.uuid4())
            )
            ids.append(job.id)
        after = used_memory(client)
        assert job.get_status() == rq.job.JobStatus.DEFERRED
        assert queue.deferred_job_registry.count == dependents + 1
        return Growth((after - before) / dependents, dependents * k, dependents)
    finally:
        keys = [f"rq:job:{i}" for i in ids] + [f"rq:job:{i}:dependencies" for i in ids]
        keys += [f"rq:job:{j.id}" for j in made] + [f"rq:job:{j.id}:dependents" for j in made]
        for first in range(0, len(keys), BATCH):
            client.delete(*keys[first : first + BATCH])
        cleanup_rq(client, run)
        client.close()


def main() -> int:
    parsing = parser(__doc__)
    parsing.add_argument("--dependents", type=int, default=10_000, help="tracker's (10,000)")
    parsing.add_argument("--rq-dependents", type=int, default=2000, help="RQ's deferred (2,000)")
    parsing.add_argument("--k", type=int, default=10, help="edges per dependent (default 10)")
    parsing.add_argument(
        "--per-set", type=int, default=100, help="dependents per prerequisite (default 100)"
    )
    options = parsing.parse_args()
    if options.quick:
        options.dependents, options.rq_dependents = 3000, 500
    n, rq_n, k, per_set = options.dependents, options.rq_dependents, options.k, options.per_set

    def unfinished(dependents: int, edges: int) -> int:
        return -(-dependents * edges // per_set)

    print(
        f"machine: {machine()}; tracker {n:,} dependents, RQ {rq_n:,} deferred jobs, each "
        f"waiting on 1, {k} or {2 * k} unfinished jobs ({unfinished(n, k):,} of them for {k}), "
        f"{per_set} dependents per unfinished job"
    )
    cases: list[tuple[str, Callable[[str, int], Growth]]] = [
        ("tracker", lambda url, e: measure_tracker(url, n, unfinished(n, e), e, False, False)),
        (
            "tracker, UUID jids",
            lambda url, e: measure_tracker(url, n, unfinished(n, e), e, False, True),
        ),
        (
            "tracker +payload",
            lambda url, e: measure_tracker(url, n, unfinished(n, e), e, True, False),
        ),
        ("RQ deferred job", lambda url, e: measure_rq(url, rq_n, unfinished(rq_n, e), e)),
    ]
    rows = []
    with stores(options.url) as urls:
        for url, name, measure in ((u, c, m) for u in urls for c, m in cases):
            server = label(url)
            growth: dict[int, Growth] = {}
            for edges in (1, k, 2 * k):
                with fresh(url) as fresh_url:
                    growth[edges] = measure(fresh_url, edges)
            one, many, more = growth[1], growth[k], growth[2 * k]
            all_in = many.per_job / k
            marginal = (more.per_job - many.per_job) / k
            rows.append(
                [
                    server,
                    name,
                    f"{one.per_job:,.0f}",
                    f"{many.per_job:,.0f}",
                    f"{more.per_job:,.0f}",
                    f"{all_in:,.1f}",
                    f"{marginal:,.1f}",
                ]
            )
            print(
                f"{server}, {name}: bytes per waiting job {one.per_job:,.1f} (1 edge), "
                f"{many.per_job:,.1f} ({k}), {more.per_job:,.1f} ({2 * k}); per edge "
                f"{all_in:,.1f} all in, {marginal:,.1f} marginal",
                flush=True,
            )
    print("\nused_memory growth, bytes:\n")
    table(
        [
            "server",
            "waiting job",
            "per job, 1 edge",
            f"per job, {k} edges",
            f"per job, {2 * k} edges",
            f"per edge, all in ({k})",
            f"per edge, marginal ({k} to {2 * k})",
        ],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
