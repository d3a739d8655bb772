"""tracker demo: the workflow runs to its designed end, within its time."""

from __future__ import annotations

import time
import uuid

import redis
from click.testing import CliRunner

from tracker.cli import main


def test_the_demo_runs_its_workflow_to_the_end(valkey_url: str) -> None:
    namespace = "t-demo-" + uuid.uuid4().hex[:8]
    started = time.monotonic()
    result = CliRunner().invoke(
        main, ["demo"], env={"TRACKER_REDIS_URL": valkey_url, "TRACKER_NAMESPACE": namespace}
    )
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 30
    assert "The workflow ended as designed." in result.output
    summary = result.output[result.output.index("job            state") :]
    assert "fetch-prices   success    2" in summary
    assert "publish        dead" in summary and "caused by audit" in summary
    client = redis.Redis.from_url(valkey_url)
    for key in client.scan_iter(match="{demo-*", count=1000):
        client.delete(key)
