"""Every use of tracker's internals by the benchmarks, in one place.

The benchmarks otherwise use tracker's public API (``Tracker``, ``AsyncTracker``,
``Settings``, ``progress``, the errors). What they need beneath it is here: the
plans and the script calls they yield, the function library, key names, the RQ
hand-off, the worker's watch thread, the running-job context, the graph budget.
When a name changes in ``tracker/``, this file is the one to fix.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis

from tracker import Track, Tracker, calls, context, interface, scripts, worker
from tracker.calls import Call, Plan
from tracker.handoff import rq_handoff
from tracker.upkeep import Maintenance
from tracker.worker import TrackedSimpleWorker

__all__ = ["Maintenance", "TrackedSimpleWorker", "rq_handoff"]


def library_version() -> str:
    """The digest of the Lua library: it names the exact functions the server runs."""
    return scripts.library()[0]


def load_library(tracker: Tracker) -> None:
    """FUNCTION LOAD, for pipelined calls (they cannot load it on the way)."""
    tracker._library.load(tracker.client)


def first_call(plan: Plan[Any]) -> Call:
    """The script call a plan starts with (every write starts with one)."""
    step = next(plan)
    assert isinstance(step, Call), step
    return step


def plans(tracker: Tracker) -> Any:
    """The tracker's plans: ``plans(t).register(jid, ...)`` is a plan, not yet run."""
    return tracker.plans


def pipelined(tracker: Tracker, steps: Iterable[Plan[Any]]) -> None:
    """Run one-call plans with their FCALLs in one pipeline, each reply checked."""
    pipe = tracker.client.pipeline(transaction=False)
    started = []
    for plan in steps:
        call = first_call(plan)
        tracker._library.queue(pipe, call)
        started.append(plan)
    for plan, reply in zip(started, pipe.execute(), strict=True):
        try:
            plan.send(reply)
        except StopIteration:
            continue
        raise AssertionError("a plan wanted more than one call")


def prebuilt(tracker: Tracker, plan: Plan[Any]) -> Callable[[Any], Any]:
    """The FCALL a plan starts with, built now; the function sends it on a client."""
    call, library = first_call(plan), tracker._library
    return lambda client: library.call(client, call)


def aprebuilt(tracker: Any, plan: Plan[Any]) -> Callable[[Any], Any]:
    """:func:`prebuilt` for an AsyncTracker: the function returns an awaitable."""
    call, library = first_call(plan), tracker._library
    return lambda client: library.acall(client, call)


def hot_call(tracker: Tracker, jid: str, percent: int, desc: str) -> Call:
    """TRACK SET's call, its KEYS and ARGV as tracker sends them."""
    return first_call(tracker.plans.track_set(jid, percent=percent, desc=desc))


def _track_set_layout() -> dict[str, int]:
    args = [*interface.HEAD, *interface.OPERATIONS["track_set"].args]
    return {"hash": 1, "percent": args.index("percent") + 1, "desc": args.index("desc") + 1}


#: A raw function handed TRACK SET's KEYS and ARGV: where in them the job's hash, the
#: percent and the desc are (see tracker/interface.py).
HOT_LAYOUT = _track_set_layout()


def decode(tracker: Tracker, jid: str, fields: dict[bytes, bytes]) -> Track:
    return tracker.plans.decode(jid, fields)


def job_key(tracker: Tracker, jid: str) -> str:
    return tracker.keys.job(jid)


def key(tracker: Tracker, name: str, *args: Any) -> str:
    """A namespace key by its name in ``tracker.keys``: ``key(t, "fanout")``,
    ``key(t, "dependents", "root")``, ``key(t, "state", State.SUCCESS)``."""
    found = getattr(tracker.keys, name)
    return str(found(*args) if callable(found) else found)


@contextlib.contextmanager
def graph_budget(budget: int | None) -> Iterator[None]:
    """``calls.GRAPH_BUDGET`` for the Trackers built inside (their plans read it)."""
    default = calls.GRAPH_BUDGET
    if budget is not None:
        calls.GRAPH_BUDGET = budget
    try:
        yield
    finally:
        calls.GRAPH_BUDGET = default


def default_graph_budget() -> int:
    return calls.GRAPH_BUDGET


def variant_library(edit: Callable[[str], str]) -> scripts.Library:
    """tracker's library with ``edit`` applied to its source, under names of its own."""
    library = scripts.Library()
    source = edit(library.source)
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    library.version, library.source = digest, source.replace(library.version, digest)
    library.names = {op: f"tracker_{digest}_{op}" for op in scripts.OPERATIONS}
    return library


def use_library(tracker: Tracker, library: scripts.Library) -> None:
    tracker._library = library


def drop_library(client: redis.Redis, library: scripts.Library) -> None:
    with contextlib.suppress(redis.exceptions.ResponseError):
        client.function_delete(f"tracker_{library.version}")


def library_source() -> str:
    return scripts.Library().source


@contextlib.contextmanager
def running_job(tracker: Tracker, jid: str) -> Iterator[None]:
    """This thread runs ``jid`` for ``progress()``, as the worker marks it."""
    token = context.enter(tracker, jid)
    try:
        yield
    finally:
        context.leave(token)


def running_tracker() -> tuple[Tracker, str]:
    """Inside a tracked job: its tracker and jid."""
    running = context.current()
    return running.tracker, running.jid


class _NoWatch:
    """Stands in for the worker's watch thread: starts none (so no reservation is
    extended and no cancel noticed). For measuring what the thread costs."""

    def __init__(self, *args: object) -> None:
        pass

    def start(self) -> None:
        pass

    def watch(self, *args: object) -> None:
        pass

    def release(self) -> None:
        pass


@contextlib.contextmanager
def no_watch_thread() -> Iterator[None]:
    watcher = worker._Watcher
    worker._Watcher = _NoWatch  # type: ignore[misc, assignment]
    try:
        yield
    finally:
        worker._Watcher = watcher  # type: ignore[misc]


def tcp_listener(port: int) -> Any:
    """A loopback listening socket made as ``tracker serve`` makes its own."""
    from tracker.cli import _address, _listen

    return _listen("127.0.0.1", port, _address("127.0.0.1", port))
