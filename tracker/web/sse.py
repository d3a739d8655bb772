"""Server-Sent Events: one reader of the event stream per process, fanned out to clients.

The scripts append every change to the namespace's stream (see keys.py). The
:class:`EventHub` reads it with one blocking XREAD loop, renders each event once,
and hands it to every subscriber whose filter takes it. A client that reconnects
with ``Last-Event-ID`` first gets what it missed from the stream itself (as long as
the stream still holds it), then the live events after it, with nothing twice.

Every event holds the whole track (see add_event in lua/_common.lua), so the hub
renders what it reads as it is: it keeps no tracks and merges nothing.

Costs that grow with clients times events are kept to the minimum: an event is
rendered to JSON once, and only while someone listens for it; a job's stream is
found by the event's jid, not by testing every client's filter; what a client has
queued leaves in one write; keep-alives come from one timer for all clients, not
one per client per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..client import AsyncTracker
from ..errors import InvalidInput, StoreUnavailable
from ..model import MAX_DIGITS, Track
from ..records import UNREADABLE, Event
from .metrics import Metrics

log = logging.getLogger("tracker.sse")

KEEPALIVE = 15.0
BUFFER = 1000  # events a slow client may fall behind before it is dropped
READ_COUNT = 500
BLOCK_MS = 2000
READ_GRACE = 3.0  # seconds a blocked read may overrun BLOCK_MS before it counts as lost

Filter = Callable[[dict[str, Any]], bool]


def parse_id(text: str) -> tuple[int, int]:
    """A stream id (``ms-seq``) as a pair that orders like the stream."""
    ms, dash, seq = text.partition("-")
    valid = _digits(ms) and (_digits(seq) if dash else True)
    if not valid or max(int(ms), int(seq or 0)) >= 2**63:
        raise InvalidInput("Last-Event-ID", f"not an event id this server sent: {text[:64]!r}")
    return int(ms), int(seq or 0)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS


class Rendered:
    """An event as every client receives it: its id (as a sortable key), track and frame."""

    __slots__ = ("frame", "key", "track")

    def __init__(self, event_id: str, track: dict[str, Any]) -> None:
        self.key = parse_id(event_id)
        self.track = track
        data = json.dumps(track, ensure_ascii=False, separators=(",", ":"))
        self.frame = f"event: track\nid: {event_id}\ndata: {data}\n\n".encode()


KEEP_ALIVE = b": keep-alive\n\n"


class Subscriber:
    def __init__(self, accepts: Filter) -> None:
        self.accepts = accepts
        # None ends the stream, bytes are a keep-alive; the last slot is kept for None
        self.queue: asyncio.Queue[Rendered | bytes | None] = asyncio.Queue(BUFFER + 1)
        self.closed = False

    def offer(self, event: Rendered) -> None:
        if self.closed or not self.accepts(event.track):
            return
        if self.queue.qsize() >= BUFFER:
            # too slow: its stream ends after what it holds, and it reconnects with the
            # Last-Event-ID of the last one it got, so nothing is lost
            self.close()
            return
        self.queue.put_nowait(event)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


class EventHub:
    """Reads the event stream once for this process and fans it out."""

    def __init__(
        self, tracker: AsyncTracker, metrics: Metrics | None = None, keepalive: float = KEEPALIVE
    ) -> None:
        self.tracker = tracker
        self.metrics = metrics
        self.keepalive = keepalive
        self._broad: set[Subscriber] = set()  # those that may take any job's events
        self._by_jid: dict[str, set[Subscriber]] = {}  # those of one job
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def subscribers(self) -> list[Subscriber]:
        """Every subscriber, broad or of one job."""
        return [*self._broad, *(s for group in self._by_jid.values() for s in group)]

    async def start(self) -> None:
        """Start reading from the newest event now, so nothing written after this call
        is missed (if Redis is down, from the newest once it answers)."""
        after = None
        with contextlib.suppress(StoreUnavailable):
            after = await self.tracker.newest_event()
        self._task = asyncio.create_task(self._run(after), name="tracker-event-hub")
        self._ticker = asyncio.create_task(self._tick(), name="tracker-keep-alive")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive)
            for subscriber in self.subscribers:
                if subscriber.queue.empty() and not subscriber.closed:
                    subscriber.queue.put_nowait(KEEP_ALIVE)

    async def stop(self) -> None:
        self._stopping = True
        if self._ticker is not None:
            self._ticker.cancel()
        if self._task is not None:
            # a client library may swallow a cancel mid-read (and raise its own error
            # instead): the flag ends the loop then, and the cancel is repeated until it does
            for _ in range(5):
                if self._task.done():
                    break
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=1.0)
            else:
                log.warning("the event hub did not stop; leaving it")
        for subscriber in self.subscribers:
            subscriber.close()

    async def _run(self, after: str | None) -> None:
        pause = 0.1
        while not self._stopping:
            try:
                if after is None:
                    after = await self.tracker.newest_event()
                # a half-open connection would block forever: the read has a deadline
                async with asyncio.timeout(BLOCK_MS / 1000 + READ_GRACE):
                    events = await self.tracker.events(after, READ_COUNT, BLOCK_MS, decode=False)
                for event in events:
                    after = event.id
                    self.publish(event)
                pause = 0.1
            except (StoreUnavailable, TimeoutError) as exc:
                log.warning("event stream unreadable, retrying in %.1fs: %s", pause, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
            except Exception:  # the hub must outlive anything one read can throw
                log.exception("event hub read failed; retrying in %.1fs", pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    def publish(self, event: Event) -> None:
        if self.metrics is not None:
            self.metrics.observe(event)
        mine = self._by_jid.get(event.jid)
        if not (self._broad or mine):
            return  # nobody to hand it to: its track is never decoded
        try:
            rendered = Rendered(event.id, event.track.to_dict())
        except UNREADABLE:  # not written by this version's scripts
            log.warning("skipped an event it cannot read: %r", event.id)
            return
        for subscriber in [*self._broad, *(mine or ())]:
            subscriber.offer(rendered)

    @contextlib.contextmanager
    def subscription(self, accepts: Filter, jid: str | None = None) -> Any:
        """A subscriber for the events ``accepts`` takes; ``jid``: of that job only."""
        subscriber = Subscriber(accepts)
        group = self._broad if jid is None else self._by_jid.setdefault(jid, set())
        group.add(subscriber)
        try:
            yield subscriber
        finally:
            group.discard(subscriber)
            if jid is not None and not group:
                self._by_jid.pop(jid, None)

    async def stream(
        self,
        accepts: Filter | None = None,
        *,
        jid: str | None = None,
        last_event_id: str | None = None,
        first: tuple[str, Track] | None = None,
        ends: Filter | None = None,
        finished: bool = False,
    ) -> AsyncIterator[bytes]:
        """SSE frames: ``first`` (an event id and the track then), then every event
        after that id (or after ``last_event_id``), until one that ``ends`` takes; when
        the job already ``finished``, only what the client missed. ``jid``: that job's
        events only (``accepts`` then defaults to them; with neither, every event).
        """
        if accepts is None:
            accepts = _any if jid is None else functools.partial(_of_job, jid)
        with self.subscription(accepts, jid) as subscriber:
            yield b"retry: 1000\n\n"
            seen: tuple[int, int] = (0, 0)
            after = last_event_id
            if first is not None:
                after, track = first
                rendered = Rendered(after, track.to_dict())
                yield rendered.frame
                if ends is not None and ends(rendered.track):
                    return
            if after is not None:
                # what came between the id and the subscription, read from the stream
                seen = parse_id(after)
                while True:
                    missed = await self.tracker.events(after, READ_COUNT)
                    for event in missed:
                        after = event.id
                        rendered = Rendered(event.id, event.track.to_dict())
                        seen = rendered.key
                        if accepts(rendered.track):
                            yield rendered.frame
                            if ends is not None and ends(rendered.track):
                                return
                    if len(missed) < READ_COUNT:
                        break
            if finished:
                return
            while True:
                # what queued up meanwhile leaves in one write, not one per event
                item = await subscriber.queue.get()
                frames: list[bytes] = []
                while True:
                    if item is None:
                        yield b"".join(frames)
                        return
                    if isinstance(item, bytes):
                        frames.append(item)
                    elif item.key > seen:
                        frames.append(item.frame)
                        if ends is not None and ends(item.track):
                            yield b"".join(frames)
                            return
                    try:
                        item = subscriber.queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                if frames:
                    yield b"".join(frames)


def _any(track: dict[str, Any]) -> bool:
    return True


def _of_job(jid: str, track: dict[str, Any]) -> bool:
    return bool(track["jid"] == jid)


class EventStreamResponse(StreamingResponse):
    """A stream that ends as soon as the client goes, so no task outlives it."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes]) -> None:
        super().__init__(
            content,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                with contextlib.suppress(OSError, anyio.BrokenResourceError):
                    await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()
        await self.body_iterator.aclose()  # type: ignore[attr-defined]
