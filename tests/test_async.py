"""The asyncio twin and the in-memory mode run the same scripts as the sync client."""

from __future__ import annotations

import asyncio
import inspect
import uuid

import pytest
import redis
import redis.asyncio
from conftest import cleanup

from tracker import AsyncTracker, Conflict, Settings, State, Tracker
from tracker.client import Operation, Plans
from tracker.testing import memory_async_tracker, memory_tracker


async def _lifecycle(tracker: AsyncTracker) -> None:
    assert (await tracker.register("job-1", queue="q")).created
    await tracker.start("job-1")
    await asyncio.gather(*(tracker.track_set("job-1", percent=p) for p in range(10)))
    assert (await tracker.track_get("job-1")).state is State.WORKING
    assert await tracker.track_set_many([{"jid": "job-1", "desc": "half"}]) == [None]
    assert (await tracker.track_get("job-1")).desc == "half"
    assert (await tracker.success("job-1")).state is State.SUCCESS
    with pytest.raises(Conflict):
        await tracker.cancel("job-1")
    assert (await tracker.stats()).queues == {"q": {"success": 1}}
    assert [t.jid for t in (await tracker.list()).jobs] == ["job-1"]
    tracks = await tracker.track_get_many(["nobody", "job-1"])
    assert [(t.jid, t.state) for t in tracks] == [
        ("nobody", State.UNKNOWN),
        ("job-1", State.SUCCESS),
    ]
    assert await tracker.track_get_many([]) == []
    with pytest.raises(Conflict):
        await tracker.retry("job-1")
    assert await tracker.delete("job-1") is State.SUCCESS
    deleted = (await tracker.events("0"))[-1]
    assert (deleted.track.jid, deleted.track.state, deleted.was) == (
        "job-1",
        State.UNKNOWN,
        State.SUCCESS,
    )
    assert (await tracker.stats()).states == {}


def test_the_async_tracker_runs_the_lifecycle(valkey_url: str) -> None:
    settings = Settings(namespace="t-" + uuid.uuid4().hex[:12])

    async def main() -> None:
        async with AsyncTracker(redis.asyncio.Redis.from_url(valkey_url), settings) as tracker:
            await _lifecycle(tracker)

    try:
        asyncio.run(main())
    finally:
        cleanup(redis.Redis.from_url(valkey_url), settings.namespace)


def test_the_in_memory_async_tracker_runs_the_lifecycle() -> None:
    asyncio.run(_lifecycle(memory_async_tracker()))


def test_the_in_memory_tracker_behaves_like_a_real_one() -> None:
    tracker = memory_tracker()
    tracker.register("job-1")
    tracker.start("job-1")
    tracker.track_set("job-1", percent=40, desc="step 2 of 5")
    track = tracker.success("job-1")
    assert (track.state, track.percent, track.desc) == (State.SUCCESS, 40, "step 2 of 5")


def test_in_memory_trackers_do_not_share_state() -> None:
    first, second = memory_tracker(), memory_tracker()
    first.register("job-1")
    assert second.track_get("job-1").state is State.UNKNOWN


def _surface(cls: type) -> dict[str, list[inspect.Parameter]]:
    """Every public method of a client class, by name: its parameters (self left out)."""
    surface = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        value = inspect.getattr_static(cls, name)
        if isinstance(value, Operation):
            surface[name] = list(value.signature.parameters.values())
        elif callable(value) or isinstance(value, classmethod):
            function = value.__func__ if isinstance(value, classmethod) else value
            surface[name] = list(inspect.signature(function).parameters.values())[1:]
    return surface


def test_both_clients_have_the_same_methods_with_the_same_parameters() -> None:
    sync, asynchronous = _surface(Tracker), _surface(AsyncTracker)
    assert sorted(sync) == sorted(asynchronous)
    assert sync == asynchronous
    assert {"register", "track_set", "related", "snapshot", "events", "ready"} <= set(sync)


def test_every_method_of_the_asyncio_client_is_a_coroutine_function() -> None:
    async def main() -> None:
        tracker = memory_async_tracker()
        try:
            for name in _surface(AsyncTracker):
                if name != "from_url":
                    assert inspect.iscoroutinefunction(getattr(tracker, name)), name
            assert await tracker.ping() is True
            assert await tracker.ready() is True
        finally:
            await tracker.close()

    asyncio.run(main())


def test_a_method_of_either_client_shows_the_plan_s_signature_and_docstring() -> None:
    tracker = memory_tracker()
    try:
        assert tracker.start.__doc__ == Tracker.start.__doc__ == Plans.start.__doc__
        assert (
            str(inspect.signature(tracker.start))
            == "(jid: 'str', *, reserve_for: 'int | None' = None)"
        )
        assert tracker.start is tracker.start  # made once per client
        assert tracker.ready() is True
    finally:
        tracker.close()
