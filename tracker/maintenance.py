"""Background upkeep: fan-out work left unfinished, the delay schedule, the reaper of
ended reservations and the index pruner.

Every step is a script that re-checks its condition atomically, so any number
of processes may run :class:`Maintenance` against the same namespace at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .errors import StoreUnavailable
from .reads import PRUNE_CALLS
from .store import Tracker

log = logging.getLogger("tracker.maintenance")


class Maintenance:
    """Runs :meth:`run_once` every ``interval`` seconds in a daemon thread.

    ``tracker`` may be a function that makes one: it is called at the first round
    (and again at the next while it raises StoreUnavailable), so a server starts
    even when Redis does not answer yet; :meth:`close` closes what it made.
    """

    def __init__(self, tracker: Tracker | Callable[[], Tracker], interval: float = 1.0) -> None:
        self._make = None if isinstance(tracker, Tracker) else tracker
        self._tracker = tracker if isinstance(tracker, Tracker) else None
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            assert self._make is not None
            self._tracker = self._make()
        return self._tracker

    def close(self) -> None:
        """Close the tracker this made (one it was given stays its owner's)."""
        if self._make is not None and self._tracker is not None:
            self._tracker.close()

    def run_once(self, batch: int = 100) -> int:
        """Finish fan-outs, enqueue due delayed jobs, reap ended reservations and prune the
        indexes; returns jobs reaped."""
        self.tracker.drain()
        self.tracker.promote()
        reaped = 0
        while True:
            done = len(self.tracker.reap(batch))
            reaped += done
            if done < batch:
                break
        self.tracker.prune(calls=PRUNE_CALLS)
        return reaped

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tracker-maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                reaped = self.run_once()
            except StoreUnavailable as exc:
                log.warning("maintenance skipped a round: %s", exc)
                continue
            if reaped:
                log.info("reaped %d job(s) whose reservation ended", reaped)
