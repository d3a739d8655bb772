"""Automatic pipelining of the asyncio client: concurrent tasks' commands leave together,
and each task still gets exactly its own reply or its own error."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio

from tracker import AsyncTracker, NotFound, Settings, State
from tracker.embedded import EmbeddedValkey
from tracker.pipelining import AutoPipeline

T = TypeVar("T")


@pytest.fixture
def run(real_url: str, namespace: str) -> Iterator[Callable[..., Any]]:
    """Runs ``main(tracker)`` with an AsyncTracker on the test's namespace."""

    def go(main: Callable[[AsyncTracker], Awaitable[T]], **options: Any) -> T:
        async def wrapped() -> T:
            client = redis.asyncio.Redis.from_url(real_url)
            async with AsyncTracker(client, Settings(namespace=namespace), **options) as tracker:
                return await main(tracker)

        return asyncio.run(wrapped())

    yield go


def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    send = AutoPipeline._send

    async def counted(self: AutoPipeline, batch: list[Any]) -> None:
        sizes.append(len(batch))
        await send(self, batch)

    monkeypatch.setattr(AutoPipeline, "_send", counted)
    return sizes


def test_concurrent_calls_leave_together_and_each_gets_its_own_reply(
    run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = batch_sizes(monkeypatch)

    async def main(tracker: AsyncTracker) -> list[Any]:
        await asyncio.gather(*(tracker.register(f"j{n}") for n in range(50)))
        await asyncio.gather(*(tracker.start(f"j{n}") for n in range(50)))
        return await asyncio.gather(
            *(tracker.track_set_returning(f"j{n}", percent=n) for n in range(50))
        )

    tracks = run(main)
    assert [(t.jid, t.percent) for t in tracks] == [(f"j{n}", n) for n in range(50)]
    assert max(sizes) == 50
    assert len(sizes) < 10


def test_an_error_reaches_only_the_task_that_caused_it(run: Callable[..., Any]) -> None:
    async def main(tracker: AsyncTracker) -> list[Any]:
        await tracker.register("known")
        return await asyncio.gather(
            tracker.track_get("known"),
            tracker.cancel("unknown"),
            tracker.pause("known"),
            return_exceptions=True,
        )

    got, refused, paused = run(main)
    assert got.state is State.ENQUEUED
    assert isinstance(refused, NotFound)
    assert paused.state is State.PAUSED


def test_a_cancelled_caller_leaves_the_others_their_replies(run: Callable[..., Any]) -> None:
    async def main(tracker: AsyncTracker) -> tuple[list[Any], State]:
        await tracker.register("a")
        doomed = asyncio.ensure_future(tracker.start("a"))
        others = [asyncio.ensure_future(tracker.track_get("a")) for _ in range(5)]
        await asyncio.sleep(0)
        doomed.cancel()
        results = await asyncio.gather(*others)
        return results, await tracker.state("a")

    results, state = run(main)
    assert {t.jid for t in results} == {"a"}
    assert state in {State.ENQUEUED, State.WORKING}  # the cancel may come after it was sent


def test_without_pipelining_the_same_calls_give_the_same_results(
    run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = batch_sizes(monkeypatch)

    async def main(tracker: AsyncTracker) -> list[State]:
        await asyncio.gather(*(tracker.register(f"j{n}") for n in range(10)))
        return [
            t.state for t in await asyncio.gather(*(tracker.cancel(f"j{n}") for n in range(10)))
        ]

    assert run(main, pipelining=False) == [State.CANCELLED] * 10
    assert sizes == []


def test_a_server_that_lost_the_library_gets_it_again_within_a_pipeline(tmp_path: Path) -> None:
    valkey = EmbeddedValkey(tmp_path / "own")
    url = valkey.start()

    async def main() -> list[State]:
        async with AsyncTracker(redis.asyncio.Redis.from_url(url), Settings()) as tracker:
            await tracker.register("before")
            redis.Redis.from_url(url).function_flush()
            tracks = await asyncio.gather(*(tracker.register(f"j{n}") for n in range(5)))
            return [r.track.state for r in tracks]

    try:
        assert asyncio.run(main()) == [State.ENQUEUED] * 5
    finally:
        valkey.stop()
