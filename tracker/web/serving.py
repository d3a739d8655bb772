"""Running the app: ``tracker serve`` in one process, or in N that share its socket.

With N processes the parent binds the listening socket, forks N children that each
build their own app (its own Redis connections, event hub and maintenance task) and
serve on that socket, and watches them: a child that dies is started again, and
SIGTERM or SIGINT stops them all. Forking after the bind is what lets them share the
port without SO_REUSEPORT, and the children inherit nothing running: no thread, no
event loop, no connection exists in the parent when it forks.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import time
import traceback
from collections.abc import Callable

from ..settings import Settings

log = logging.getLogger("tracker.serve")

#: Seconds a parent waits before starting again a process that died.
RESTART_AFTER = 1.0


def serve_app(settings: Settings, listener: socket.socket) -> None:
    """Serve the API and dashboard on ``listener`` in this process, until a signal."""
    import uvicorn

    from . import create_app
    from .protocol import protocol

    config = uvicorn.Config(
        create_app(settings),
        log_level="info",
        http=protocol(settings.http_read_timeout),
        timeout_graceful_shutdown=3,  # what an open response is given, besides streams
    )
    quiet_collector()
    uvicorn.Server(config).run(sockets=[listener])


def quiet_collector() -> None:
    """Fewer, later garbage collections: what is alive at start-up (the app, its
    modules) is never scanned again, and the youngest generation is collected after
    50,000 allocations rather than 700, which made the collector the main source of a
    request's tail latency (see BENCHMARKS.md, "HTTP API")."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def serve_processes(count: int, run_one: Callable[[], None]) -> int:
    """Run ``run_one`` in ``count`` forked processes until SIGTERM or SIGINT; a process
    that exits meanwhile is started again. Returns the exit code: 0 once all stopped."""
    children: dict[int, int] = {}  # pid -> its slot
    stopping = False

    def start(slot: int) -> None:
        pid = os.fork()
        if pid == 0:  # the child: serve, and never return into the parent's code
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                run_one()
            except BaseException:  # whatever it was: say it, and leave
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        children[pid] = slot

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(count):
        start(slot)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        slot = children.pop(pid)
        if stopping:
            continue
        log.error(
            "serving process %d ended (%s): starting another in %g s",
            pid,
            _status(status),
            RESTART_AFTER,
        )
        time.sleep(RESTART_AFTER)
        if not stopping:
            start(slot)
    return 0


def _status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
