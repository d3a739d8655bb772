"""AsyncTracker: the asyncio twin of :class:`tracker.store.Tracker`.

Both drive the same plans from :mod:`tracker.ops`; only the I/O differs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, Unpack, cast

import redis.asyncio
import redis.exceptions

from . import scripts
from .cluster import AsyncClusterClient, keyless
from .errors import StoreUnavailable, TrackerError
from .model import RegisterFields, State, Track, TrackUpdate, func_name
from .ops import Call, Event, Ops, Page, Plan, Registered, Related, Stats
from .pipelining import AutoPipeline
from .settings import Settings
from .store import UNAVAILABLE

T = TypeVar("T")


def connect(url: str, cluster: bool = False) -> redis.asyncio.Redis:
    """An asyncio client for ``url``; with ``cluster``, a Redis Cluster client."""
    # the connect timeout also bounds a disconnect (redis-py waits for the close under it)
    options: dict[str, Any] = {
        "decode_responses": False,
        "health_check_interval": 30,
        "socket_connect_timeout": 5,
    }
    if cluster:
        # typed as Redis: tracker calls only what both clients have
        client = AsyncClusterClient.from_url(url, **options)
        return cast(redis.asyncio.Redis, client)
    return redis.asyncio.Redis.from_url(url, **options)


class AsyncTracker:
    """Tracks jobs in Redis from asyncio code; see :class:`tracker.Tracker` for each method."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        settings: Settings | None = None,
        *,
        clock: Callable[[], float] | None = None,
        pipelining: bool = True,
    ) -> None:
        """``pipelining`` sends the commands of concurrent tasks together (see
        pipelining.py): the same results, fewer round trips under load."""
        self.client = client
        self.settings = settings or Settings()
        self.ops = Ops(self.settings, clock)
        self.keys = self.ops.keys
        self._library = scripts.Library()
        self._pipeline = AutoPipeline(client) if pipelining else None
        self._alone = keyless(client)

    @classmethod
    def from_url(cls, url: str, settings: Settings | None = None) -> AsyncTracker:
        settings = settings or Settings()
        return cls(connect(url, settings.redis_cluster), settings)

    async def close(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> AsyncTracker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _drive(self, plan: Plan[T]) -> T:
        try:
            step = next(plan)
            while True:
                if isinstance(step, Call):
                    reply: Any = await self._call(step)
                elif self._pipeline is not None:
                    sent = [self._pipeline.send(name, *args) for name, args in step.commands]
                    # every reply is awaited, so no error is left unretrieved
                    replies = await asyncio.gather(*sent, return_exceptions=True)
                    for one in replies:
                        if isinstance(one, BaseException):
                            raise one
                    reply = replies
                elif len(step.commands) == 1:
                    name, args = step.commands[0]
                    reply = [await getattr(self.client, name)(*args)]
                else:
                    reply = await self._pipelined(step.commands)
                step = plan.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis did not answer: {exc}") from exc

    async def _pipelined(self, commands: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Without automatic pipelining: one pipeline, and what it may not hold alone."""
        alone = self._alone
        replies = {
            i: await getattr(self.client, name)(*args)
            for i, (name, args) in enumerate(commands)
            if name in alone
        }
        async with self.client.pipeline(transaction=False) as pipe:
            for i, (name, args) in enumerate(commands):
                if i not in replies:
                    getattr(pipe, name)(*args)
            piped = iter(await pipe.execute())
        return [replies[i] if i in replies else next(piped) for i in range(len(commands))]

    async def _call(self, call: Call) -> Any:
        library = self._library
        return await library.acall(self.client, call.script, call.keys, call.args, self._pipeline)

    async def register(self, jid: str, **fields: Unpack[RegisterFields]) -> Registered:
        return await self._drive(self.ops.register(jid, **fields))

    async def enqueue(
        self,
        func: Any,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        jid: str | None = None,
        **fields: Unpack[RegisterFields],
    ) -> str:
        jid = jid or uuid.uuid4().hex
        fields["payload"] = {
            "func": func_name(func),
            "args": list(args),
            "kwargs": dict(kwargs or {}),
        }
        await self.register(jid, **fields)
        return jid

    async def start(self, jid: str, *, reserve_for: int | None = None) -> Track:
        return await self._drive(self.ops.start(jid, reserve_for))

    async def track_set(
        self,
        jid: str,
        *,
        percent: int | None = None,
        desc: str | None = None,
        reserve_until: Any = None,
        attempt: int | None = None,
    ) -> None:
        await self._drive(
            self.ops.track_set(
                jid, percent=percent, desc=desc, reserve_until=reserve_until, attempt=attempt
            )
        )

    async def track_set_returning(
        self,
        jid: str,
        *,
        percent: int | None = None,
        desc: str | None = None,
        reserve_until: Any = None,
        attempt: int | None = None,
    ) -> Track:
        """TRACK SET that also returns the track as the write left it (one round trip)."""
        track = await self._drive(
            self.ops.track_set(
                jid,
                percent=percent,
                desc=desc,
                reserve_until=reserve_until,
                attempt=attempt,
                returning=True,
            )
        )
        assert track is not None
        return track

    async def track_set_many(
        self, updates: Iterable[TrackUpdate | Mapping[str, Any]]
    ) -> list[TrackerError | None]:
        return await self._drive(self.ops.track_set_many(updates))

    async def success(self, jid: str, *, attempt: int | None = None) -> Track:
        return await self._drive(self.ops.success(jid, attempt))

    async def fail(
        self,
        jid: str,
        error: str,
        *,
        retry: bool = True,
        error_type: str | None = None,
        attempt: int | None = None,
        traceback: str | None = None,
    ) -> Track:
        return await self._drive(
            self.ops.fail(
                jid,
                error,
                retry=retry,
                error_type=error_type,
                attempt=attempt,
                traceback=traceback,
            )
        )

    async def cancel(self, jid: str) -> Track:
        return await self._drive(self.ops.cancel(jid))

    async def pause(self, jid: str) -> Track:
        return await self._drive(self.ops.pause(jid))

    async def resume(self, jid: str) -> Track:
        return await self._drive(self.ops.resume(jid))

    async def seal(self, jid: str) -> Track:
        """A batch takes no more children; it succeeds once all of them have."""
        return await self._drive(self.ops.seal(jid))

    async def retry(self, jid: str, *, dependents: bool = False) -> Track:
        """Put a dead, failed or cancelled job that has a payload back to its queue."""
        return await self._drive(self.ops.retry(jid, dependents=dependents))

    async def delete(self, jid: str) -> State:
        """Forget a finished job; returns the state it had."""
        return await self._drive(self.ops.delete(jid))

    async def drain(self) -> int:
        """Finish fan-out work (releases, propagation) that an interrupted call left."""
        return await self._drive(self.ops.drain())

    async def promote(self) -> int:
        """Enqueue delayed jobs whose time has come; returns how many."""
        return await self._drive(self.ops.promote())

    async def reap(self, limit: int = 100) -> list[Track]:
        return await self._drive(self.ops.reap(limit))

    async def prune(self, calls: int | None = None) -> int:
        """Drop expired jobs from the state and label indexes and forget the queues none
        of whose jobs is live; returns entries dropped. Each call of the Lua is bounded;
        ``calls`` caps how many of each (``None``: until nothing is due)."""
        return await self._drive(self.ops.prune(calls=calls)) + await self._drive(
            self.ops.prune_labels(calls=calls)
        )

    async def track_get(self, jid: str) -> Track:
        return await self._drive(self.ops.get(jid))

    async def track_get_many(self, jids: Sequence[str]) -> list[Track]:
        """TRACK GET of many jobs in one round trip, in order."""
        return await self._drive(self.ops.get_many(jids))

    async def list(
        self,
        *,
        state: str | State | None = None,
        queue: str | None = None,
        label: str | None = None,
        parent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        return await self._drive(
            self.ops.list_jobs(
                state=state, queue=queue, label=label, parent=parent, limit=limit, cursor=cursor
            )
        )

    async def state(self, jid: str) -> State:
        """Only the job's state (``unknown`` when it has no track)."""
        return await self._drive(self.ops.state(jid))

    async def state_and_attempt(self, jid: str) -> tuple[State, int]:
        """The job's state and current attempt (0 before its first start)."""
        return await self._drive(self.ops.state_and_attempt(jid))

    async def stats(self) -> Stats:
        return await self._drive(self.ops.stats())

    async def related(self, jid: str, limit: int = 100) -> Related:
        """The job's prerequisites, dependents and children, with their states."""
        return await self._drive(self.ops.related(jid, limit))

    async def enqueued_ages(self) -> dict[str, int]:
        """Per queue, how long (ms) its oldest enqueued job has waited."""
        return await self._drive(self.ops.enqueued_ages())

    async def events(
        self, after: str, count: int = 500, block_ms: int | None = None
    ) -> Sequence[Event]:
        """Events after the id ``after``, oldest first; ``block_ms`` waits for one."""
        return await self._drive(self.ops.events(after, count, block_ms))

    async def newest_event(self) -> str:
        """The id of the newest event (``0-0`` when there is none)."""
        return await self._drive(self.ops.newest_event())

    async def snapshot(self, jid: str) -> tuple[str, Track]:
        """The newest event's id and then the job's track (see ``ReadPlans.snapshot``)."""
        return await self._drive(self.ops.snapshot(jid))

    async def ready(self, timeout: float = 2.0) -> bool:
        """Redis answers within ``timeout`` seconds and holds tracker's function library
        (loading it into a server that lost it)."""
        try:
            async with asyncio.timeout(timeout):
                await self._library.aensure(self.client)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis did not answer: {exc}") from exc
        except TimeoutError:
            raise StoreUnavailable(f"Redis did not answer within {timeout} s") from None
        return True

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis did not answer: {exc}") from exc
