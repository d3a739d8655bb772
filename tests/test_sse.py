"""Server-Sent Events through a real uvicorn server: order, resume with Last-Event-ID,
many clients at once, filters, and no subscriber left behind by a client that went."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio
import uvicorn
from conftest import local_client, wait_until
from starlette.applications import Starlette

from tracker import AsyncTracker, Settings, State, Tracker
from tracker.embedded import EmbeddedValkey
from tracker.web import create_app
from tracker.web import sse as sse_module
from tracker.web.metrics import Metrics
from tracker.web.sse import EventHub, Rendered, Subscriber


@dataclass
class Server:
    url: str
    app: Starlette

    @property
    def subscribers(self) -> int:
        return len(self.app.state.hub.subscribers)


@pytest.fixture
def server(real_url: str, namespace: str) -> Iterator[Server]:
    app = create_app(Settings(namespace=namespace), url=real_url, maintenance=False, keepalive=0.5)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    wait_until(lambda: runner.started)
    port = runner.servers[0].sockets[0].getsockname()[1]
    yield Server(f"http://127.0.0.1:{port}", app)
    runner.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def store(real_url: str, namespace: str) -> Iterator[Tracker]:
    with Tracker.from_url(real_url, Settings(namespace=namespace)) as tracker:
        yield tracker


def sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Parse an event stream: yields each event's fields, and ``{"retry": ...}`` once
    the server has subscribed (its first frame)."""
    fields: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def track_of(event: dict[str, Any]) -> dict[str, Any]:
    assert event["event"] == "track"
    return json.loads(event["data"])  # type: ignore[no-any-return]


