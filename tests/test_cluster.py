"""Redis Cluster mode (SPEC section 9, ``TRACKER_REDIS_CLUSTER=1``) on a three-node
Valkey cluster. The store's contract tests run there too (the ``cluster`` backend of
conftest.py); here are the entry points (asyncio client, HTTP API, CLI) and what a
cluster refuses: payloads and RQ workers, since RQ needs one server."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis.cluster
from click.testing import CliRunner
from conftest import cleanup, local_client
from test_cli import SETTINGS

from tracker import AsyncTracker, InvalidInput, Settings, State, Tracker
from tracker.cli import main
from tracker.client import disconnect
from tracker.web import create_app


@pytest.fixture
def settings(cluster_url: str) -> Iterator[Settings]:
    namespace = "cl-" + uuid.uuid4().hex[:12]
    yield Settings(redis_url=cluster_url, redis_cluster=True, namespace=namespace)
    client: Any = redis.cluster.RedisCluster.from_url(cluster_url)
    cleanup(client, namespace)
    disconnect(client)


@pytest.fixture
def tracker(cluster_url: str, settings: Settings) -> Iterator[Tracker]:
    with Tracker.from_url(cluster_url, settings) as made:
        yield made


def test_namespaces_spread_over_the_nodes_and_each_lives_in_one_slot(tracker: Tracker) -> None:
    client = tracker.client
    slots = {client.keyslot(key) for key in (*tracker.keys.shared, tracker.keys.job("a"))}
    assert len(slots) == 1
    owners = {client.get_node_from_key("{" + f"ns-{n}" + "}:ev").name for n in range(30)}
    assert len(owners) == 3


def _getkeys_calls(tracker: Tracker) -> int:
    """COMMAND GETKEYS calls on every node: how a cluster client learns a command's keys
    when it cannot read them off the arguments, one more round trip each."""
    calls = 0
    for node in tracker.client.get_nodes():
        stats = node.redis_connection.info("commandstats")
        calls += int(stats.get("cmdstat_command|getkeys", {}).get("calls", 0))
    return calls


def test_a_track_set_is_one_round_trip_on_a_cluster_too(
    cluster_url: str, settings: Settings, tracker: Tracker
) -> None:
    tracker.register("j1")
    tracker.start("j1")
    before = _getkeys_calls(tracker)
    for percent in range(10):
        tracker.track_set("j1", percent=percent)

    async def main() -> None:  # the asyncio client, whose pipelines route each command
        async with AsyncTracker.from_url(cluster_url, settings) as client:
            await asyncio.gather(*(client.track_set("j1", percent=p) for p in range(10)))

    asyncio.run(main())
    assert _getkeys_calls(tracker) == before
    assert tracker.track_get("j1").percent == 9


def test_a_payload_is_refused_and_nothing_is_written(tracker: Tracker) -> None:
    with pytest.raises(InvalidInput) as refused:
        tracker.register("job-1", payload={"func": "os.getcwd"})
    assert refused.value.field == "payload"
    assert "RQ" in refused.value.detail
    assert tracker.track_get("job-1").state is State.UNKNOWN


def test_the_asyncio_client_pipelines_on_a_cluster(cluster_url: str, settings: Settings) -> None:
    async def main() -> None:
        async with AsyncTracker.from_url(cluster_url, settings) as tracker:
            await asyncio.gather(*(tracker.register(f"j{n}", queue="q") for n in range(20)))
            # TIME names no key: sent alone, while the rest leaves in one pipeline
            ages, tracks = await asyncio.gather(
                tracker.enqueued_ages(), tracker.track_get_many([f"j{n}" for n in range(20)])
            )
            assert set(ages) == {"q"}
            assert {track.state for track in tracks} == {State.ENQUEUED}
            events = await tracker.events("0", 100)
            assert len(events) == 20

    asyncio.run(main())


def test_readiness_loads_the_library_into_every_primary_that_lost_it(
    cluster_url: str, settings: Settings, tracker: Tracker
) -> None:
    for node in tracker.client.get_nodes():
        node.redis_connection.function_flush()

    async def main() -> bool:
        # without automatic pipelining, as the event hub reads: TIME still goes alone
        async with AsyncTracker.from_url(cluster_url, settings) as client:
            plain = AsyncTracker(client.client, settings, pipelining=False)
            assert await plain.enqueued_ages() == {}
            return await client.ready()

    assert asyncio.run(main())
    for node in tracker.client.get_nodes():
        assert node.redis_connection.function_list(), node.name


def test_the_http_api_serves_a_cluster(cluster_url: str, settings: Settings) -> None:
    with local_client(create_app(settings)) as http:
        assert http.get("/readyz").status_code == 200
        assert http.put("/jobs/j1", json={"queue": "mail"}).status_code == 201
        assert http.post("/jobs/j1/start").json()["state"] == "working"
        assert http.post("/jobs/j1/track", json={"percent": 40}).json()["percent"] == 40
        assert http.get("/stats").json()["states"] == {"working": 1}
        assert 'tracker_jobs{queue="mail",state="working"} 1.0' in http.get("/metrics").text
        refused = http.put("/jobs/j2", json={"payload": {"func": "os.getcwd"}})
        assert (refused.status_code, refused.json()["field"]) == (400, "payload")


def test_the_cli_reads_a_cluster_and_refuses_to_run_rq_workers(
    cluster_url: str, settings: Settings, tracker: Tracker
) -> None:
    tracker.register("job-1")
    env: dict[str, str | None] = dict.fromkeys(SETTINGS)
    env |= {
        "TRACKER_REDIS_URL": cluster_url,
        "TRACKER_REDIS_CLUSTER": "1",
        "TRACKER_NAMESPACE": settings.namespace,
    }
    got = CliRunner().invoke(main, ["get", "job-1"], env=env)
    assert (got.exit_code, json.loads(got.stdout)["state"]) == (0, "enqueued")
    worker = CliRunner().invoke(main, ["worker", "--burst"], env=env)
    assert worker.exit_code == 4
    assert "TRACKER_REDIS_CLUSTER" in worker.stderr and "RQ" in worker.stderr


def _nobody() -> str:
    """The URL of a port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{probe.getsockname()[1]}"


def test_a_cluster_that_does_not_answer_is_unavailable_not_a_crash() -> None:
    env: dict[str, str | None] = dict.fromkeys(SETTINGS)
    env |= {"TRACKER_REDIS_URL": _nobody(), "TRACKER_REDIS_CLUSTER": "1"}
    got = CliRunner().invoke(main, ["get", "job-1"], env=env)
    assert got.exit_code == 4
    assert "did not answer" in got.stderr


def test_the_api_starts_and_answers_503_while_the_cluster_does_not_answer() -> None:
    settings = Settings(redis_url=_nobody(), redis_cluster=True, namespace="nobody")
    with local_client(create_app(settings)) as http:
        assert (http.get("/livez").status_code, http.get("/readyz").status_code) == (200, 503)
        assert http.get("/jobs/j1").status_code == 503
