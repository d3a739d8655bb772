"""progress() and aprogress(): what code running inside a tracked job calls.

``tracker worker`` sets the running job before it calls the job's function, so
the job reports with no jid to pass::

    from tracker import progress

    def resize(image_id):
        for n, tile in enumerate(tiles, 1):
            progress(percent=100 * n // len(tiles), desc=f"tile {n}")

Each call is one round trip (a TRACK SET). When the job was cancelled meanwhile
it raises :class:`~tracker.errors.JobCancelled`, which the job may catch to clean up.
Each call names the attempt the worker started (fencing): once that attempt was
reaped and the job started again elsewhere, it raises
:class:`~tracker.errors.JobSuperseded` and writes nothing.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from dataclasses import dataclass

from .client import Tracker
from .errors import Conflict, JobCancelled, JobSuperseded, TrackerError


@dataclass(frozen=True, slots=True)
class Running:
    """The job the current code runs for, and the tracker to report to."""

    tracker: Tracker
    jid: str
    attempt: int | None = None  # the attempt the worker started; fences every report


_running: ContextVar[Running | None] = ContextVar("tracker_running_job", default=None)


def current() -> Running:
    """The running tracked job; raises TrackerError outside of one."""
    running = _running.get()
    if running is None:
        raise TrackerError("progress() is only for code running inside a tracked job")
    return running


def enter(tracker: Tracker, jid: str, attempt: int | None = None) -> object:
    """Mark ``jid`` (its attempt ``attempt``) as the job this context runs (the worker
    calls this); returns a token."""
    return _running.set(Running(tracker, jid, attempt))


def leave(token: object) -> None:
    _running.reset(token)  # type: ignore[arg-type]


def progress(percent: int | None = None, desc: str | None = None) -> None:
    """Report the running job's progress; raises JobCancelled if it was cancelled, and
    JobSuperseded if this attempt was reaped and the job started again."""
    running = current()
    try:
        running.tracker.track_set(running.jid, percent=percent, desc=desc, attempt=running.attempt)
    except Conflict as exc:
        if not isinstance(exc, JobSuperseded) and exc.state == "cancelled":
            raise JobCancelled(running.jid) from None
        raise


async def aprogress(percent: int | None = None, desc: str | None = None) -> None:
    """The asyncio twin of :func:`progress`, for ``async def`` jobs.

    The report runs on a worker thread, with this context, so the event loop never
    blocks on it; RQ gives each async job a loop of its own, which a pooled asyncio
    client would outlive.
    """
    await asyncio.to_thread(progress, percent, desc)
