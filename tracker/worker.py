"""The tracked RQ worker: every tracked job's lifecycle reported, with no job code.

Around each job it runs, the worker calls ``start`` (so two workers never run one
job), sets the job as the current one for :func:`tracker.progress`, keeps the
reservation alive while the job runs, watches for a cancel, and reports
``success`` or ``fail`` (the exception's type and message) at the end. Retries are
the tracker's: a failed job with attempts left goes back to its RQ queue after a
short backoff (see ``fail_job`` in lua/_graph.lua), else it is dead.

A cancelled job learns it at its next ``progress`` call (JobCancelled); one that
has not ended ``cancel_grace`` seconds after the cancel is stopped: RQ's stop-job
command for the forking worker, an exception raised into the job's thread for
the simple one. Either way it ends ``cancelled``. RQ jobs nobody tracks run as
plain RQ jobs.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import rq
from rq.command import send_stop_job_command
from rq.job import Job

from . import context
from .errors import Conflict, JobCancelled, NotFound, StoreUnavailable, TrackerError
from .model import State, format_time
from .store import Tracker

log = logging.getLogger("tracker.worker")

#: How often a running job's state is checked for a cancel, in seconds.
WATCH_INTERVAL = 0.25


class JobStopped(BaseException):
    """Raised into a simple worker's job that outlived its cancel's grace.

    A BaseException, so that a job's ``except Exception`` does not swallow it.
    """


class JobRefused(Exception):
    """The tracker refused to start the job (cancelled, paused, or running elsewhere)."""


@dataclass
class _Outcome:
    tracked: bool = False
    refused: bool = False
    error: BaseException | None = None


class _Watch(threading.Thread):
    """While a job runs: extend its reservation, and stop the job once cancelled."""

    def __init__(self, worker: TrackedMixin, jid: str, reserve_until: int, reserve_ms: int) -> None:
        super().__init__(name=f"tracker-watch-{jid}", daemon=True)
        self.worker = worker
        self.jid = jid
        self.reserve_until = reserve_until
        self.every = max(reserve_ms / 3000, WATCH_INTERVAL)  # extend at a third of the term
        self.step_ms = int(self.every * 1000)
        self.ended = threading.Event()

    def run(self) -> None:
        tracker, grace = self.worker.tracker, self.worker.tracker.settings.cancel_grace
        next_extension = time.monotonic() + self.every
        cancelled_at: float | None = None
        while not self.ended.wait(WATCH_INTERVAL):
            try:
                state = tracker.state(self.jid)
                if state is State.CANCELLED:
                    cancelled_at = cancelled_at or time.monotonic()
                    if time.monotonic() - cancelled_at >= grace:
                        log.info(
                            "job %s outlived its cancel by %.1f s: stopping it", self.jid, grace
                        )
                        self.worker.stop_running_job(self.jid)
                        return
                elif state is not State.WORKING:
                    return  # reaped, or finished: nothing to keep alive
                elif time.monotonic() >= next_extension:
                    # later by one step each time: no client clock is ever compared
                    self.reserve_until += self.step_ms
                    tracker.track_set(self.jid, reserve_until=format_time(self.reserve_until))
                    next_extension += self.every
            except TrackerError as exc:
                log.warning("watching job %s: %s", self.jid, exc)

    def stop(self) -> None:
        self.ended.set()
        self.join(timeout=5)


class TrackedMixin:
    """What a tracked worker adds to an RQ worker class."""

    tracker: Tracker

    def __init__(self, *args: Any, tracker: Tracker, **kwargs: Any) -> None:
        self.tracker = tracker
        self._job_lock = threading.Lock()
        self._job_thread: int | None = None  # the thread running a tracked job, if any
        super().__init__(*args, **kwargs)

    def perform_job(self, job: Job, queue: rq.Queue, execution: Any) -> bool:
        outcome = _Outcome()
        original = job.perform
        job.perform = lambda: self._run(job, original, outcome)  # type: ignore[method-assign]
        ok: bool = super().perform_job(job, queue, execution)  # type: ignore[misc]
        if outcome.tracked and not outcome.refused:
            self._report(job.id, ok, outcome.error)
        return ok

    def _run(self, job: Job, original: Any, outcome: _Outcome) -> Any:
        try:
            track = self.tracker.start(job.id)
        except NotFound:
            return original()  # an RQ job nobody tracks
        except Conflict as refused:
            outcome.tracked = outcome.refused = True
            raise JobRefused(f"the tracker refused to start it: {refused.detail}") from None
        outcome.tracked = True
        with self._job_lock:
            self._job_thread = threading.get_ident()
        assert track.reserve_until is not None and track.updated_at is not None
        watch = _Watch(self, job.id, track.reserve_until, track.reserve_until - track.updated_at)
        token = context.enter(self.tracker, job.id)
        watch.start()
        try:
            try:
                job.func  # noqa: B018 - import it now, to name it if that fails
            except Exception as exc:
                raise ImportError(f"cannot import {job.func_name}: {exc}") from exc
            return original()
        except BaseException as exc:
            outcome.error = exc
            raise
        finally:
            with self._job_lock:
                self._job_thread = None
            watch.stop()
            context.leave(token)

    def _report(self, jid: str, ok: bool, error: BaseException | None) -> None:
        try:
            if ok:
                self.tracker.success(jid)
            elif not isinstance(error, JobCancelled | JobStopped):
                message = str(error) or type(error).__name__
                self.tracker.fail(jid, message[:4096], error_type=type(error).__name__)
        except Conflict as exc:
            log.info("job %s ended %s, not reported: %s", jid, exc.state, exc.detail)
        except StoreUnavailable as exc:
            # the reaper will fail it once its reservation ends
            log.error("could not report job %s: %s", jid, exc)

    def stop_running_job(self, jid: str) -> None:
        raise NotImplementedError


class TrackedWorker(TrackedMixin, rq.Worker):
    """A forking RQ worker that reports every tracked job's lifecycle."""

    def stop_running_job(self, jid: str) -> None:
        send_stop_job_command(self.connection, jid)


class TrackedSimpleWorker(TrackedMixin, rq.SimpleWorker):
    """An in-process RQ worker (no fork) that reports every tracked job's lifecycle."""

    def stop_running_job(self, jid: str) -> None:
        with self._job_lock:  # only into the job: never into the worker's own code
            if self._job_thread is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self._job_thread), ctypes.py_object(JobStopped)
                )
