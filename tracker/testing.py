"""An in-memory tracker for your own unit tests, backed by fakeredis.

It runs tracker's real Lua scripts (through fakeredis's Lua support), so your
tests see the same states and refusals as production, without a server::

    from tracker.testing import memory_tracker

    def test_my_job_reports_progress():
        tracker = memory_tracker()
        tracker.register("job-1")
        tracker.start("job-1")
        my_job(tracker, "job-1")
        assert tracker.track_get("job-1").percent == 100

fakeredis's Lua is not always Redis's Lua 5.1; tracker's own suite runs every
script on real Valkey and Redis too.
"""

from __future__ import annotations

from collections.abc import Callable

import fakeredis

from .client import AsyncTracker, Tracker
from .settings import Settings


def memory_tracker(
    settings: Settings | None = None, *, clock: Callable[[], float] | None = None
) -> Tracker:
    """A :class:`Tracker` on a fresh, private in-memory server."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    return Tracker(client, settings, clock=clock)


def memory_async_tracker(
    settings: Settings | None = None, *, clock: Callable[[], float] | None = None
) -> AsyncTracker:
    """An :class:`AsyncTracker` on a fresh, private in-memory server."""
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    return AsyncTracker(client, settings, clock=clock)
