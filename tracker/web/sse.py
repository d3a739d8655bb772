"""Server-Sent Events: one reader of the event stream per process, fanned out to clients.

The scripts append every change to the namespace's stream (see keys.py). The
:class:`EventHub` reads it with one blocking XREAD loop, renders each event once,
and hands it to every subscriber whose filter takes it. A client that reconnects
with ``Last-Event-ID`` first gets what it missed from the stream itself (as long as
the stream still holds it), then the live events after it, with nothing twice.

A TRACK SET's event holds only what it changed; the hub merges it onto the last
full track it saw of that job (a bounded cache), so clients always receive whole
tracks when the hub has seen the job change state at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..aio import AsyncTracker
from ..errors import InvalidInput, StoreUnavailable
from ..plans import Event
from .metrics import Metrics

log = logging.getLogger("tracker.sse")

KEEPALIVE = 15.0
BUFFER = 1000  # events a slow client may fall behind before it is dropped
CACHE = 10_000  # jobs whose last full track the hub keeps, for merging TRACK SETs
READ_COUNT = 500
BLOCK_MS = 2000  # below redis-py's 5 s read timeout

Filter = Callable[[dict[str, Any]], bool]


def parse_id(text: str) -> tuple[int, int]:
    """A stream id (``ms-seq``) as a pair that orders like the stream."""
    ms, dash, seq = text.partition("-")
    valid = _digits(ms) and (_digits(seq) if dash else True)
    if not valid or max(int(ms), int(seq or 0)) >= 2**63:
        raise InvalidInput("Last-Event-ID", f"not an event id this server sent: {text[:64]!r}")
    return int(ms), int(seq or 0)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


class Rendered:
    """An event as every client receives it: its id, track and SSE frame."""

    __slots__ = ("frame", "id", "key", "track")

    def __init__(self, event_id: str, track: dict[str, Any]) -> None:
        self.id = event_id
        self.key = parse_id(event_id)
        self.track = track
        data = json.dumps(track, ensure_ascii=False, separators=(",", ":"))
        self.frame = f"event: track\nid: {event_id}\ndata: {data}\n\n".encode()


class Subscriber:
    def __init__(self, accepts: Filter) -> None:
        self.accepts = accepts
        self.queue: asyncio.Queue[Rendered | None] = asyncio.Queue(BUFFER)
        self.dropped = False

    def offer(self, event: Rendered) -> None:
        if self.dropped or not self.accepts(event.track):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # too slow: end its stream; it may reconnect with Last-Event-ID
            self.dropped = True
            self.queue.get_nowait()
            self.queue.put_nowait(None)


class EventHub:
    """Reads the event stream once for this process and fans it out."""

    def __init__(self, tracker: AsyncTracker, metrics: Metrics | None = None) -> None:
        self.tracker = tracker
        self.metrics = metrics
        self.subscribers: set[Subscriber] = set()
        self._tracks: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tracker-event-hub")

    async def stop(self) -> None:
        self._stopping = True
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
        for subscriber in list(self.subscribers):
            subscriber.queue.put_nowait(None)

    async def _run(self) -> None:
        after: str | None = None
        pause = 0.1
        while not self._stopping:
            try:
                if after is None:
                    after = await self.tracker.newest_event()
                for event in await self.tracker.events(after, READ_COUNT, BLOCK_MS):
                    after = event.id
                    self.publish(event)
                pause = 0.1
            except StoreUnavailable as exc:
                log.warning("event stream unreadable, retrying in %.1fs: %s", pause, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
            except Exception:  # the hub must outlive anything one read can throw
                log.exception("event hub read failed; retrying in %.1fs", pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    def render(self, event: Event, remember: bool = True) -> Rendered:
        """The client's view of an event: a TRACK SET merged onto the last full track."""
        track = event.track.to_dict()
        jid = event.track.jid
        if event.change:
            if remember:
                self._remember(jid, track)
        else:
            known = self._tracks.get(jid)
            if known is not None:
                track = {**known, **track}
                if remember:
                    self._remember(jid, track)
        return Rendered(event.id, track)

    def _remember(self, jid: str, track: dict[str, Any]) -> None:
        self._tracks[jid] = track
        self._tracks.move_to_end(jid)
        if len(self._tracks) > CACHE:
            self._tracks.popitem(last=False)

    def publish(self, event: Event) -> None:
        if self.metrics is not None:
            self.metrics.observe(event)
        rendered = self.render(event)
        for subscriber in list(self.subscribers):
            subscriber.offer(rendered)

    @contextlib.contextmanager
    def subscription(self, accepts: Filter) -> Any:
        subscriber = Subscriber(accepts)
        self.subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self.subscribers.discard(subscriber)

    async def stream(
        self,
        accepts: Filter,
        *,
        last_event_id: str | None = None,
        first: Rendered | None = None,
        ends: Filter | None = None,
        keepalive: float = KEEPALIVE,
    ) -> AsyncIterator[bytes]:
        """SSE frames: ``first``, then what followed ``last_event_id``, then live events,
        until one that ``ends`` takes."""
        with self.subscription(accepts) as subscriber:
            yield b"retry: 1000\n\n"
            seen: tuple[int, int] = (0, 0)
            if first is not None:
                self._remember(first.track["jid"], first.track)
                seen = first.key
                yield first.frame
                if ends is not None and ends(first.track):
                    return
            if last_event_id is not None:
                after = last_event_id
                seen = max(seen, parse_id(after))
                while True:
                    missed = await self.tracker.events(after, READ_COUNT)
                    for event in missed:
                        after = event.id
                        rendered = self.render(event, remember=False)
                        seen = rendered.key
                        if accepts(rendered.track):
                            yield rendered.frame
                            if ends is not None and ends(rendered.track):
                                return
                    if len(missed) < READ_COUNT:
                        break
            while True:
                try:
                    async with asyncio.timeout(keepalive):
                        event = await subscriber.queue.get()
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if event is None:
                    return
                if event.key <= seen:
                    continue
                yield event.frame
                if ends is not None and ends(event.track):
                    return


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