def test_a_job_stream_sends_its_track_then_each_change_in_order_then_closes(
    server: Server, store: Tracker
) -> None:
    store.register("j1")
    store.start("j1")
    with httpx.stream("GET", f"{server.url}/jobs/j1/events", timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse(response.iter_lines())
        assert next(events) == {"retry": "1000"}
        assert track_of(next(events))["state"] == "working"
        for percent in (10, 20, 30):
            store.track_set("j1", percent=percent)
        store.success("j1")
        rest = [track_of(e) for e in events]  # ends when the server closes the stream
    assert [(t["state"], t.get("percent")) for t in rest] == [
        ("working", 10),
        ("working", 20),
        ("working", 30),
        ("success", 30),
    ]
    wait_until(lambda: server.subscribers == 0)


def test_a_job_stream_of_an_unknown_job_is_404(server: Server) -> None:
    for headers in ({}, {"Last-Event-ID": "1-0"}):  # a reconnect too
        response = httpx.get(f"{server.url}/jobs/ghost/events", headers=headers, timeout=10)
        assert response.status_code == 404
        assert response.json()["state"] == "unknown"


def test_a_finished_job_stream_sends_its_track_and_closes(server: Server, store: Tracker) -> None:
    store.register("j1")
    store.cancel("j1")
    with httpx.stream("GET", f"{server.url}/jobs/j1/events", timeout=10) as response:
        events = [e for e in sse(response.iter_lines()) if "event" in e]
    assert [track_of(e)["state"] for e in events] == ["cancelled"]


def test_a_reconnect_with_last_event_id_misses_nothing_still_held(
    server: Server, store: Tracker
) -> None:
    store.register("j1")
    store.start("j1")
    with httpx.stream("GET", f"{server.url}/events", timeout=10) as response:
        events = sse(response.iter_lines())
        next(events)  # subscribed
        store.track_set("j1", percent=1)
        seen = next(events)
        assert track_of(seen)["percent"] == 1
    store.track_set("j1", percent=2)
    store.track_set("j1", percent=3)
    headers = {"Last-Event-ID": seen["id"]}
    with httpx.stream("GET", f"{server.url}/events", headers=headers, timeout=10) as response:
        events = sse(response.iter_lines())
        next(events)
        store.track_set("j1", percent=4)
        got = [next(events) for _ in range(3)]
    assert [track_of(e)["percent"] for e in got] == [2, 3, 4]
    ids = [seen["id"], *(e["id"] for e in got)]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert len(set(ids)) == 4


@pytest.mark.parametrize(
    "bad",
    [
        "yesterday",
        "1-",
        "-1",
        "1-2-3",
        "\u00b2",
        str(2**64),
        f"{2**64 - 1}-{2**64 - 1}",
        "1-" + "1" * 5000,  # past Python's 4,300 digits for int(str)
        "9" * 5000,
    ],
)
def test_a_bad_last_event_id_is_400(server: Server, store: Tracker, bad: str) -> None:
    store.register("j1")
    headers = {"Last-Event-ID": bad.encode()}
    for path in ("/events", "/jobs/j1/events"):
        response = httpx.get(f"{server.url}{path}", headers=headers, timeout=10)
        assert response.status_code == 400
        assert response.json()["field"] == "Last-Event-ID"


def test_a_last_event_id_ahead_of_the_stream_replays_it_from_its_start(
    server: Server, store: Tracker
) -> None:
    """An id ahead of every event means the stream began again since the client read it
    (the store was emptied): all it holds is news to the client, not a reason for
    silence until the stream catches up with the id."""
    store.register("j1")
    store.start("j1")
    headers = {"Last-Event-ID": "99999999999999-0"}
    with httpx.stream("GET", f"{server.url}/events", headers=headers, timeout=10) as response:
        events = sse(response.iter_lines())
        next(events)
        replayed = [track_of(next(events))["state"] for _ in range(2)]
        store.track_set("j1", percent=5)
        live = track_of(next(events))
    assert replayed == ["enqueued", "working"]
    assert live["percent"] == 5
    url = f"{server.url}/jobs/j1/events"
    with httpx.stream("GET", url, headers=headers, timeout=10) as response:
        events = sse(response.iter_lines())
        next(events)
        assert track_of(next(events))["percent"] == 5  # its track now, whole


def test_track_set_events_carry_the_whole_track(server: Server, store: Tracker) -> None:
    store.register("j1", labels={"team": "a"})
    store.start("j1")
    with httpx.stream("GET", f"{server.url}/events", timeout=10) as response:
        events = sse(response.iter_lines())
        next(events)
        store.track_set("j1", desc="halfway")
        track = track_of(next(events))
    assert track["desc"] == "halfway"
    assert track["labels"] == {"team": "a"}
    assert track["attempts"] == 1


def test_a_job_stream_carries_whole_tracks(server: Server, store: Tracker) -> None:
    store.register("j1", labels={"team": "a"})
    store.start("j1")
    with httpx.stream("GET", f"{server.url}/jobs/j1/events", timeout=10) as response:
        events = sse(response.iter_lines())
        next(events)
        next(events)  # the track now
        store.track_set("j1", percent=50)
        track = track_of(next(events))
    assert (track["percent"], track["labels"], track["attempts"]) == (50, {"team": "a"}, 1)


def test_filters_by_queue_and_state(server: Server, store: Tracker) -> None:
    with httpx.stream("GET", f"{server.url}/events?queue=qa&state=success", timeout=10) as r:
        events = sse(r.iter_lines())
        next(events)
        store.register("b1", queue="qb")
        store.success("b1")
        store.register("a1", queue="qa")
        store.success("a1")
        track = track_of(next(events))
    assert (track["jid"], track["state"]) == ("a1", "success")


def test_filters_by_label(server: Server, store: Tracker) -> None:
    with httpx.stream("GET", f"{server.url}/events?label=a:b=c", timeout=10) as r:
        events = sse(r.iter_lines())
        next(events)
        store.register("other", labels={"a": "b:c"})  # what a split at the first ":" finds
        store.register("mine", labels={"a:b": "c"})
        track = track_of(next(events))
    assert track["jid"] == "mine"


def test_200_clients_at_once_each_get_the_event_and_leave_nothing_behind(
    server: Server, store: Tracker
) -> None:
    store.register("j1")
    clients = 200

    async def main() -> list[dict[str, Any]]:
        subscribed = asyncio.Semaphore(0)
        limits = httpx.Limits(max_connections=clients + 10)
        async with httpx.AsyncClient(limits=limits, timeout=20) as client:

            async def listen() -> dict[str, Any]:
                async with client.stream("GET", f"{server.url}/events") as response:
                    lines = response.aiter_lines()
                    fields: dict[str, str] = {}
                    async for line in lines:
                        if line.startswith("retry"):
                            subscribed.release()
                        elif line.startswith("data:"):
                            fields["data"] = line[5:].strip()
                        elif line.startswith("event:"):
                            fields["event"] = "track"
                        elif line == "" and "data" in fields:
                            return fields
                raise AssertionError("the stream ended without an event")

            tasks = [asyncio.create_task(listen()) for _ in range(clients)]
            for _ in range(clients):
                await subscribed.acquire()
            await asyncio.to_thread(store.start, "j1")
            return await asyncio.gather(*tasks)

    received = asyncio.run(main())
    assert [track_of(e)["state"] for e in received] == ["working"] * clients
    wait_until(lambda: server.subscribers == 0)


def test_readyz_is_503_while_the_server_is_down_and_200_once_it_is_back(
    tmp_path: Any,
) -> None:
    valkey = EmbeddedValkey(tmp_path / "own")
    url = valkey.start()
    app = create_app(Settings(namespace="t-ready"), url=url, maintenance=False)
    try:
        with local_client(app, raise_server_exceptions=False) as http:
            assert http.get("/readyz").status_code == 200
            valkey.stop()
            down = http.get("/readyz")
            assert down.status_code == 503
            assert down.headers["content-type"] == "application/problem+json"
            assert http.get("/livez").status_code == 200
            valkey.start()
            wait_until(lambda: http.get("/readyz").status_code == 200)
    finally:
        valkey.stop()


def test_an_event_this_version_cannot_read_is_skipped(server: Server, store: Tracker) -> None:
    store.register("j1")
    with httpx.stream("GET", f"{server.url}/events", timeout=10) as response:
        events = sse(response.iter_lines())
        next(events)
        store.client.xadd(store.keys.events, {"jid": "odd", "s": "sleeping", "w": ""})
        store.client.xadd(store.keys.events, {"nothing": "here"})
        store.client.xadd(store.keys.events, {"jid": "odd", "p": "5"})
        store.client.xadd(store.keys.events, {"jid": "odd", "s": "working", "q": "default"})
        store.start("j1")
        track = track_of(next(events))
    assert (track["jid"], track["state"]) == ("j1", "working")


def test_an_idle_stream_gets_keep_alive_comments(server: Server) -> None:
    with httpx.stream("GET", f"{server.url}/events", timeout=10) as response:
        lines = response.iter_lines()
        assert next(lines) == "retry: 1000"
        assert next(line for line in lines if line) == ": keep-alive"  # every 0.5 s here


@pytest.mark.parametrize("query", ["state=asleep", "state=unknown", "queue=a%20b", "colour=red"])
def test_a_bad_filter_is_400(server: Server, query: str) -> None:
    response = httpx.get(f"{server.url}/events?{query}", timeout=10)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


def test_reconnecting_to_a_finished_job_gets_what_it_missed_then_the_end(
    server: Server, store: Tracker
) -> None:
    store.register("j1")
    store.start("j1")
    before = store.client.xrevrange(store.keys.events, count=1)[0][0].decode()
    store.success("j1")
    headers = {"Last-Event-ID": before}
    with httpx.stream("GET", f"{server.url}/jobs/j1/events", headers=headers, timeout=10) as r:
        missed = [track_of(e) for e in sse(r.iter_lines()) if "event" in e]
    assert [t["state"] for t in missed] == ["success"]
    newest = store.client.xrevrange(store.keys.events, count=1)[0][0].decode()
    headers = {"Last-Event-ID": newest}
    with httpx.stream("GET", f"{server.url}/jobs/j1/events", headers=headers, timeout=10) as r:
        assert [e for e in sse(r.iter_lines()) if "event" in e] == []  # ends, no hang


def hub_on(url: str, namespace: str) -> tuple[AsyncTracker, EventHub]:
    """A hub whose reader is not started: only what a stream reads itself reaches it."""
    tracker = AsyncTracker(redis.asyncio.Redis.from_url(url), Settings(namespace=namespace))
    return tracker, EventHub(tracker)


def test_a_change_between_the_snapshot_and_the_subscription_still_arrives(
    real_url: str, namespace: str, store: Tracker
) -> None:
    store.register("j1")
    store.start("j1")

    async def main() -> list[bytes]:
        tracker, hub = hub_on(real_url, namespace)
        snapshot = await tracker.snapshot("j1")
        store.success("j1")  # before the stream subscribes, and no reader to pass it on
        frames = hub.stream(lambda t: t["jid"] == "j1", first=snapshot, ends=_terminal)
        async with asyncio.timeout(5):
            got = [frame async for frame in frames]
        await tracker.close()
        return got

    frames = asyncio.run(main())
    assert [b'"state":"working"' in f for f in frames[1:]] == [True, False]
    assert b'"state":"success"' in frames[-1]


def test_a_track_set_between_the_snapshot_and_the_subscription_arrives_whole(
    real_url: str, namespace: str, store: Tracker
) -> None:
    store.register("j1", labels={"team": "a"})
    store.start("j1")

    async def main() -> list[bytes]:
        tracker, hub = hub_on(real_url, namespace)
        snapshot = await tracker.snapshot("j1")
        store.track_set("j1", percent=50)  # replayed from the stream
        frames = hub.stream(lambda t: t["jid"] == "j1", jid="j1", first=snapshot)
        async with asyncio.timeout(5):
            got = [await anext(frames) for _ in range(3)]
        await frames.aclose()
        await tracker.close()
        return got

    replayed = json.loads(asyncio.run(main())[2].split(b"data: ")[1])
    assert (replayed["percent"], replayed["labels"], replayed["attempts"]) == (50, {"team": "a"}, 1)


def test_a_reconnect_replays_track_sets_as_whole_tracks(
    real_url: str, namespace: str, store: Tracker
) -> None:
    store.register("j1", labels={"team": "a"})
    store.start("j1")
    store.register("j2")

    async def main() -> list[dict[str, Any]]:
        tracker, hub = hub_on(real_url, namespace)
        last = await tracker.newest_event()
        store.track_set("j1", percent=10)
        store.track_set("j1", desc="halfway")
        frames = hub.stream(lambda t: t["jid"] == "j1", jid="j1", last_event_id=last)
        async with asyncio.timeout(5):
            got = [await anext(frames) for _ in range(3)]
        await frames.aclose()
        await tracker.close()
        return [json.loads(frame.split(b"data: ")[1]) for frame in got[1:]]

    first, second = asyncio.run(main())
    assert (first["percent"], second["percent"], second["desc"]) == (10, 10, "halfway")
    created = store.track_get("j1").to_dict()["created_at"]
    for track in first, second:  # what the TRACK SETs did not carry is there too
        assert (track["labels"], track["attempts"], track["created_at"]) == (
            {"team": "a"},
            1,
            created,
        )


def test_a_slow_client_is_dropped_after_what_it_holds_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sse_module, "BUFFER", 3)

    async def main() -> list[Any]:
        subscriber = Subscriber(lambda track: True)
        for n in range(1, 6):
            subscriber.offer(Rendered(f"{n}-0", {"jid": "j", "state": "working"}))
        subscriber.close()  # a second close, as a shutdown would: no error
        items = []
        while not subscriber.queue.empty():
            items.append(subscriber.queue.get_nowait())
        return items

    items = asyncio.run(main())
    assert [item.key if item else None for item in items] == [(1, 0), (2, 0), (3, 0), None]


