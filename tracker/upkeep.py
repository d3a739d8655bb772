"""Upkeep: fan-out work left unfinished, the delay schedule, the reaper of ended
reservations and the index pruner; and :class:`Maintenance`, which runs them.

Every step is a script that re-checks its condition atomically, so any number
of processes may run upkeep against the same namespace at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import scripts
from .calls import Plan, PlanBase, Read
from .errors import StoreUnavailable
from .lifecycle import RETRY_BACKOFF_MS
from .model import Track

if TYPE_CHECKING:
    from .client import AsyncTracker, Tracker

#: Bands and entries one call of prune or prune_labels reads at most, and calls of each
#: one round makes at most.
PRUNE_BUDGET = 200
PRUNE_CALLS = 40
log = logging.getLogger("tracker.maintenance")


class Upkeep(PlanBase):
    def maintain(self, batch: int = 100) -> Plan[int]:
        """One round of upkeep: finish fan-outs, enqueue due delayed jobs, reap ended
        reservations and prune the indexes; returns jobs reaped."""
        yield from self.drain()
        yield from self.promote()
        reaped = 0
        while True:
            done = len((yield from self.reap(batch)))
            reaped += done
            if done < batch:
                break
        yield from self.prune(calls=PRUNE_CALLS)
        return reaped

    def drain(self) -> Plan[int]:
        """Finish fan-out work (releases, propagation) that an interrupted call left."""
        rounds = 1
        while True:
            reply = yield self._call("drain")
            if not scripts.outcome(reply, ""):
                return rounds
            rounds += 1

    def reap(self, limit: int = 100) -> Plan[list[Track]]:
        """Fail up to ``limit`` working jobs whose reservation has ended."""
        server_time, due = yield Read(
            [
                ("time", ()),
                ("zrangebyscore", (self.keys.reservations, "-inf", "+inf", 0, limit, True)),
            ]
        )
        now = self._now_ms(server_time)
        reaped: list[Track] = []
        for raw, reserve_until in due:
            if reserve_until > now:
                break
            jid = raw.decode()
            reply = yield self._call("reap", jid, backoff=RETRY_BACKOFF_MS)
            if reply[0] == scripts.OK:
                reaped.append(self.decode(jid, reply[1]))
                if reply[2]:
                    yield from self.drain()
        return reaped

    def promote(self) -> Plan[int]:
        """Hand due jobs to their queue (delays, retry backoffs, and hand-offs lost: see
        ``check_handoff`` in lua/_graph.lua); returns how many."""
        total = 0
        while True:
            reply = yield self._call("promote", backoff=RETRY_BACKOFF_MS)
            enqueued, more, fanout = scripts.outcome(reply, "")
            total += int(enqueued)
            if fanout:  # a job failed for good: its dependents follow
                yield from self.drain()
            if not more:
                return total

    def prune(self, calls: int | None = None) -> Plan[int]:
        """Drop expired jobs from the state, label and children indexes and forget the
        queues none of whose jobs is live; returns entries dropped. Each call of the Lua is
        bounded; ``calls`` caps how many of each (``None``: until nothing is due)."""
        states = yield from self.prune_states(calls=calls)
        return states + (yield from self.prune_labels(calls=calls))

    def prune_states(self, budget: int = PRUNE_BUDGET, calls: int | None = None) -> Plan[int]:
        """Drop expired entries from the state indexes' bands that are due, and forget the
        queues none of whose jobs is live (their ids freed for new names); returns how
        many entries went. ``calls``: at most that many calls (``None``: until nothing is
        due)."""
        return (yield from self._prune_due("prune", budget, calls))

    def prune_labels(self, budget: int = PRUNE_BUDGET, calls: int | None = None) -> Plan[int]:
        """Drop expired jobs from the label and children zsets that are due; returns how
        many went. ``calls`` as for :meth:`prune_states`."""
        return (yield from self._prune_due("prune_labels", budget, calls))

    def _prune_due(self, script: str, budget: int, calls: int | None) -> Plan[int]:
        """Calls of a pruning script while it says more is due, each spending at most
        ``budget``; at most ``calls`` of them (a maintenance round makes
        :data:`PRUNE_CALLS`: the rest waits for the next round)."""
        removed, made = 0, 0
        while calls is None or made < calls:
            reply = yield self._call(script, reads=budget)
            made += 1
            gone, more = scripts.outcome(reply, "")
            removed += int(gone)
            if not more:
                break
        return removed


class Maintenance:
    """Runs :meth:`~Upkeep.maintain` every ``interval`` seconds in a daemon thread."""

    def __init__(self, tracker: Tracker, interval: float = 1.0) -> None:
        self.tracker = tracker
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """One round now; returns jobs reaped."""
        return self.tracker.maintain()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tracker-maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            _report(_round(self.run_once))


class AsyncMaintenance:
    """Runs :meth:`~Upkeep.maintain` every ``interval`` seconds as a task of the running
    event loop (the server's: no thread, no second connection pool)."""

    def __init__(self, tracker: AsyncTracker, interval: float = 1.0) -> None:
        self.tracker = tracker
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="maintenance")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                reaped = await self.tracker.maintain()
            except StoreUnavailable as exc:
                log.warning("maintenance skipped a round: %s", exc)
                continue
            _report(reaped)


def _round(run: Callable[[], int]) -> int | None:
    try:
        return run()
    except StoreUnavailable as exc:
        log.warning("maintenance skipped a round: %s", exc)
        return None


def _report(reaped: int | None) -> None:
    if reaped:
        log.info("reaped %d job(s) whose reservation ended", reaped)
