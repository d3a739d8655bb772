"""progress() and aprogress(): what code running inside a tracked job calls.

``tracker worker`` sets the running job before it calls the job's function, so
the job reports with no jid to pass::

    from tracker import progress

    def resize(image_id):
        for n, tile in enumerate(tiles, 1):
            progress(percent=100 * n // len(tiles), desc=f"tile {n}")

A job may call it as often as it likes: one call in :data:`REPORT_EVERY` seconds
writes (a TRACK SET), and the calls in between only note their values, the newest
winning, for the next write; the worker writes what is left before it reports the
job's end. When the job was cancelled meanwhile it raises
:class:`~tracker.errors.JobCancelled` (the worker's watcher notices a cancel within a
quarter of a second, so calls that do not write learn of it too), which the job may
catch to clean up. Each write names the attempt the worker started (fencing): once
that attempt was reaped and the job started again elsewhere, it raises
:class:`~tracker.errors.JobSuperseded` and writes nothing.
"""

from __future__ import annotations

import asyncio
import math
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .client import Tracker
from .errors import Conflict, JobCancelled, JobSuperseded, TrackerError
from .model import MAX_DESC, check_int, check_text

#: Seconds at least between two writes of one job's progress.
REPORT_EVERY = 0.25


@dataclass(slots=True)
class Running:
    """The job the current code runs for, the tracker to report to, and what its
    progress calls noted since the last write."""

    tracker: Tracker
    jid: str
    attempt: int | None = None  # the attempt the worker started; fences every report
    written_at: float = -math.inf  # time.monotonic() of the last write
    pending: dict[str, Any] = field(default_factory=dict)  # values not written yet
    #: Set by the worker's watcher once it saw the job cancelled (JobCancelled) or this
    #: attempt superseded (JobSuperseded): the next call raises it, write due or not.
    ended: TrackerError | None = None

    def note(self, percent: int | None, desc: str | None) -> bool:
        """Note a call's values (checked now, so a bad one fails here); whether a
        write is due."""
        if self.ended is not None:
            raise self.ended
        if percent is not None:
            self.pending["percent"] = check_int("percent", percent, 0, 100)
        if desc is not None:
            self.pending["desc"] = check_text("desc", desc, MAX_DESC)
        return time.monotonic() - self.written_at >= REPORT_EVERY

    def flush(self) -> None:
        """Write what the calls noted (a bare TRACK SET when they noted nothing)."""
        fields, self.pending = self.pending, {}
        self.written_at = time.monotonic()
        try:
            self.tracker.track_set(self.jid, **fields, attempt=self.attempt)
        except Conflict as exc:
            if not isinstance(exc, JobSuperseded) and exc.state == "cancelled":
                raise JobCancelled(self.jid) from None
            raise

    def flush_pending(self) -> None:
        """Write what is noted and not written yet, if anything: the job has ended."""
        if self.pending:
            self.flush()


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
    if running.note(percent, desc):
        running.flush()


async def aprogress(percent: int | None = None, desc: str | None = None) -> None:
    """The asyncio twin of :func:`progress`, for ``async def`` jobs.

    A write runs on a worker thread, with this context, so the event loop never
    blocks on it; RQ gives each async job a loop of its own, which a pooled asyncio
    client would outlive.
    """
    running = current()
    if running.note(percent, desc):
        await asyncio.to_thread(running.flush)
