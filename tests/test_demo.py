"""tracker demo: the workflow runs to its designed end, within its time, every time."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from tracker import Settings, Tracker, demo
from tracker.cli import main
from tracker.embedded import EmbeddedValkey


@pytest.fixture
def client(valkey_url: str) -> Iterator[redis.Redis]:
    """The session's Valkey; the demo's namespaces and queues are deleted after the test."""
    client = redis.Redis.from_url(valkey_url)
    yield client
    for pattern in ("{demo-*", "rq:*tracker-demo-*"):
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)
    for name in client.smembers("rq:queues"):
        if b"tracker-demo-" in name:
            client.srem("rq:queues", name)
    client.close()


def test_the_demo_runs_its_workflow_to_the_end(valkey_url: str, client: redis.Redis) -> None:
    namespace = "t-demo-" + uuid.uuid4().hex[:8]
    started = time.monotonic()
    result = CliRunner().invoke(
        main, ["demo"], env={"TRACKER_REDIS_URL": valkey_url, "TRACKER_NAMESPACE": namespace}
    )
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 30
    assert "The workflow ended as designed." in result.output
    summary = result.output[result.output.index("job            state") :]
    assert "fetch-prices   success    2         \n" in summary  # its first error is not shown
    assert "publish        dead" in summary and "caused by audit" in summary


def test_the_deadline_stops_a_running_job(valkey_url: str, client: redis.Redis) -> None:
    out = io.StringIO()
    with Tracker.from_url(valkey_url, Settings(namespace="t-" + uuid.uuid4().hex[:8])) as tracker:
        started = time.monotonic()
        code = demo.run(tracker, out, deadline=1.0)  # in the middle of the first jobs
    assert code == 1
    assert time.monotonic() - started < 5
    assert "The demo did not finish." in out.getvalue()


@pytest.mark.slow
def test_the_console_demo_ends_as_designed_three_times_from_fresh_directories(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "CAF_"))}
    script = Path(sys.executable).with_name("tracker")
    for run in range(3):
        directory = tmp_path / f"run-{run}"
        directory.mkdir()
        started = time.monotonic()
        try:
            result = subprocess.run(
                [str(script), "demo"],
                cwd=directory,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            EmbeddedValkey(directory / ".tracker").stop()
        assert result.returncode == 0, result.stdout + result.stderr
        assert time.monotonic() - started < 30
        assert "The workflow ended as designed." in result.stdout
