"""The workers' registry: beats, idle/busy/lost, forgetting, and GET /workers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import FakeClock, MakeTracker, local_client

from tracker import InvalidInput, Tracker
from tracker.cli import main
from tracker.web import create_app
from tracker.workers import GONE_AFTER, LOST_AFTER

INTERVAL = 2.0


def record(job: str | None = None, done: int = 0, failed: int = 0) -> dict[str, Any]:
    return {
        "pid": 4242,
        "host": "box",
        "queues": ["default", "mail"],
        "job": job,
        "started_at": None,
        "done": done,
        "failed": failed,
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clocked(make_tracker: MakeTracker, clock: FakeClock) -> Tracker:
    return make_tracker(clock=clock)


def test_a_beating_worker_is_listed_idle_then_busy(clocked: Tracker, clock: FakeClock) -> None:
    started = clocked.worker_beat("w-1", record(), interval=INTERVAL)
    assert started == int(clock() * 1000)
    (idle,) = clocked.workers()
    assert (idle.name, idle.state, idle.job, idle.pid, idle.host) == (
        "w-1",
        "idle",
        None,
        4242,
        "box",
    )
    assert idle.queues == ["default", "mail"]
    assert idle.started_at == idle.heartbeat_at == started

    clock.advance(INTERVAL)
    busy_record = {**record("job-7", done=3, failed=1), "started_at": started}
    clocked.worker_beat("w-1", busy_record, interval=INTERVAL)
    (busy,) = clocked.workers()
    assert (busy.state, busy.job, busy.done, busy.failed) == ("busy", "job-7", 3, 1)
    assert busy.started_at == started
    assert busy.heartbeat_at == started + int(INTERVAL * 1000)
    assert busy.to_dict()["heartbeat_at"].endswith("Z")


def test_a_silent_worker_is_lost_after_three_beats_and_gone_after_ten(
    clocked: Tracker, clock: FakeClock
) -> None:
    clocked.worker_beat("w-1", record("job-1"), interval=INTERVAL)
    clock.advance(INTERVAL * LOST_AFTER)
    assert [w.state for w in clocked.workers()] == ["busy"]
    clock.advance(0.01)
    assert [w.state for w in clocked.workers()] == ["lost"]
    clock.advance(INTERVAL * (GONE_AFTER - LOST_AFTER))
    assert clocked.workers() == []


def test_another_workers_beat_forgets_the_long_gone(clocked: Tracker, clock: FakeClock) -> None:
    clocked.worker_beat("gone", record(), interval=INTERVAL)
    clock.advance(INTERVAL * GONE_AFTER + 1)
    clocked.worker_beat("alive", record(), interval=INTERVAL)
    keys = clocked.keys
    assert clocked.client.hkeys(keys.workers) == [b"alive"]
    assert clocked.client.zrange(keys.worker_beats, 0, -1) == [b"alive"]


def test_a_leaving_worker_is_gone_at_once(clocked: Tracker) -> None:
    clocked.worker_beat("w-1", record(), interval=INTERVAL)
    clocked.worker_beat("w-2", record(), interval=INTERVAL)
    clocked.worker_beat("w-1", record(), interval=INTERVAL, leaving=True)
    assert [w.name for w in clocked.workers()] == ["w-2"]


def test_the_registry_expires_once_every_worker_is_silent(clocked: Tracker) -> None:
    clocked.worker_beat("w-1", record(), interval=INTERVAL)
    ttl = clocked.client.pttl(clocked.keys.workers)
    assert 0 < ttl <= INTERVAL * GONE_AFTER * 1000
    assert 0 < clocked.client.pttl(clocked.keys.worker_beats) <= INTERVAL * GONE_AFTER * 1000


@pytest.mark.parametrize("name", ["", "a b", "x" * 300, "new\nline"])
def test_a_bad_worker_name_is_refused_and_changes_nothing(clocked: Tracker, name: str) -> None:
    with pytest.raises(InvalidInput, match="worker"):
        clocked.worker_beat(name, record(), interval=INTERVAL)
    assert clocked.workers() == []


def test_get_workers_and_the_cli_show_them(valkey_store: Tracker, valkey_url: str) -> None:
    valkey_store.worker_beat("w-1", record("job-3", done=2), interval=INTERVAL)
    app = create_app(valkey_store.settings, url=valkey_url, maintenance=False)
    with local_client(app) as http:
        answer = http.get("/workers")
        assert answer.status_code == 200, answer.text
        (shown,) = answer.json()["workers"]
        assert set(shown) == {
            "name", "pid", "host", "queues", "state", "job", "started_at", "heartbeat_at",
            "done", "failed",
        }  # fmt: skip
        assert (shown["name"], shown["state"], shown["job"], shown["done"]) == (
            "w-1",
            "busy",
            "job-3",
            2,
        )
        assert http.get("/workers", params={"x": "1"}).status_code == 400
    env = {"TRACKER_REDIS_URL": valkey_url, "TRACKER_NAMESPACE": valkey_store.settings.namespace}
    table = CliRunner().invoke(main, ["workers"], env=env)
    assert table.exit_code == 0, table.output
    header, row = table.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "STATE", "QUEUES", "JOB"]
    assert row.split()[:6] == ["w-1", "busy", "default,mail", "job-3", "2", "0"]
    lines = CliRunner().invoke(main, ["workers", "--json"], env=env)
    assert json.loads(lines.stdout)["name"] == "w-1"
