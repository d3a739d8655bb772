"""The workers' registry: who runs jobs, on which queues, and whether they are alive.

Each ``tracker worker`` process beats every :data:`BEAT_INTERVAL` seconds (a thread
of its own, see :class:`Heartbeat`) with what it runs now and how many jobs it has
done and failed; a job starting or ending brings the next beat early, at most one a
second, so the job loop never waits for a beat. A worker whose last beat is older
than :data:`LOST_AFTER` beats is ``lost``; after :data:`GONE_AFTER` beats it is
forgotten (by the next worker's beat, or when the registry's keys expire). A worker
leaving cleanly removes itself.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import msgpack

from . import scripts
from .calls import Plan, PlanBase, Read
from .errors import TrackerError
from .model import check_name
from .times import format_time

log = logging.getLogger("tracker.worker")

#: Seconds between two beats of a worker.
BEAT_INTERVAL = 5.0
#: Seconds at least between two beats that a change (a job started or ended) brings early.
CHANGES_EVERY = 1.0
#: Beats missed before a worker is shown as lost, and before it is forgotten.
LOST_AFTER = 3
GONE_AFTER = 10


@dataclass(frozen=True, slots=True)
class Worker:
    """One worker as ``GET /workers`` shows it; times in ms by the server's clock."""

    name: str
    pid: int
    host: str
    queues: list[str]
    state: str  # idle, busy or lost
    job: str | None
    started_at: int
    heartbeat_at: int
    done: int
    failed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "host": self.host,
            "queues": self.queues,
            "state": self.state,
            "job": self.job,
            "started_at": format_time(self.started_at),
            "heartbeat_at": format_time(self.heartbeat_at),
            "done": self.done,
            "failed": self.failed,
        }


class Workers(PlanBase):
    def worker_beat(
        self, name: str, record: dict[str, Any], *, interval: float, leaving: bool = False
    ) -> Plan[int]:
        """Record that worker ``name`` is alive with ``record`` (pid, host, queues, job,
        started_at, done, failed), or, ``leaving``, that it is gone; returns the server's
        time (ms)."""
        check_name("worker", name)
        packed = msgpack.packb({**record, "interval": int(interval * 1000)})
        forget_after = int(interval * 1000 * GONE_AFTER)
        reply = yield self._call(
            "worker_beat", name=name, record=packed, forget_after=forget_after, leaving=leaving
        )
        return int(scripts.outcome(reply, name))

    def workers(self) -> Plan[list[Worker]]:
        """The workers that beat lately, by name; those silent for a few beats are lost."""
        server_time, records, beats = yield Read(
            [
                ("time", ()),
                ("hgetall", (self.keys.workers,)),
                ("zrange", (self.keys.worker_beats, 0, -1, False, True)),
            ]
        )
        now = self._now_ms(server_time)
        beat_at = {name: int(score) for name, score in beats}
        found = []
        for name, packed in records.items():
            if name not in beat_at:
                continue  # between a leaving worker's two deletes: never, as they are one call
            record = msgpack.unpackb(packed)
            interval, heartbeat_at = record["interval"], beat_at[name]
            silent = now - heartbeat_at
            if silent > interval * GONE_AFTER:
                continue
            busy = "busy" if record["job"] is not None else "idle"
            found.append(
                Worker(
                    name=name.decode(),
                    pid=record["pid"],
                    host=record["host"],
                    queues=record["queues"],
                    state="lost" if silent > interval * LOST_AFTER else busy,
                    job=record["job"],
                    started_at=record["started_at"] or heartbeat_at,
                    heartbeat_at=heartbeat_at,
                    done=record["done"],
                    failed=record["failed"],
                )
            )
        return sorted(found, key=lambda worker: worker.name)


class Heartbeat(threading.Thread):
    """A worker's beat: a thread that records it every ``interval`` seconds, and at
    once when it stops (leaving the registry)."""

    def __init__(self, tracker: Any, name: str, queues: list[str], interval: float) -> None:
        super().__init__(name="tracker-heartbeat", daemon=True)
        self.tracker = tracker
        self.worker = name
        self.interval = interval
        self.record: dict[str, Any] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "queues": queues,
            "job": None,
            "started_at": None,
            "done": 0,
            "failed": 0,
        }
        self._stopped = threading.Event()
        self._changed = threading.Event()

    def running(self, jid: str) -> None:
        self.record["job"] = jid
        self._changed.set()

    def ended(self, ok: bool) -> None:
        self.record["job"] = None
        self.record["done" if ok else "failed"] += 1
        self._changed.set()

    def run(self) -> None:
        while not self._stopped.is_set():
            self.beat()
            beaten = time.monotonic()
            self._changed.wait(self.interval)  # a new job, or one ended, beats early...
            self._changed.clear()
            # ...but at most once every CHANGES_EVERY seconds, whatever the jobs' pace
            gap = min(CHANGES_EVERY, self.interval) - (time.monotonic() - beaten)
            if self._stopped.wait(max(0.0, gap)):
                return

    def beat(self, leaving: bool = False) -> None:
        try:
            now = self.tracker.worker_beat(
                self.worker, dict(self.record), interval=self.interval, leaving=leaving
            )
        except TrackerError as exc:  # an outage: the next beat will tell
            log.warning("worker %s could not beat: %s", self.worker, exc)
            return
        if self.record["started_at"] is None:
            self.record["started_at"] = now

    def stop(self) -> None:
        """Stop beating and leave the registry."""
        self._stopped.set()
        self._changed.set()
        if self.is_alive():
            self.join(timeout=1.0)  # a beat in flight; never hold up a leaving worker long
        self.beat(leaving=True)
