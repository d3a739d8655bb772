"""The asyncio driver behind the blocking client's surface, so that the store's contract
(every test taking ``tracker`` or ``make_tracker``) also runs on :class:`AsyncTracker`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis

from tracker import AsyncTracker, Settings
from tracker.calls import Plan
from tracker.client import Client, Operation, connect_async

T = TypeVar("T")
OPERATIONS = frozenset(name for name, value in vars(Client).items() if isinstance(value, Operation))


class AsyncDriven:
    """A :class:`Tracker` look-alike whose every operation runs on an AsyncTracker, on an
    event loop of its own thread. ``client`` is a blocking client of the same server,
    for what the tests read and write around the tracker."""

    def __init__(
        self, client: redis.Redis, url: str, settings: Settings, clock: Any = None
    ) -> None:
        self.client = client
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.tracker = AsyncTracker(connect_async(url), settings, clock=clock)
        self.settings, self.plans, self.keys = settings, self.tracker.plans, self.tracker.keys
        self._library = self.tracker._library

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def __getattr__(self, name: str) -> Any:
        if name not in OPERATIONS:
            raise AttributeError(name)
        method = getattr(self.tracker, name)
        return lambda *args, **kwargs: self._run(method(*args, **kwargs))

    def _drive(self, plan: Plan[T]) -> T:
        return self._run(self.tracker._drive(plan))

    def close(self) -> None:
        self._run(self.tracker.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
