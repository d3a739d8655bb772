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

Every report names the attempt ``start`` began (fencing). A work horse that was
paused past its reservation (SIGSTOP, a long GC, a frozen VM) is reaped and its job
started again elsewhere; when it wakes up its reports are refused (JobSuperseded),
and the watcher stops it as it stops a cancelled job, so only one attempt's outcome
is ever recorded.

Given ``outage_grace``, the worker rides out a Redis outage (see outage.py): every
command waits for Redis to answer again, so a running job keeps running and its outcome
is reported once Redis is back (if the reaper failed it meanwhile, the report is
refused, logged and dropped). An outage longer than the grace stops the worker:
:meth:`TrackedMixin.work` raises StoreUnavailable, after killing a work horse it leaves.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import rq
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, StopRequested
from rq.job import Job, JobStatus

from . import context
from .client import UNAVAILABLE, Tracker
from .errors import (
    Conflict,
    JobCancelled,
    JobSuperseded,
    NotFound,
    StoreUnavailable,
    TrackerError,
)
from .model import State
from .outage import OutageRetry
from .times import format_time
from .workers import BEAT_INTERVAL, Heartbeat

log = logging.getLogger("tracker.worker")

#: How often a running job's state is checked for a cancel, in seconds.
WATCH_INTERVAL = 0.25

#: How long the worker's command listener (RQ's pubsub thread) blocks in one read.
#: RQ asks for 60 s, and redis-py 8.2 joins that thread without a limit on shutdown,
#: so a worker took up to a minute to leave; with this it leaves within one read.
PUBSUB_POLL = 0.5


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
    attempt: int | None = None


#: The states a watched job may be in once its attempt ended while the job goes on: reaped
#: (failed or dead), then perhaps retried (enqueued, and paused) before its next start.
_ATTEMPT_ENDED = frozenset({State.FAILED, State.DEAD, State.ENQUEUED, State.PAUSED})


@dataclass
class _Watched:
    """The job the watcher looks after, and what it has done for it."""

    jid: str
    attempt: int
    reserve_until: int
    every: float  # seconds between extensions: a third of the reservation
    next_extension: float
    running: context.Running  # what the job's progress() calls see
    cancelled_at: float | None = None
    done: bool = False


class _Watcher(threading.Thread):
    """One per worker process: while a job runs, extend its reservation, and stop the
    job once it was cancelled and its grace ran out.

    One thread for the process's life rather than one per job: starting and joining
    a thread per job cost a tracked worker more than the tracking itself.
    """

    def __init__(self, worker: TrackedMixin) -> None:
        super().__init__(name="tracker-watch", daemon=True)
        self.worker = worker
        self._changed = threading.Condition()
        self._job: _Watched | None = None

    def watch(
        self, running: context.Running, attempt: int, reserve_until: int, reserve_ms: int
    ) -> None:
        every = max(reserve_ms / 3000, WATCH_INTERVAL)
        job = _Watched(
            running.jid, attempt, reserve_until, every, time.monotonic() + every, running
        )
        with self._changed:
            self._job = job
            self._changed.notify()

    def release(self) -> None:
        with self._changed:
            self._job = None
            self._changed.notify()

    def run(self) -> None:
        while True:
            with self._changed:
                while self._job is None:
                    self._changed.wait()
                job = self._job
                self._changed.wait(WATCH_INTERVAL)  # a release wakes it at once
                if self._job is not job or job.done:
                    continue
            try:
                self._check(job)
            except TrackerError as exc:
                log.warning("watching job %s: %s", job.jid, exc)

    def _check(self, job: _Watched) -> None:
        tracker = self.worker.tracker
        state, attempt = tracker.state_and_attempt(job.jid)
        if state in _ATTEMPT_ENDED or (attempt != job.attempt and state is not State.UNKNOWN):
            # reaped (its reservation ended), perhaps retried or started again elsewhere
            self._stop_superseded(job, f"its attempt {job.attempt} is not running")
        elif state is State.CANCELLED:
            job.running.ended = JobCancelled(job.jid)  # its next progress() raises it
            job.cancelled_at = job.cancelled_at or time.monotonic()
            grace = tracker.settings.cancel_grace
            if time.monotonic() - job.cancelled_at >= grace:
                log.info("job %s outlived its cancel by %.1f s: stopping it", job.jid, grace)
                job.done = True
                self.worker.stop_running_job(job.jid)
        elif state is not State.WORKING:
            job.done = True  # reaped, or finished: nothing to keep alive
        elif time.monotonic() >= job.next_extension:
            # later by one step each time: no client clock is ever compared
            job.reserve_until += int(job.every * 1000)
            until = format_time(job.reserve_until)
            try:
                tracker.track_set(job.jid, reserve_until=until, attempt=job.attempt)
            except JobSuperseded as exc:
                self._stop_superseded(job, exc.detail)
                return
            job.next_extension += job.every

    def _stop_superseded(self, job: _Watched, why: str) -> None:
        log.warning("job %s: %s; stopping it", job.jid, why)
        job.running.ended = JobSuperseded(job.jid, "superseded", why)
        job.done = True
        self.worker.stop_running_job(job.jid)


