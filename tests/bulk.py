"""Many registrations at once, for tests about large graphs and indexes: each plan's
one function call goes out in a shared pipeline, as ``Tracker._drive`` would send it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tracker import Tracker
from tracker.calls import Call

CHUNK = 2000


def register_many(tracker: Tracker, jids: Iterable[str], **fields: Any) -> None:
    """Register every jid with the same fields, in order; fails on the first refusal."""
    register_each(tracker, ((jid, fields) for jid in jids))


def register_each(tracker: Tracker, jobs: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Register each ``(jid, fields)`` in order; fails on the first refusal."""
    todo = list(jobs)
    tracker.ping()
    tracker._library.load(tracker.client)
    for start in range(0, len(todo), CHUNK):
        pipe = tracker.client.pipeline(transaction=False)
        plans = []
        for jid, fields in todo[start : start + CHUNK]:
            plan = tracker.plans.register(jid, **fields)
            call = next(plan)
            assert isinstance(call, Call)
            tracker._library.queue(pipe, call)
            plans.append(plan)
        for plan, reply in zip(plans, pipe.execute(), strict=True):
            try:
                plan.send(reply)
            except StopIteration:
                continue
            raise AssertionError("a registration wanted more than one call")
