"""Riding out a Redis outage: a redis-py retry policy for ``tracker worker``'s client.

A worker that loses Redis mid-job should keep its job and report it once Redis answers
again, not die (RQ's worker quits on most connection errors it meets, and a work horse
that cannot record its job's end exits with an error). Rather than wrap every place RQ
or tracker sends a command, the worker's client retries each command that failed for
want of a connection (refused, reset, timed out, or the server still loading its data)
with a capped exponential backoff, for as long as the outage is younger than the grace.
The outage is shared by every connection and thread of the process: it starts at the
first failure and ends when a command that failed then gets through. Once it outlasts
the grace, the policy gives up for good: every command fails at once, ``on_give_up``
is called (in whichever thread gave up), and the worker exits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from redis.backoff import ExponentialBackoff
from redis.retry import Retry

log = logging.getLogger("tracker.outage")

T = TypeVar("T")

#: The longest wait between two tries (seconds): Redis back, the worker soon knows.
BACKOFF_CAP = 1.0


class OutageRetry(Retry):
    """Retries commands that found no Redis for up to ``grace`` seconds of outage."""

    def __init__(self, grace: float, on_give_up: Callable[[], None] | None = None) -> None:
        super().__init__(ExponentialBackoff(cap=BACKOFF_CAP, base=0.05), retries=-1)
        self.grace = grace
        self.on_give_up = on_give_up
        self.gave_up = False
        self._since: float | None = None  # monotonic time of the outage's first failure
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict[int, Any]) -> OutageRetry:
        return self  # each new connection copies its pool's retry: they must share one outage

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        failures = 0
        while True:
            try:
                result = do()
            except self._supported_errors as error:
                if is_retryable and not is_retryable(error):
                    raise
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                left = self._left(error)
                if left <= 0:
                    raise
                time.sleep(min(self._backoff.compute(failures), left))
            else:
                # only a command that met the outage and then got through says it ended
                # (a pub/sub poll may return nothing, with no server behind it)
                if failures and self._since is not None:
                    self._ended()
                return result

    def _left(self, error: Exception) -> float:
        """Seconds of grace left in this outage (0 once given up)."""
        with self._lock:
            if self.gave_up:
                return 0.0
            now = time.monotonic()
            if self._since is None:
                self._since = now
                log.warning(
                    "Redis does not answer (%s): waiting up to %g s for it", error, self.grace
                )
            left = self._since + self.grace - now
            if left > 0:
                return left
            self.gave_up = True
        log.error("Redis did not answer for %g s: giving up", self.grace)
        if self.on_give_up is not None:
            self.on_give_up()
        return 0.0

    def _ended(self) -> None:
        with self._lock:
            if self._since is not None and not self.gave_up:
                log.warning("Redis answers again after %.1f s", time.monotonic() - self._since)
                self._since = None