class TrackedMixin:
    """What a tracked worker adds to an RQ worker class."""

    tracker: Tracker

    def __init__(
        self,
        *args: Any,
        tracker: Tracker,
        outage_grace: float | None = None,
        beat_interval: float = BEAT_INTERVAL,
        **kwargs: Any,
    ) -> None:
        self.tracker = tracker
        self.beat_interval = beat_interval
        self._heartbeat: Heartbeat | None = None
        self._job_lock = threading.Lock()
        self._job_thread: int | None = None  # the thread running a tracked job, if any
        self._job_id: str | None = None
        self._watcher: _Watcher | None = None
        self._watcher_pid = 0
        self.outage: OutageRetry | None = None
        if outage_grace is not None:  # before RQ's own setup, which talks to Redis already
            self.outage = OutageRetry(outage_grace, on_give_up=self.abandon_job)
            for client in {tracker.client, kwargs.get("connection") or tracker.client}:
                client.set_retry(self.outage)
        super().__init__(*args, **kwargs)

    def work(self, *args: Any, **kwargs: Any) -> bool:
        """RQ's work loop; raises StoreUnavailable once Redis stayed away past the grace."""
        try:
            worked = bool(super().work(*args, **kwargs))  # type: ignore[misc]
        except UNAVAILABLE:
            if not self._gave_up():
                raise
            worked = False
        if self._gave_up():
            assert self.outage is not None
            raise StoreUnavailable(
                f"Redis did not answer for {self.outage.grace:g} s (TRACKER_OUTAGE_GRACE): "
                "the worker stops"
            )
        return worked

    def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        # RQ's idle loop retries connection errors for ever, and beats first each time
        if self._gave_up():
            raise StopRequested()
        super().heartbeat(*args, **kwargs)  # type: ignore[misc]

    def dequeue_job_and_maintain_ttl(self, *args: Any, **kwargs: Any) -> Any:
        if self._heartbeat is None:
            # it beats from its first wait for a job: by then RQ's signal handlers are in
            # place, so a worker listed as alive is one a SIGTERM stops cleanly
            worker: Any = self
            self._heartbeat = Heartbeat(
                self.tracker, worker.name, list(worker.queue_names()), self.beat_interval
            )
            self._heartbeat.start()
        return super().dequeue_job_and_maintain_ttl(*args, **kwargs)  # type: ignore[misc]

    def register_death(self) -> None:
        if self._heartbeat is not None and not self._gave_up():
            self._heartbeat.stop()
        super().register_death()  # type: ignore[misc]

    def execute_job(self, job: Job, queue: rq.Queue) -> None:
        if self._heartbeat is not None:
            self._heartbeat.running(job.id)
        try:
            super().execute_job(job, queue)  # type: ignore[misc]
        finally:
            if self._heartbeat is not None:
                self._heartbeat.ended(self._succeeded(job))

    def _succeeded(self, job: Job) -> bool:
        """Whether the job just executed succeeded, as RQ recorded it."""
        raise NotImplementedError

    def _gave_up(self) -> bool:
        return self.outage is not None and self.outage.gave_up

    def abandon_job(self) -> None:
        """Stop the job running, if any: Redis is gone for good, nothing can be reported."""
        raise NotImplementedError

    def _watching(self) -> _Watcher:
        # a forked work horse inherits no threads: each process starts its own watcher
        if self._watcher is None or self._watcher_pid != os.getpid():
            self._watcher, self._watcher_pid = _Watcher(self), os.getpid()
            self._watcher.start()
        return self._watcher

    def subscribe(self) -> None:
        """Listen for RQ's worker commands (stop-job, shutdown) with a short read, so
        that stopping the listener never waits long, whatever redis-py's join does."""
        worker: Any = self
        worker.pubsub = worker.connection.pubsub()
        worker.pubsub.subscribe(**{worker.pubsub_channel_name: worker.handle_payload})
        worker.pubsub_thread = worker.pubsub.run_in_thread(
            sleep_time=PUBSUB_POLL, daemon=True, exception_handler=worker._pubsub_exception_handler
        )

    def perform_job(self, job: Job, queue: rq.Queue, execution: Any) -> bool:
        outcome = _Outcome()
        original = job.perform
        job.perform = lambda: self._run(job, original, outcome)  # type: ignore[method-assign]
        ok: bool = super().perform_job(job, queue, execution)  # type: ignore[misc]
        if outcome.tracked and not outcome.refused:
            self._report(job.id, outcome.attempt, ok, outcome.error)
        return ok

    def _run(self, job: Job, original: Any, outcome: _Outcome) -> Any:
        try:
            track = self.tracker.start(job.id)
        except NotFound:
            return original()  # an RQ job nobody tracks
        except Conflict as refused:
            outcome.tracked = outcome.refused = True
            raise JobRefused(f"the tracker refused to start it: {refused.detail}") from None
        outcome.tracked, outcome.attempt = True, track.attempts
        with self._job_lock:
            self._job_thread, self._job_id = threading.get_ident(), job.id
        assert track.reserve_until is not None and track.updated_at is not None
        assert track.attempts is not None
        watcher = self._watching()
        reserve_ms = track.reserve_until - track.updated_at
        token = context.enter(self.tracker, job.id, track.attempts)
        running = context.current()
        watcher.watch(running, track.attempts, track.reserve_until, reserve_ms)
        try:
            try:
                job.func  # noqa: B018 - import it now, to name it if that fails
            except Exception as exc:
                raise ImportError(f"cannot import {job.func_name}: {exc}") from exc
            result = original()
            running.flush_pending()  # its last progress, before its success
            return result
        except BaseException as exc:
            outcome.error = exc
            if not isinstance(exc, TrackerError):
                with contextlib.suppress(TrackerError):
                    running.flush_pending()  # where it got to, before its failure
            raise
        finally:
            with self._job_lock:
                self._job_thread = self._job_id = None
            watcher.release()
            context.leave(token)

    def _report(self, jid: str, attempt: int | None, ok: bool, error: BaseException | None) -> None:
        try:
            if ok:
                self.tracker.success(jid, attempt=attempt)
            elif not isinstance(error, JobCancelled | JobStopped | JobSuperseded):
                message = str(error) or type(error).__name__
                self.tracker.fail(
                    jid,
                    message[:4096],
                    error_type=type(error).__name__,
                    attempt=attempt,
                    traceback="".join(traceback.format_exception(error)) if error else None,
                )
        except Conflict as exc:  # cancelled, reaped while Redis was away, or superseded
            outcome = "success" if ok else "failure"
            log.warning("job %s is %s: its %s is dropped (%s)", jid, exc.state, outcome, exc.detail)
        except StoreUnavailable as exc:
            # the reaper will fail it once its reservation ends
            log.error("could not report job %s: %s", jid, exc)

    @property
    def current_jid(self) -> str | None:
        """The tracked job this worker runs now, if any."""
        with self._job_lock:
            return self._job_id

    def stop_running_job(self, jid: str) -> None:
        raise NotImplementedError


