"""The clients: one method set, written once, and two drivers that run it.

Every operation is a plan (see calls.py) of :class:`Plans`. :class:`Client` names
them once, each as an :class:`Operation`; :class:`Tracker` runs a plan with a
blocking Redis client, :class:`AsyncTracker` with an asyncio one (its methods are
coroutines). So both have every method, with one signature and one docstring each,
and no operation's logic is written twice. These two classes alone talk to Redis.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, cast, overload

import redis
import redis.asyncio
import redis.exceptions

from . import scripts
from .calls import Call, Plan, Read
from .cluster import AsyncClusterClient, ClusterClient, close_nodes, keyless
from .errors import StoreUnavailable
from .events import Events
from .graph import Graph
from .lifecycle import Lifecycle
from .listing import Listing
from .pipelining import AutoPipeline
from .settings import Settings
from .upkeep import Upkeep
from .workers import Workers

P = ParamSpec("P")
T = TypeVar("T")

#: Redis errors that mean "the store did not answer", as opposed to a bug.
UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.RedisClusterException,  # e.g. no node of the cluster answers
)


class Plans(Lifecycle, Graph, Listing, Events, Upkeep, Workers):
    """Every plan of one namespace, with one set of settings."""


class Operation(Generic[P, T]):
    """One method of both clients: it runs the plan of the same name.

    Read from a :class:`Tracker` it is a function returning the plan's result, from an
    :class:`AsyncTracker` a coroutine function; it is made once per client.
    """

    def __init__(self, plan: Callable[Concatenate[Plans, P], Plan[T]]) -> None:
        self.plan = plan
        self.__doc__ = plan.__doc__
        signature = inspect.signature(plan)
        self.signature = signature.replace(
            parameters=list(signature.parameters.values())[1:],
            return_annotation=inspect.Signature.empty,  # a plan, not what a client returns
        )
        self.name = plan.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, client: None, owner: type) -> Operation[P, T]: ...
    @overload
    def __get__(self, client: Tracker, owner: type) -> Callable[P, T]: ...
    @overload
    def __get__(self, client: AsyncTracker, owner: type) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, client: Client | None, owner: type) -> Any:
        if client is None:
            return self
        method = client._bind(self.plan)
        functools.update_wrapper(method, self.plan)
        method.__name__ = method.__qualname__ = self.name
        method.__signature__ = self.signature  # type: ignore[attr-defined]
        client.__dict__[self.name] = method  # later reads find it there
        return method


class Client:
    """The methods both clients have; see each plan for what it does."""

    plans: Plans

    def _bind(self, plan: Callable[..., Plan[Any]]) -> Callable[..., Any]:
        raise NotImplementedError

    # a job's life (lifecycle.py)
    register = Operation(Plans.register)
    enqueue = Operation(Plans.enqueue)
    start = Operation(Plans.start)
    track_set = Operation(Plans.track_set)
    track_set_returning = Operation(Plans.track_set_returning)
    track_set_many = Operation(Plans.track_set_many)
    success = Operation(Plans.success)
    fail = Operation(Plans.fail)
    cancel = Operation(Plans.cancel)
    pause = Operation(Plans.pause)
    resume = Operation(Plans.resume)
    retry = Operation(Plans.retry)
    delete = Operation(Plans.delete)
    # the graph (graph.py)
    seal = Operation(Plans.seal)
    related = Operation(Plans.related)
    workflow = Operation(Plans.workflow)
    # reads (listing.py)
    track_get = Operation(Plans.track_get)
    track_get_many = Operation(Plans.track_get_many)
    state = Operation(Plans.state)
    state_and_attempt = Operation(Plans.state_and_attempt)
    stats = Operation(Plans.stats)
    enqueued_ages = Operation(Plans.enqueued_ages)
    ping = Operation(Plans.ping)
    # the event stream (events.py)
    events = Operation(Plans.events)
    newest_event = Operation(Plans.newest_event)
    snapshot = Operation(Plans.snapshot)
    # upkeep (upkeep.py)
    maintain = Operation(Plans.maintain)
    drain = Operation(Plans.drain)
    promote = Operation(Plans.promote)
    reap = Operation(Plans.reap)
    prune = Operation(Plans.prune)
    # the workers' registry (workers.py)
    worker_beat = Operation(Plans.worker_beat)
    workers = Operation(Plans.workers)
    # last: in this class's body, the name shadows the builtin
    list = Operation(Plans.list_jobs)


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


def connect_async(url: str, cluster: bool = False) -> redis.asyncio.Redis:
    """An asyncio client for ``url``; with ``cluster``, a Redis Cluster client."""
    # the connect timeout also bounds a disconnect (redis-py waits for the close under it)
    options: dict[str, Any] = {
        "decode_responses": False,
        "health_check_interval": 30,
        "socket_connect_timeout": 5,
    }
    if cluster:
        client = AsyncClusterClient.from_url(url, **options)
        return cast(redis.asyncio.Redis, client)
    return redis.asyncio.Redis.from_url(url, **options)


def disconnect(client: redis.Redis) -> None:
    """Close ``client`` and its connections (a cluster client's nodes' too)."""
    close_nodes(client)
    client.close()


class Tracker(Client):
    """Tracks jobs in Redis: lifecycle, progress, listing and counts.

    Every write is one Lua function call: atomic and one round trip. ``clock``
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
        self.plans = Plans(self.settings, clock)
        self.keys = self.plans.keys
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

    def ready(self, timeout: float = 2.0) -> bool:
        """Redis answers and holds tracker's function library (loading it into a server
        that lost it); an answer later than ``timeout`` seconds counts as none."""
        try:
            took = _timed(lambda: self._library.ensure(self.client))
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis did not answer: {exc}") from exc
        if took > timeout:
            raise StoreUnavailable(f"Redis did not answer within {timeout} s")
        return True

    def _bind(self, plan: Callable[..., Plan[T]]) -> Callable[..., T]:
        plans, drive = self.plans, self._drive

        def method(*args: Any, **kwargs: Any) -> T:
            return drive(plan(plans, *args, **kwargs))

        return method

    def _drive(self, plan: Plan[T]) -> T:
        try:
            step = next(plan)
            while True:
                if isinstance(step, Call):
                    reply: Any = self._library.call(self.client, step)
                elif len(step.commands) == 1:
                    name, args = step.commands[0]
                    reply = [getattr(self.client, name)(*args)]
                else:
                    reply = self._pipelined(step)
                step = plan.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis did not answer: {exc}") from exc

    def _pipelined(self, read: Read) -> list[Any]:
        """One pipeline, and apart what a cluster's pipeline may not hold."""
        commands = read.commands
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


