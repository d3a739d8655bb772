"""Redis memory per finished track, beside the same number of finished RQ jobs.

    python bench/memory.py [--url URL ...] [--quick] [--tracks 100000] [--jid short|uuid]

Each track is registered, started, given a percent and a 20-character desc with
TRACK SET, then marked a success: four calls of tracker's real functions (its
FCALL library, loaded before the first reading), built by tracker's own plans and
pipelined 1,000 at a time. The figure is the growth of
``used_memory`` divided by the number of tracks: job hashes, the state index and
the (capped) event stream all included. Job ids are ``job-0000001`` (11
characters) or, with ``--jid uuid``, 36-character UUIDs like RQ's; the namespace
is unique to the run but as long as the default one (``tracker``), since every
key name carries it.

The RQ figure is as many finished jobs of a trivial function. A real
``SimpleWorker`` runs a sample (``--rq-sample``; it manages a few hundred a
second); the full count is then written the way that worker stored its last
job (job hash, result stream, finished-registry entry, expiries), so the two
figures should agree.

Every measurement gets a fresh server of the kind asked for (the embedded Valkey by
default, ``--url redis-server`` for Redis 7), so that nothing else moves
``used_memory``; a ``--url`` of a running server is measured as it is, and picks up
whatever else changes meanwhile. Targets (issue 13): at most 350 B per finished
track with short ids, 420 B with UUIDs, on Redis 7.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
import rq
from _harness import cleanup, fresh, label, machine, namespace, parser, stores, table, used_memory
from _internals import key, load_library, pipelined, plans

from tracker import Settings, Tracker

DESC = "copying files 17/400"  # 20 characters
BATCH = 1000
TARGETS = {"short": 350, "uuid": 420}
RESULT_TTL = 3600
WARM_UP_JOBS = 20


def noop() -> None:
    """The trivial RQ job."""


def job_ids(kind: str, first: int, count: int) -> list[str]:
    if kind == "uuid":
        return [str(uuid.uuid4()) for _ in range(count)]
    return [f"job-{i:07d}" for i in range(first, first + count)]


# --- tracker -------------------------------------------------------------------


@dataclass
class TrackerMemory:
    per_track: float
    seconds: float
    keys: int
    parts: dict[str, int]


def measure_tracker(url: str, count: int, jid_kind: str) -> TrackerMemory:
    # as long as the default namespace, "tracker", so key names are as long as by default
    settings = Settings(namespace=namespace(len(Settings().namespace)))
    client = redis.Redis.from_url(url)
    tracker = Tracker(client, settings)
    ops = plans(tracker)
    try:
        load_library(tracker)  # the function library is not per track
        before = used_memory(client)
        start = time.perf_counter()
        last = ""
        for first in range(0, count, BATCH):
            jids = job_ids(jid_kind, first, min(BATCH, count - first))
            pipelined(tracker, [ops.register(jid) for jid in jids])
            pipelined(tracker, [ops.start(jid) for jid in jids])
            pipelined(tracker, [ops.track_set(jid, percent=50, desc=DESC) for jid in jids])
            pipelined(tracker, [ops.success(jid) for jid in jids])
            last = jids[-1]
        seconds = time.perf_counter() - start
        after = used_memory(client)
        track = tracker.track_get(last)
        assert track.state.value == "success" and track.desc == DESC, track
        parts = {
            "one job hash (MEMORY USAGE)": client.memory_usage(key(tracker, "job", last)),
            "success index (zset, whole)": client.memory_usage(
                key(tracker, "state", track.state), samples=0
            ),
            "event stream (whole)": client.memory_usage(key(tracker, "events"), samples=0),
            "event stream entries": client.xlen(key(tracker, "events")),
        }
        parts = {name: int(value or 0) for name, value in parts.items()}
        found = sum(1 for _ in client.scan_iter(match="{" + settings.namespace + "}:*", count=1000))
        return TrackerMemory((after - before) / count, seconds, found, parts)
    finally:
        cleanup(client, settings.namespace)
        client.close()


# --- RQ ------------------------------------------------------------------------


@dataclass
class RQMemory:
    worker_per_job: float
    worker_seconds: float
    stored_per_job: float
    stored_seconds: float


@dataclass
class FinishedJob:
    """What RQ keeps of one finished job, to be written again under other ids."""

    fields: dict[Any, Any]
    job_ttl: int
    result: dict[Any, Any]
    result_ttl: int
    registry_key: str


def _enqueue(client: redis.Redis, queue: rq.Queue, count: int) -> list[str]:
    ids: list[str] = []
    for first in range(0, count, BATCH):
        with client.pipeline() as pipe:
            data = [
                rq.Queue.prepare_data(noop, result_ttl=RESULT_TTL)
                for _ in range(min(BATCH, count - first))
            ]
            ids += [job.id for job in queue.enqueue_many(data, pipeline=pipe)]
            pipe.execute()
    return ids


def _finished_job(client: redis.Redis, queue: rq.Queue, job_id: str) -> FinishedJob:
    job_key, result_key = f"rq:job:{job_id}", f"rq:results:{job_id}"
    ((_, result),) = client.xrange(result_key)  # type: ignore[misc]
    return FinishedJob(
        fields=client.hgetall(job_key),
        job_ttl=int(client.ttl(job_key)),
        result=result or {},
        result_ttl=int(client.ttl(result_key)),
        registry_key=queue.finished_job_registry.key,
    )


def _store_finished(client: redis.Redis, job: FinishedJob, count: int) -> list[str]:
    """``count`` finished jobs laid out as ``job`` is, under new RQ-style ids."""
    ids: list[str] = []
    for first in range(0, count, BATCH):
        batch = [str(uuid.uuid4()) for _ in range(min(BATCH, count - first))]
        pipe = client.pipeline(transaction=False)
        score = time.time() + job.job_ttl
        for job_id in batch:
            pipe.hset(f"rq:job:{job_id}", mapping=job.fields)
            pipe.expire(f"rq:job:{job_id}", job.job_ttl)
            pipe.xadd(f"rq:results:{job_id}", job.result, maxlen=10)
            pipe.expire(f"rq:results:{job_id}", job.result_ttl)
        pipe.zadd(job.registry_key, dict.fromkeys(batch, score))
        pipe.execute()
        ids += batch
    return ids


def measure_rq(url: str, count: int, sample: int) -> RQMemory:
    client = redis.Redis.from_url(url)
    queue = rq.Queue("bench-" + uuid.uuid4().hex[:10], connection=client)
    worker = rq.SimpleWorker([queue], connection=client)
    made: list[str] = []
    try:
        # a first run creates what is not per job: the worker's keys, connections, scripts
        made += _enqueue(client, queue, WARM_UP_JOBS)
        worker.work(burst=True, logging_level="WARNING")
        before = used_memory(client)
        start = time.perf_counter()
        made += _enqueue(client, queue, sample)
        worker.work(burst=True, logging_level="WARNING")
        worker_seconds = time.perf_counter() - start
        worker_per_job = (used_memory(client) - before) / sample
        assert queue.finished_job_registry.count == WARM_UP_JOBS + sample

        template = _finished_job(client, queue, made[-1])
        before = used_memory(client)
        start = time.perf_counter()
        made += _store_finished(client, template, count)
        stored_seconds = time.perf_counter() - start
        stored_per_job = (used_memory(client) - before) / count
        return RQMemory(worker_per_job, worker_seconds, stored_per_job, stored_seconds)
    finally:
        keys = [key for job_id in made for key in (f"rq:job:{job_id}", f"rq:results:{job_id}")]
        keys += [queue.key, worker.key, f"rq:workers:{queue.name}"]
        keys += [queue.finished_job_registry.key, queue.started_job_registry.key]
        for first in range(0, len(keys), BATCH):
            client.delete(*keys[first : first + BATCH])
        client.srem("rq:queues", queue.key)
        client.srem("rq:workers", worker.key)
        client.close()


# --- servers -------------------------------------------------------------------


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--tracks", type=int, default=100_000, help="tracks and RQ jobs")
    options.add_argument("--jid", choices=["short", "uuid"], action="append", help="job ids "
                         "(repeatable; default both)")  # fmt: skip
    options.add_argument("--rq-sample", type=int, default=1000, help="jobs run by SimpleWorker")
    args = options.parse_args()
    count = 20_000 if args.quick else args.tracks
    kinds = args.jid or ["short", "uuid"]
    print(f"machine: {machine()}; {count:,} tracks (jids: {', '.join(kinds)}), {count:,} RQ jobs")
    rows = []
    with stores(args.url) as urls:
        for url in urls:
            server = label(url)
            for kind in kinds:
                with fresh(url) as fresh_url:
                    ours = measure_tracker(fresh_url, count, kind)
                print(f"\n{server}, {kind} jids: {ours.per_track:.1f} bytes per track; {count:,} "
                      f"tracks in {ours.seconds:.1f} s, {ours.keys:,} keys left")  # fmt: skip
                for part, value in ours.parts.items():
                    print(f"  {part}: {value:,}")
                rows.append([server, kind, f"{ours.per_track:,.0f}", f"<= {TARGETS[kind]}",
                             "yes" if ours.per_track <= TARGETS[kind] else "NO"])  # fmt: skip
            with fresh(url) as fresh_url:
                theirs = measure_rq(fresh_url, count, args.rq_sample)
            rows.append([server, "RQ, stored as its worker stores", f"{theirs.stored_per_job:,.0f}",
                         "", ""])  # fmt: skip
            rows.append([server, f"RQ, run by SimpleWorker ({args.rq_sample:,})",
                         f"{theirs.worker_per_job:,.0f}", "", ""])  # fmt: skip
    print("\nused_memory growth per finished job, bytes:\n")
    table(["server", "jobs", "bytes per job", "target", "met"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