class TrackedWorker(TrackedMixin, rq.Worker):
    """A forking RQ worker that reports every tracked job's lifecycle."""

    def _succeeded(self, job: Job) -> bool:
        try:  # the horse recorded it: read it back
            return job.get_status() == JobStatus.FINISHED
        except InvalidJobOperation:  # RQ deletes a job at once only for a success kept 0 s
            return True
        except UNAVAILABLE:
            return False

    def stop_running_job(self, jid: str) -> None:
        send_stop_job_command(self.connection, jid)

    def abandon_job(self) -> None:
        if self.horse_pid:  # in the worker: its horse (in a horse, no horse of its own)
            self.kill_horse()


class TrackedSimpleWorker(TrackedMixin, rq.SimpleWorker):
    """An in-process RQ worker (no fork) that reports every tracked job's lifecycle."""

    def _succeeded(self, job: Job) -> bool:
        return job.get_status(refresh=False) == JobStatus.FINISHED  # set in this process

    def abandon_job(self) -> None:
        with self._job_lock:
            jid = self._job_id
        if jid is not None:
            self.stop_running_job(jid)

    def stop_running_job(self, jid: str) -> None:
        with self._job_lock:  # only into that job: never into the worker's code or the next job
            if self._job_thread is not None and self._job_id == jid:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self._job_thread), ctypes.py_object(JobStopped)
                )