class AsyncTracker(Client):
    """Tracks jobs in Redis from asyncio code: :class:`Tracker`'s methods, as coroutines."""

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
        self.plans = Plans(self.settings, clock)
        self.keys = self.plans.keys
        self._library = scripts.Library()
        self._pipeline = AutoPipeline(client) if pipelining else None
        self._alone = keyless(client)

    #: Where the client connects, when built by :meth:`from_url`.
    url: str | None = None

    @classmethod
    def from_url(cls, url: str, settings: Settings | None = None) -> AsyncTracker:
        """A tracker on ``url``; a Redis Cluster one when ``settings.redis_cluster``."""
        settings = settings or Settings()
        tracker = cls(connect_async(url, settings.redis_cluster), settings)
        tracker.url = url
        return tracker

    async def close(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> AsyncTracker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

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

    def _bind(self, plan: Callable[..., Plan[T]]) -> Callable[..., Coroutine[Any, Any, T]]:
        plans, drive = self.plans, self._drive

        async def method(*args: Any, **kwargs: Any) -> T:
            return await drive(plan(plans, *args, **kwargs))

        return method

    async def _drive(self, plan: Plan[T]) -> T:
        try:
            step = next(plan)
            while True:
                if isinstance(step, Call):
                    reply: Any = await self._library.acall(self.client, step, self._pipeline)
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
                    reply = await self._pipelined(step)
                step = plan.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis did not answer: {exc}") from exc

    async def _pipelined(self, read: Read) -> list[Any]:
        """Without automatic pipelining: one pipeline, and apart what it may not hold."""
        commands = read.commands
        replies = {
            i: await getattr(self.client, name)(*args)
            for i, (name, args) in enumerate(commands)
            if name in self._alone
        }
        async with self.client.pipeline(transaction=False) as pipe:
            for i, (name, args) in enumerate(commands):
                if i not in replies:
                    getattr(pipe, name)(*args)
            piped = iter(await pipe.execute())
        return [replies[i] if i in replies else next(piped) for i in range(len(commands))]


def _timed(run: Callable[[], object]) -> float:
    started = time.monotonic()
    run()
    return time.monotonic() - started
