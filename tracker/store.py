"""Tracker: the one class that talks to Redis (``aio.AsyncTracker`` is its asyncio twin)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, Unpack, cast

import redis
import redis.exceptions

from . import scripts
from .cluster import ClusterClient, close_nodes, keyless
from .errors import StoreUnavailable, TrackerError
from .model import RegisterFields, State, Track, TrackUpdate, func_name
from .ops import Call, Ops, Page, Plan, Registered, Stats
from .settings import Settings

T = TypeVar("T")

#: Redis errors that mean "the store did not answer", as opposed to a bug.
UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.RedisClusterException,  # e.g. no node of the cluster answers
)


def connect(url: str, cluster: bool = False) -> redis.Redis:
    """A blocking client for ``url`` with the options tracker relies on; with
    ``cluster``, a Redis Cluster client that ``url`` names one node of."""
    options: dict[str, Any] = {"decode_responses": False, "health_check_interval": 30}
    if not cluster:
        return redis.Redis.from_url(url, **options)
    try:  # this client asks a node for the cluster's layout at once
        client = ClusterClient.from_url(url, **options)
    except UNAVAILABLE as exc:
        raise StoreUnavailable(f"the Redis Cluster did not answer: {exc}") from exc
    return cast(redis.Redis, client)  # typed as Redis: tracker calls what both have


def disconnect(client: redis.Redis) -> None:
    """Close ``client`` and its connections (a cluster client's nodes' too)."""
    close_nodes(client)
    client.close()


class Tracker:
    """Tracks jobs in Redis: lifecycle, progress, listing and counts.

    Every write is one Lua script call: atomic and one round trip. ``clock``
    (seconds since the epoch) replaces the server's clock, for tests.
    """

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings or Settings()
        self.ops = Ops(self.settings, clock)
        self.keys = self.ops.keys
        self._library = scripts.Library()
        self._alone = keyless(client)

    #: Where the client connects, when built by :meth:`from_url`.
    url: str | None = None

    @classmethod
    def from_url(cls, url: str, settings: Settings | None = None) -> Tracker:
        """A tracker on ``url``; a Redis Cluster one when ``settings.redis_cluster``."""
        settings = settings or Settings()
        tracker = cls(connect(url, settings.redis_cluster), settings)
        tracker.url = url
        return tracker

    def close(self) -> None:
        disconnect(self.client)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drive(self, plan: Plan[T]) -> T:
        try:
            step = next(plan)
            while True:
                if isinstance(step, Call):
                    reply: Any = self._library.call(self.client, step.script, step.keys, step.args)
                elif len(step.commands) == 1:
                    name, args = step.commands[0]
                    reply = [getattr(self.client, name)(*args)]
                else:
                    reply = self._pipelined(step.commands)
                step = plan.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis did not answer: {exc}") from exc

    def _pipelined(self, commands: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        alone = {
            i: getattr(self.client, name)(*args)
            for i, (name, args) in enumerate(commands)
            if name in self._alone
        }
        pipe = self.client.pipeline(transaction=False)
        for i, (name, args) in enumerate(commands):
            if i not in alone:
                getattr(pipe, name)(*args)
        piped = iter(pipe.execute())
        return [alone[i] if i in alone else next(piped) for i in range(len(commands))]

    # --- lifecycle -------------------------------------------------------------

    def register(self, jid: str, **fields: Unpack[RegisterFields]) -> Registered:
        """Create a job's track: ``queue`` (default ``default``), ``labels``, ``reserve_for``,
        ``max_attempts``, ``payload`` (run by RQ on release), ``prerequisites`` (with
        ``missing_prerequisites`` "pending" or "satisfied"), ``delay``, ``parent``, ``batch``.

        It waits while prerequisites are pending, else it is released (enqueued). The same
        body again is a no-op (``created`` False); another body is a Conflict.
        """
        return self._drive(self.ops.register(jid, **fields))

    def enqueue(
        self,
        func: Any,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        jid: str | None = None,
        **fields: Unpack[RegisterFields],
    ) -> str:
        """Submit ``func(*args, **kwargs)`` as a tracked RQ job; returns its jid.

        The jid is the RQ job id (a new uuid unless given). ``fields`` are register's:
        ``queue``, ``prerequisites``, ``parent``, ``labels``, ``reserve_for``,
        ``max_attempts``, ``delay``... The job reaches its RQ queue when released.
        """
        jid = jid or uuid.uuid4().hex
        fields["payload"] = {
            "func": func_name(func),
            "args": list(args),
            "kwargs": dict(kwargs or {}),
        }
        self.register(jid, **fields)
        return jid

    def start(self, jid: str, *, reserve_for: int | None = None) -> Track:
        """A worker takes the job: working, attempts + 1, reserved for ``reserve_for`` s."""
        return self._drive(self.ops.start(jid, reserve_for))

    def track_set(
        self,
        jid: str,
        *,
        percent: int | None = None,
        desc: str | None = None,
        reserve_until: Any = None,
        attempt: int | None = None,
    ) -> None:
        """TRACK SET: report progress and/or extend the reservation (later only).

        One round trip. A refusal (a cancelled or finished job, an earlier reserve_until)
        raises and applies nothing; TRACK GET reads the track back. ``attempt`` (the
        ``attempts`` of the track ``start`` returned) fences the write: once that attempt
        is not running (reaped, or the job started again) it raises JobSuperseded.
        """
        self._drive(
            self.ops.track_set(
                jid, percent=percent, desc=desc, reserve_until=reserve_until, attempt=attempt
            )
        )

    def track_set_many(
        self, updates: Iterable[TrackUpdate | Mapping[str, Any]]
    ) -> list[TrackerError | None]:
        """Many TRACK SETs in one round trip per 1,000; each succeeds or fails on its own:
        the result holds None for an update applied, else the error that refused it.

        Every update is validated first: one invalid update raises before anything is sent.
        """
        return self._drive(self.ops.track_set_many(updates))

    def success(self, jid: str, *, attempt: int | None = None) -> Track:
        """The job finished well; with ``attempt``, only if that is its current attempt."""
        return self._drive(self.ops.success(jid, attempt))

    def fail(
        self,
        jid: str,
        error: str,
        *,
        retry: bool = True,
        error_type: str | None = None,
        attempt: int | None = None,
        traceback: str | None = None,
    ) -> Track:
        """An attempt failed: ``failed`` if ``retry`` and attempts remain, else ``dead``.
        With ``attempt``, only if that is the job's current attempt. ``traceback`` (the
        worker's) is kept with the error, cut to its last 8 KiB."""
        return self._drive(
            self.ops.fail(
                jid,
                error,
                retry=retry,
                error_type=error_type,
                attempt=attempt,
                traceback=traceback,
            )
        )

    def cancel(self, jid: str) -> Track:
        return self._drive(self.ops.cancel(jid))

    def pause(self, jid: str) -> Track:
        return self._drive(self.ops.pause(jid))

    def resume(self, jid: str) -> Track:
        return self._drive(self.ops.resume(jid))

    def seal(self, jid: str) -> Track:
        """A batch takes no more children; it succeeds once all of them have."""
        return self._drive(self.ops.seal(jid))

    def retry(self, jid: str, *, dependents: bool = False) -> Track:
        """Put a dead, failed or cancelled job that has a payload back to its queue:
        ``enqueued``, attempts going on (``max_attempts`` one more if they ran out), errors
        kept. What its end blocked waits again; with ``dependents``, the dependents its
        death killed wait again too."""
        return self._drive(self.ops.retry(jid, dependents=dependents))

    def delete(self, jid: str) -> State:
        """Forget a finished job (success, dead, cancelled): its track and every index
        entry; returns the state it had. A job registered later finds it unknown."""
        return self._drive(self.ops.delete(jid))

    def drain(self) -> int:
        """Finish fan-out work (releases, propagation) that an interrupted call left."""
        return self._drive(self.ops.drain())

    def promote(self) -> int:
        """Enqueue delayed jobs whose time has come; returns how many."""
        return self._drive(self.ops.promote())

    def reap(self, limit: int = 100) -> list[Track]:
        """Fail working jobs whose reservation ended; safe to run in many processes."""
        return self._drive(self.ops.reap(limit))

    # --- reads -------------------------------------------------------------------

    def prune(self, calls: int | None = None) -> int:
        """Drop expired jobs from the state and label indexes and forget the queues none
        of whose jobs is live; returns entries dropped. Each call of the Lua is bounded;
        ``calls`` caps how many of each (``None``: until nothing is due)."""
        return self._drive(self.ops.prune(calls=calls)) + self._drive(
            self.ops.prune_labels(calls=calls)
        )

    def track_get(self, jid: str) -> Track:
        """TRACK GET: the job's track, with state ``unknown`` when it has none."""
        return self._drive(self.ops.get(jid))

    def list(
        self,
        *,
        state: str | State | None = None,
        queue: str | None = None,
        label: str | None = None,
        parent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Live jobs, newest first; pass ``Page.next`` as ``cursor`` for the next page."""
        return self._drive(
            self.ops.list_jobs(
                state=state, queue=queue, label=label, parent=parent, limit=limit, cursor=cursor
            )
        )

    def state(self, jid: str) -> State:
        """Only the job's state (``unknown`` when it has no track)."""
        return self._drive(self.ops.state(jid))

    def state_and_attempt(self, jid: str) -> tuple[State, int]:
        """The job's state and current attempt (0 before its first start)."""
        return self._drive(self.ops.state_and_attempt(jid))

    def stats(self) -> Stats:
        """Counts of live jobs by state, overall and per queue."""
        return self._drive(self.ops.stats())

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis did not answer: {exc}") from exc