def _terminal(track: dict[str, Any]) -> bool:
    return State(track["state"]).terminal


def test_a_job_subscriber_is_offered_only_its_jobs_events_and_leaves_no_entry(
    real_url: str, namespace: str, store: Tracker
) -> None:
    store.register("j1")
    store.register("j2")

    async def main() -> tuple[list[str], list[str], list[int]]:
        tracker, hub = hub_on(real_url, namespace)
        offered: list[str] = []

        def one_job(track: dict[str, Any]) -> bool:
            offered.append(track["jid"])
            return True

        with hub.subscription(one_job, "j1") as job, hub.subscription(lambda t: True) as broad:
            for event in await tracker.events("0", 100):
                hub.publish(event)
            groups = [len(hub._by_jid)]
        groups += [len(hub._by_jid), len(hub.subscribers)]
        broad_jids = [item.track["jid"] for item in _drained(broad)]
        assert [item.track["jid"] for item in _drained(job)] == ["j1"]
        await tracker.close()
        return offered, broad_jids, groups

    offered, broad, groups = asyncio.run(main())
    assert offered == ["j1"]  # j2's event never reached j1's filter
    assert broad == ["j1", "j2"]
    assert groups == [1, 0, 0]  # one job group while subscribed; none, no subscriber after


def test_a_hub_with_no_subscriber_counts_events_without_decoding_their_tracks(
    real_url: str, namespace: str, store: Tracker
) -> None:
    store.register("j1")
    store.start("j1")
    store.track_set("j1", percent=5)

    async def main() -> tuple[list[Any], Metrics]:
        tracker = AsyncTracker(
            redis.asyncio.Redis.from_url(real_url), Settings(namespace=namespace)
        )
        metrics = Metrics()
        hub = EventHub(tracker, metrics)
        events = await tracker.events("0", 100, decode=False)
        for event in events:
            hub.publish(event)
        await tracker.close()
        return events, metrics

    events, metrics = asyncio.run(main())
    assert [(e.jid, e.state, e.change) for e in events] == [
        ("j1", State.ENQUEUED, True),
        ("j1", State.WORKING, True),
        ("j1", State.WORKING, False),
    ]
    assert all("track" not in vars(event) for event in events)  # never decoded
    assert metrics.transitions.labels("enqueued", "working")._value.get() == 1
    assert metrics.track_sets._value.get() == 1
    assert events[2].track.percent == 5  # decoded when read


def _drained(subscriber: Subscriber) -> list[Rendered]:
    items: list[Rendered] = []
    while not subscriber.queue.empty():
        item = subscriber.queue.get_nowait()
        assert isinstance(item, Rendered)
        items.append(item)
    return items
