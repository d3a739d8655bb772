"""Riding out an outage: the retry policy of ``tracker worker``'s client (outage.py) waits
for the grace, then gives up for good; a report the outage made moot is dropped. The
fault tests (test_faults.py) run real workers through real outages."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import jobs
import pytest
import redis
import rq

from tracker import State, Tracker
from tracker.outage import OutageRetry
from tracker.worker import TrackedSimpleWorker


def test_commands_wait_for_the_grace_then_fail_and_keep_failing_at_once(tmp_path: Path) -> None:
    calls: list[float] = []
    retry = OutageRetry(0.3, on_give_up=lambda: calls.append(time.monotonic()))
    client = redis.Redis(unix_socket_path=str(tmp_path / "nobody.sock"), retry=retry)
    began = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()
    assert time.monotonic() - began >= 0.3
    assert retry.gave_up
    assert len(calls) == 1
    began = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError):
        client.get("x")
    assert time.monotonic() - began < 0.2  # given up: no more waiting
    assert len(calls) == 1


def test_every_connection_of_a_client_shares_one_outage(tmp_path: Path) -> None:
    retry = OutageRetry(0.2)
    pool = redis.ConnectionPool(
        connection_class=redis.UnixDomainSocketConnection,
        path=str(tmp_path / "nobody.sock"),
        retry=retry,
    )
    first, second = pool.make_connection(), pool.make_connection()
    assert first.retry is second.retry is retry


def test_a_report_the_reaper_made_moot_is_logged_and_dropped(
    real_tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    queue = "q-" + uuid.uuid4().hex[:12]
    jid = real_tracker.enqueue(jobs.reaped_while_running, queue=queue)
    worker = TrackedSimpleWorker(
        [rq.Queue(queue, connection=real_tracker.client)],
        connection=real_tracker.client,
        tracker=real_tracker,
    )
    with caplog.at_level(logging.WARNING, logger="tracker.worker"):
        worker.work(burst=True, logging_level="WARNING")
    track = real_tracker.track_get(jid)
    assert (track.state, track.error["type"]) == (State.FAILED, "ReservationExpired")  # type: ignore[index]
    assert f"job {jid} is failed: its success is dropped" in caplog.text
    real_tracker.client.srem("rq:queues", f"rq:queue:{queue}")
    for key in real_tracker.client.scan_iter(match=f"rq:*{queue}*"):
        real_tracker.client.delete(key)
