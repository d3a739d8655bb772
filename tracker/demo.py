"""``tracker demo``: a small workflow run by an in-process worker, with live progress.

Two steps of parallel jobs chained as batches (one job fails once and succeeds on
its retry), and beside them a job that fails for good, whose dependent dies with
it (failure propagation). Everything runs against the same store as the other
commands, in a namespace and RQ queue of its own.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from dataclasses import replace
from typing import TextIO

import rq

from .client import Tracker
from .context import current, progress
from .model import State, Track
from .steps import register_steps
from .upkeep import Maintenance
from .worker import TrackedSimpleWorker

DEADLINE = 25.0


def crunch(steps: int, pause: float) -> str:
    """A job that reports its progress at every step."""
    for n in range(1, steps + 1):
        time.sleep(pause)
        progress(percent=100 * n // steps, desc=f"step {n} of {steps}")
    return f"{steps} steps"


def flaky(steps: int, pause: float) -> str:
    """Fails half way through its first attempt; the retry succeeds."""
    running = current()
    first = running.tracker.track_get(running.jid).attempts == 1
    for n in range(1, steps + 1):
        time.sleep(pause)
        if first and n > steps // 2:
            raise ConnectionError("the upstream hung up (first attempt)")
        progress(percent=100 * n // steps, desc=f"step {n} of {steps}")
    return "recovered"


def broken() -> None:
    """Fails for good."""
    time.sleep(0.3)
    raise ValueError("the input file is corrupt")


def _job(jid: str, queue: str, func: str, *args: object, **fields: object) -> dict[str, object]:
    return {"jid": jid, "queue": queue, "payload": {"func": func, "args": list(args)}, **fields}


def run(tracker: Tracker, out: TextIO | None = None, deadline: float = DEADLINE) -> int:
    """Run the demo for at most ``deadline`` seconds; returns the process exit code
    (0 when it ended as designed)."""
    out = out or sys.stdout
    stamp = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)  # runs never share keys
    settings = replace(tracker.settings, namespace=f"demo-{stamp}", propagate_failures=True)
    demo = Tracker(tracker.client, settings)
    queue = f"tracker-demo-{stamp}"
    here = __name__
    step_jobs = [
        [
            _job("fetch-users", queue, f"{here}.crunch", 8, 0.25),
            _job("fetch-orders", queue, f"{here}.crunch", 6, 0.35),
            _job("fetch-prices", queue, f"{here}.flaky", 6, 0.2),
        ],
        [_job("build-report", queue, f"{here}.crunch", 5, 0.3)],
    ]
    register_steps(demo, "report", step_jobs)
    demo.register("audit", queue=queue, payload={"func": f"{here}.broken"}, max_attempts=1)
    demo.register("publish", queue=queue, prerequisites=["audit"])
    shown = ["report", "report:step-1", "fetch-users", "fetch-orders", "fetch-prices"]
    shown += ["report:step-2", "build-report", "audit", "publish"]

    maintenance = Maintenance(demo, interval=0.2)  # retries come back after their backoff
    maintenance.start()
    screen = _Screen(demo, shown, out)
    screen.start()
    worker = TrackedSimpleWorker(
        [rq.Queue(queue, connection=demo.client)], connection=demo.client, tracker=demo
    )
    ends_at = time.monotonic() + deadline
    watchdog = _Watchdog(worker, ends_at)
    watchdog.start()
    try:
        while time.monotonic() < ends_at and not _finished(demo):
            worker.work(burst=True, logging_level="CRITICAL")  # failures show in the bars
            time.sleep(0.1)
    finally:
        watchdog.stop()
        screen.stop()
        maintenance.stop()
    tracks = [demo.track_get(jid) for jid in shown]
    out.write(_summary(tracks))
    report, publish = tracks[0], tracks[-1]
    ok = report.state is State.SUCCESS and publish.state is State.DEAD
    out.write("\nThe workflow ended as designed.\n" if ok else "\nThe demo did not finish.\n")
    return 0 if ok else 1


class _Watchdog(threading.Thread):
    """Past the deadline, stops whatever job the worker runs, so the demo ends on time
    even while a job hangs."""

    def __init__(self, worker: TrackedSimpleWorker, deadline: float) -> None:
        super().__init__(daemon=True)
        self.worker, self.deadline = worker, deadline
        self.ended = threading.Event()

    def run(self) -> None:
        if self.ended.wait(max(self.deadline - time.monotonic(), 0)):
            return
        while not self.ended.wait(0.1):
            jid = self.worker.current_jid
            if jid is not None:
                self.worker.stop_running_job(jid)

    def stop(self) -> None:
        self.ended.set()
        self.join(timeout=5)


def _finished(tracker: Tracker) -> bool:
    return all(tracker.state(jid).terminal for jid in ("report", "publish"))


class _Screen(threading.Thread):
    """Progress bars, redrawn in place on a terminal; on a pipe, a line per change."""

    def __init__(self, tracker: Tracker, jids: list[str], out: TextIO) -> None:
        super().__init__(daemon=True)
        self.tracker, self.jids, self.out = tracker, jids, out
        self.live = out.isatty()
        self.ended = threading.Event()
        self.last: dict[str, tuple[str, int | None]] = {}

    def run(self) -> None:
        while not self.ended.wait(0.2):
            self.draw()
        self.draw()

    def stop(self) -> None:
        self.ended.set()
        self.join(timeout=5)

    def draw(self) -> None:
        tracks = [self.tracker.track_get(jid) for jid in self.jids]
        if self.live:
            lines = [_bar(track, colour=True) for track in tracks]
            if self.last:
                self.out.write(f"\x1b[{len(lines)}F")
            self.out.write("".join(f"\x1b[2K{line}\n" for line in lines))
            self.last = {t.jid: (t.state.value, t.percent) for t in tracks}
        else:
            for track in tracks:
                now = (track.state.value, track.percent)
                if self.last.get(track.jid) != now and track.state is not State.UNKNOWN:
                    self.out.write(_bar(track) + "\n")
                    self.last[track.jid] = now
        self.out.flush()


_COLOURS = {"success": "32", "dead": "31", "cancelled": "31", "failed": "33", "working": "36"}


def _bar(track: Track, width: int = 24, colour: bool = False) -> str:
    percent = track.percent or (100 if track.state is State.SUCCESS else 0)
    filled = width * percent // 100
    bar = "#" * filled + "." * (width - filled)
    state = track.state.value
    code = _COLOURS.get(state) if colour else None
    shown_state = f"\x1b[{code}m{state:9}\x1b[0m" if code else f"{state:9}"
    note = track.desc or ""
    if track.error and track.state in (State.FAILED, State.DEAD):
        note = track.error["message"]
    return f"{track.jid:14} {shown_state} [{bar}] {percent:3d}%  {note}"[:120]


def _summary(tracks: list[Track]) -> str:
    rows = ["", "job            state      attempts  error"]
    for track in tracks:
        ended_badly = track.state in (State.FAILED, State.DEAD, State.CANCELLED)
        error = ""
        if track.error and ended_badly:  # a retry that succeeded keeps its old error
            error = track.error["message"]
            source = track.error.get("source")
            if source and source != track.jid:
                error += f" (caused by {source})"
        rows.append(f"{track.jid:14} {track.state.value:10} {track.attempts or 0:<9} {error}")
    return "\n".join(rows) + "\n"
