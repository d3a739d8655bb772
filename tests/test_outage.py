"""The retry policy of ``tracker worker``'s client (outage.py): it rides out an outage for
the grace, then gives up for good. The fault tests (test_faults.py) run it in workers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from tracker.outage import OutageRetry


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
