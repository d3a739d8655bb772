"""Backends for the suite: the embedded Valkey, a Redis given by TRACKER_TEST_REDIS_URL,
a Valkey cluster (Redis Cluster mode) and fakeredis. Every test gets a namespace of its
own and deletes only its own keys."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import fakeredis
import httpx
import pytest
import redis
import redis.cluster
from cluster import valkey_cluster
from drivers import AsyncDriven
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from tracker import Settings, Tracker
from tracker.client import disconnect
from tracker.embedded import EmbeddedValkey

REDIS_URL = os.environ.get("TRACKER_TEST_REDIS_URL")
REAL_BACKENDS = ["valkey", *(["redis"] if REDIS_URL else [])]
#: "async": the embedded Valkey driven by AsyncTracker (see drivers.py), so that the
#: store's contract runs on both drivers
ALL_BACKENDS = [*REAL_BACKENDS, "cluster", "fake", "async"]


@pytest.fixture(scope="session")
def valkey_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One embedded Valkey server for the whole session."""
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey"))
    url = server.start()
    yield url
    server.stop()


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A three-node Valkey cluster for the whole session, started when first needed."""
    with valkey_cluster(tmp_path_factory.mktemp("cluster")) as url:
        yield url


def _client(backend: str, url: str) -> redis.Redis:
    if backend == "cluster":
        client: Any = redis.cluster.RedisCluster.from_url(url)
        return client  # tracker calls only what both clients have
    if backend in ("valkey", "async"):
        return redis.Redis.from_url(url)
    if backend == "redis":
        assert REDIS_URL is not None
        return redis.Redis.from_url(REDIS_URL)
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def cleanup(client: redis.Redis, namespace: str) -> None:
    """Delete this namespace's keys, and nothing else."""
    if isinstance(client, redis.cluster.RedisCluster):  # one slot holds them all
        client = client.get_node_from_key("{" + namespace + "}:").redis_connection
    keys = list(client.scan_iter(match="{" + namespace + "}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])


MakeTracker = Callable[..., Tracker]


def _factory(backend: str, url: str) -> Iterator[MakeTracker]:
    made: list[tuple[redis.Redis, str]] = []
    driven: list[AsyncDriven] = []

    def make(client: redis.Redis | None = None, **settings: Any) -> Tracker:
        namespace = "t-" + uuid.uuid4().hex[:12]
        client = client or _client(backend, url)
        clock = settings.pop("clock", None)
        made.append((client, namespace))
        base = Settings(namespace=namespace, redis_cluster=backend == "cluster")
        if backend == "async":
            driven.append(AsyncDriven(client, url, replace(base, **settings), clock))
            return cast(Tracker, driven[-1])  # the same surface: see drivers.py
        return Tracker(client, replace(base, **settings), clock=clock)

    yield make
    for one in driven:
        one.close()
    for client, namespace in made:
        cleanup(client, namespace)
        disconnect(client)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that hands jobs to RQ has no cluster variant: in cluster mode tracker
    refuses payloads (tested in test_cluster.py)."""
    kept, dropped = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        backend = params.params.get("backend") if params is not None else None
        on_cluster = backend == "cluster" and item.get_closest_marker("rq") is not None
        (dropped if on_cluster else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=REAL_BACKENDS)
def real_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_tracker(
    backend: str, valkey_url: str, request: pytest.FixtureRequest
) -> Iterator[MakeTracker]:
    """Trackers on every backend (Valkey, Redis when configured, a cluster, fakeredis)."""
    url = request.getfixturevalue("cluster_url") if backend == "cluster" else valkey_url
    yield from _factory(backend, url)


@pytest.fixture
def make_real_tracker(real_backend: str, valkey_url: str) -> Iterator[MakeTracker]:
    """Trackers on real servers only: for expiry, timing and concurrency."""
    yield from _factory(real_backend, valkey_url)


@pytest.fixture
def tracker(make_tracker: MakeTracker) -> Tracker:
    return make_tracker()


@pytest.fixture
def real_tracker(make_real_tracker: MakeTracker) -> Tracker:
    return make_real_tracker()


def local_client(app: ASGIApp, **options: Any) -> TestClient:
    """Starlette's TestClient, as a client on this machine: a tokenless app serves no other
    (the TestClient's own address is "testclient", no address at all)."""
    return TestClient(app, client=("127.0.0.1", 50000), **options)


def in_aof(directory: Path, text: str) -> bool:
    """Whether the store's append-only files hold ``text`` (written, if not yet synced):
    with appendfsync everysec a busy server may hold a write back for up to 2 s."""
    files = (directory / "appendonlydir").glob("*.aof")
    return any(text.encode() in path.read_bytes() for path in files)


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def set_and_get(tracker: Tracker, jid: str, **fields: Any) -> Any:
    """TRACK SET, then TRACK GET: the track as the update left it."""
    tracker.track_set(jid, **fields)
    return tracker.track_get(jid)


class FakeClock:
    """A settable clock for tests that reason about time without waiting."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def real_url(real_backend: str, valkey_url: str) -> str:
    """The URL of a real server: the embedded Valkey, or the Redis under test."""
    if real_backend == "redis":
        assert REDIS_URL is not None
        return REDIS_URL
    return valkey_url


def own_namespace(url: str, prefix: str = "t-") -> Iterator[str]:
    """A namespace of the test's own on ``url``; its keys are deleted after it."""
    name = prefix + uuid.uuid4().hex[:12]
    yield name
    client = redis.Redis.from_url(url)
    cleanup(client, name)
    client.close()


@pytest.fixture
def namespace(real_url: str) -> Iterator[str]:
    """A namespace of this test's own on ``real_url``, deleted after it."""
    yield from own_namespace(real_url)


@pytest.fixture
def store(real_url: str, namespace: str) -> Iterator[Tracker]:
    """A Python client on ``namespace``, to arrange and to check what an app there did."""
    with Tracker.from_url(real_url, Settings(namespace=namespace)) as tracker:
        yield tracker


@pytest.fixture
def valkey_store(valkey_url: str) -> Iterator[Tracker]:
    """A Python client on a namespace of its own on the suite's Valkey: for tests of the
    HTTP layer, whose handling of a request is the same whatever the backend."""
    names = own_namespace(valkey_url)
    with Tracker.from_url(valkey_url, Settings(namespace=next(names))) as tracker:
        yield tracker
    next(names, None)  # deletes the namespace's keys


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(
    command: Sequence[str], redis_url: str, log: Path, cwd: Path, timeout: float = 30.0, **env: str
) -> Iterator[str]:
    """``command`` (where ``{port}`` becomes a free loopback port) as a process serving
    the API on ``redis_url``, in a namespace of its own, with ``env`` added to a
    ``TRACKER_*``-free environment; its base URL once ``/readyz`` answers 200. Stopped,
    and the namespace's keys deleted, after."""
    namespace = "t-" + uuid.uuid4().hex[:12]
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "CAF_"))}
    environ.update(TRACKER_REDIS_URL=redis_url, TRACKER_NAMESPACE=namespace, **env)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [part.format(port=port) for part in command],
            cwd=cwd,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(f"{command[0]} exited with {process.returncode}:\n{_tail(log)}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"{command[0]} not ready within {timeout} s:\n{_tail(log)}")
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        client = redis.Redis.from_url(redis_url)
        cleanup(client, namespace)
        client.close()


def _tail(path: Path, size: int = 4000) -> str:
    return path.read_text(errors="replace")[-size:]
