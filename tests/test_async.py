"""The asyncio twin and the in-memory mode run the same scripts as the sync client."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
import redis.asyncio
from conftest import cleanup

from tracker import Conflict, Settings, State
from tracker.aio import AsyncTracker
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
