"""Job functions the worker tests run (importable by a forked RQ worker)."""

from __future__ import annotations

import asyncio
import os
import time

from tracker import JobCancelled, progress
from tracker.context import aprogress, current


def add(a: int, b: int) -> int:
    return a + b


def report_steps(steps: int) -> str:
    for n in range(1, steps + 1):
        progress(percent=100 * n // steps, desc=f"step {n} of {steps}")
    return "done"


def broken(message: str = "it broke") -> None:
    raise ValueError(message)


def flaky() -> str:
    """Fails on its first attempt, succeeds after."""
    running = current()
    if running.tracker.track_get(running.jid).attempts == 1:
        raise RuntimeError("first attempt fails")
    return "second time lucky"


def report_until_cancelled(marker_key: str) -> str:
    """Reports every 50 ms; records in Redis that it saw the cancel, then ends."""
    running = current()
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            progress(desc="working")
            time.sleep(0.05)
    except JobCancelled:
        running.tracker.client.set(marker_key, "saw JobCancelled", ex=60)
        raise
    return "never cancelled"


def ignore_cancel(seconds: float) -> str:
    """Never reports: only the worker can stop it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return "ran to the end"


def sleep_then_succeed(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


async def async_steps(steps: int) -> str:
    for n in range(1, steps + 1):
        await aprogress(percent=100 * n // steps)
        await asyncio.sleep(0)
    return "async done"


def pause_point(key: str, then: str) -> str:
    """Reports once, records its pid under ``key``, then waits for ``key:go``; then it
    reports again (``then == "report"``) or returns at once (``"finish"``)."""
    running = current()
    client = running.tracker.client
    progress(percent=10, desc=f"attempt {running.attempt}")
    client.set(key, os.getpid(), ex=120)
    deadline = time.monotonic() + 60
    while not client.exists(key + ":go") and time.monotonic() < deadline:
        time.sleep(0.05)
    if then == "report":
        progress(percent=99, desc="the stale attempt")
    return "finished"


def record_run(path: str, seconds: float) -> str:
    """Notes the run in a file (outside Redis, which a fault test may crash), then sleeps."""
    with open(path, "a") as runs:
        runs.write(current().jid + "\n")
    time.sleep(seconds)
    return "recorded"


def reaped_while_running() -> str:
    """Fails its own track as the reaper would, had its reservation ended in an outage."""
    running = current()
    running.tracker.fail(running.jid, "reservation expired", error_type="ReservationExpired")
    return "finished anyway"
