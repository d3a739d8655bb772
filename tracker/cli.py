"""The ``tracker`` command.

Exit codes: 0 done; 1 the job is unknown; 2 bad input or usage; 3 the job's
state refused the command (409); 4 Redis unavailable, bad settings, or a server
that cannot listen (port in use, unknown host).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import NoReturn, TextIO

import click
import rq

from .client import Tracker
from .embedded import EmbeddedValkey, Keeper
from .errors import Conflict, InvalidInput, NotFound, SettingsError, StoreUnavailable, TrackerError
from .model import STORED_STATES, State, Track, parse_label
from .settings import Settings
from .upkeep import Maintenance

EXIT_UNKNOWN, EXIT_INVALID, EXIT_CONFLICT, EXIT_UNAVAILABLE = 1, 2, 3, 4


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"tracker: {message}", err=True)
    sys.exit(code)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        _fail(str(exc), EXIT_UNAVAILABLE)


@contextmanager
def connected(keep_store: bool = False) -> Iterator[Tracker]:
    """A Tracker on ``TRACKER_REDIS_URL``, or on this directory's embedded server
    (started if it is not running; it outlives the command). ``keep_store``: a
    long-running command starts the embedded server again if it is killed."""
    settings = _settings()
    keeper = None
    try:
        url = settings.redis_url
        if url is None:
            store = EmbeddedValkey()
            url = store.start()
            if store.launched:
                click.echo(
                    f"tracker: started the embedded Valkey in {store.directory}; it serves "
                    "the next commands too ('tracker store stop' ends it)",
                    err=True,
                )
            if keep_store:
                keeper = Keeper(store)
                keeper.start()
        with Tracker.from_url(url, settings) as tracker:
            yield tracker
    except NotFound as exc:
        _fail(str(exc), EXIT_UNKNOWN)
    except InvalidInput as exc:
        _fail(str(exc), EXIT_INVALID)
    except Conflict as exc:
        _fail(str(exc), EXIT_CONFLICT)
    except StoreUnavailable as exc:
        _fail(str(exc), EXIT_UNAVAILABLE)
    except TrackerError as exc:
        _fail(str(exc), EXIT_INVALID)
    finally:
        if keeper is not None:
            keeper.stop()


def _print_track(track: Track) -> None:
    click.echo(json.dumps(track.to_dict(), ensure_ascii=False, indent=2))


@click.group()
@click.version_option(package_name="tracker")
def main() -> None:
    """Track jobs in Redis: progress, lifecycle, dependencies and batches."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--insecure",
    is_flag=True,
    help="Serve beyond loopback without TRACKER_API_TOKEN (also TRACKER_INSECURE=1).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes serving the same port (each with its own event hub).",
)
def serve(host: str, port: int, insecure: bool, workers: int) -> None:
    """The HTTP API and dashboard, with the reaper and the delay schedule.

    Without TRACKER_REDIS_URL it runs on this directory's embedded Valkey.
    """
    from .web.serving import serve_app, serve_processes

    settings = _settings()
    address = _address(host, port)
    settings = replace(settings, insecure=settings.insecure or insecure)
    if not settings.api_token and not settings.insecure and not _loopback(host):
        _fail(
            f"refusing to listen on {host} without TRACKER_API_TOKEN (writes would be open "
            "to anyone who reaches it); set a token, or pass --insecure",
            EXIT_INVALID,
        )
    if host not in _ANY_ADDRESS:  # the name it was told to listen on is its own
        settings = replace(settings, allowed_hosts=(*settings.allowed_hosts, host.strip("[]")))
    listener = _listen(host, port, address)
    shown_host = f"[{host}]" if ":" in host else host
    processes = f", {workers} processes" if workers > 1 else ""
    click.echo(
        f"tracker: namespace {settings.namespace!r}, "
        f"http://{shown_host}:{listener.getsockname()[1]}/{processes}"
    )
    if workers == 1:
        serve_app(settings, listener)
    else:
        sys.exit(serve_processes(workers, lambda: serve_app(settings, listener)))


def _address(host: str, port: int) -> tuple[int, tuple[object, ...]]:
    """The socket family and address ``host`` names, or exit 4 saying it names none."""
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        _fail(
            f"cannot listen on {host!r}: not an address or a known host name ({exc})",
            EXIT_UNAVAILABLE,
        )
    return family, address


def _listen(host: str, port: int, address: tuple[int, tuple[object, ...]]) -> socket.socket:
    """A listening socket, or exit 4 with one line saying why not (a port in use)."""
    family, where = address
    # IPPROTO_TCP named, not left 0: asyncio turns Nagle's algorithm off only on sockets
    # that say they are TCP, and an accepted socket says what its listener said. Without
    # it every small response waited for the client's delayed ACK.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.bind(where)
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        _fail(f"cannot listen on {host}:{port}: {reason}", EXIT_UNAVAILABLE)
    return listener


_ANY_ADDRESS = frozenset({"0.0.0.0", "::", "[::]", ""})


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@main.command()
@click.argument("queues", nargs=-1)
@click.option("--simple", is_flag=True, help="Run jobs in this process (no fork).")
@click.option("--burst", is_flag=True, help="Quit once the queues are empty.")
def worker(queues: tuple[str, ...], simple: bool, burst: bool) -> None:
    """An RQ worker that reports every tracked job's lifecycle (queue: default)."""
    from .worker import TrackedSimpleWorker, TrackedWorker

    with connected(keep_store=True) as tracker:
        _needs_one_server(tracker, "an RQ worker")
        kind = TrackedSimpleWorker if simple else TrackedWorker
        names = queues or ("default",)
        rq_queues = [rq.Queue(name, connection=tracker.client) for name in names]
        maintenance = Maintenance(tracker)
        maintenance.start()
        try:
            grace = tracker.settings.outage_grace
            kind(rq_queues, connection=tracker.client, tracker=tracker, outage_grace=grace).work(
                burst=burst
            )
        finally:
            maintenance.stop()


def _needs_one_server(tracker: Tracker, what: str) -> None:
    if tracker.settings.redis_cluster:
        _fail(
            f"TRACKER_REDIS_CLUSTER: {what} needs one Redis server: RQ does not run on a cluster",
            EXIT_UNAVAILABLE,
        )


@main.group()
def store() -> None:
    """This directory's embedded Valkey server (in ./.tracker/)."""


@store.command(name="status")
def store_status() -> None:
    """Whether it runs, as JSON (pid, socket, since); exit 0 running, 1 not."""
    status = EmbeddedValkey().status()
    click.echo(json.dumps(status.to_dict(), indent=2))
    sys.exit(0 if status.running else 1)


@store.command(name="stop")
def store_stop() -> None:
    """Stop it, its data flushed to disk (exit 0, also when it was not running)."""
    try:
        stopped = EmbeddedValkey().stop()
    except StoreUnavailable as exc:
        _fail(str(exc), EXIT_UNAVAILABLE)
    click.echo("tracker: the embedded Valkey stopped" if stopped else "tracker: it was not running")


@main.command()
def demo() -> None:
    """Run a small workflow with an in-process worker, showing live progress."""
    from . import demo as demo_module

    with connected() as tracker:
        _needs_one_server(tracker, "the demo (an RQ workflow)")
        code = demo_module.run(tracker)
    sys.exit(code)


@main.command()
@click.argument("jid")
@click.option("--queue", default="default", show_default=True)
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option("--reserve-for", type=int, help="Seconds a start reserves the job for.")
@click.option("--max-attempts", type=int, default=25, show_default=True)
@click.option("--after", multiple=True, metavar="JID", help="A prerequisite. Repeatable.")
@click.option("--parent", metavar="JID", help="The batch it belongs to.")
@click.option("--batch", is_flag=True, help="Make it a batch.")
@click.option("--delay", type=int, default=0, metavar="S", help="Seconds to hold it once released.")
@click.option("--payload", metavar="FUNC", help="The function RQ runs, as module.function.")
@click.option("--arg", "args", multiple=True, metavar="JSON", help="An argument. Repeatable.")
@click.option(
    "--kwarg", "kwargs", multiple=True, metavar="K=JSON", help="A keyword argument. Repeatable."
)
@click.option("--hide-args", is_flag=True, help="Show the arguments as hidden in the track.")
def register(
    jid: str,
    queue: str,
    labels: tuple[str, ...],
    reserve_for: int | None,
    max_attempts: int,
    after: tuple[str, ...],
    parent: str | None,
    batch: bool,
    delay: int,
    payload: str | None,
    args: tuple[str, ...],
    kwargs: tuple[str, ...],
    hide_args: bool,
) -> None:
    """Register a job: enqueued at once, or waiting for its prerequisites."""
    try:  # before connecting: a refused label starts no embedded server
        pairs = dict(parse_label(label) for label in labels)
    except InvalidInput as exc:
        _fail(str(exc), EXIT_INVALID)
    call = _payload(payload, args, kwargs, hide_args)
    with connected() as tracker:
        done = tracker.register(
            jid,
            queue=queue,
            labels=pairs,
            reserve_for=reserve_for,
            max_attempts=max_attempts,
            prerequisites=after,
            parent=parent,
            batch=batch,
            delay=delay,
            payload=call,
            hide_args=hide_args,
        )
        _print_track(done.track)


def _payload(
    func: str | None, args: tuple[str, ...], kwargs: tuple[str, ...], hide_args: bool
) -> dict[str, object] | None:
    """The payload of ``register``'s options, or exit 2 naming the one that is wrong."""
    if func is None:
        if args or kwargs or hide_args:
            _fail("--arg, --kwarg and --hide-args need --payload FUNC", EXIT_INVALID)
        return None
    values, named = [], {}
    for text in args:
        values.append(_json_option("--arg", text))
    for pair in kwargs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            _fail(f"--kwarg expects K=JSON, got {pair!r}", EXIT_INVALID)
        named[key] = _json_option(f"--kwarg {key}", text)
    return {"func": func, "args": values, "kwargs": named}


def _json_option(option: str, text: str) -> object:
    try:
        return json.loads(text)
    except ValueError as exc:
        _fail(
            f"{option} expects JSON (a string needs quotes: '\"text\"'), got {text!r}: {exc}",
            EXIT_INVALID,
        )


@main.command()
@click.argument("jid")
def get(jid: str) -> None:
    """TRACK GET: the job's track as JSON; exit 1 when it is unknown."""
    with connected() as tracker:
        track = tracker.track_get(jid)
    _print_track(track)
    if track.state.value == "unknown":
        sys.exit(EXIT_UNKNOWN)


_ATTEMPT_HELP = (
    "The attempt reporting (the track's attempts after its start): refused (exit 3) once "
    "another attempt started."
)


@main.command(name="set")
@click.argument("jid")
@click.option("--percent", type=int)
@click.option("--desc")
@click.option("--reserve-until", metavar="RFC3339")
@click.option("--attempt", type=int, metavar="N", help=_ATTEMPT_HELP)
def set_(
    jid: str,
    percent: int | None,
    desc: str | None,
    reserve_until: str | None,
    attempt: int | None,
) -> None:
    """TRACK SET: report progress or extend the reservation."""
    with connected() as tracker:
        if percent is None and desc is None and reserve_until is None:
            if tracker.state(jid) is State.UNKNOWN:  # unknown first, as for any write
                raise NotFound(jid)
            _fail("nothing to change: give --percent, --desc or --reserve-until", EXIT_INVALID)
        tracker.track_set(
            jid, percent=percent, desc=desc, reserve_until=reserve_until, attempt=attempt
        )
        _print_track(tracker.track_get(jid))


@main.command(name="ls")
@click.option("--state", type=click.Choice([s.value for s in STORED_STATES]))
@click.option("--queue")
@click.option("--label", metavar="KEY=VALUE", help="Only jobs with this label.")
@click.option("--parent", metavar="JID", help="Only the children of this batch.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--cursor", help="Continue after a previous page.")
@click.option("--json", "as_json", is_flag=True, help="One JSON track per line.")
def ls(
    state: str | None,
    queue: str | None,
    label: str | None,
    parent: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """A table of jobs, newest first."""
    with connected() as tracker:
        page = tracker.list(
            state=state, queue=queue, label=label, parent=parent, limit=limit, cursor=cursor
        )
    if as_json:
        for track in page.jobs:
            click.echo(json.dumps(track.to_dict(), ensure_ascii=False))
        return
    now = datetime.now(UTC).timestamp() * 1000
    rows = [("JID", "STATE", "QUEUE", "PCT", "UPDATED", "DESC")]
    for track in page.jobs:
        age = (now - (track.updated_at or now)) / 1000
        rows.append(
            (
                track.jid,
                track.state.value,
                track.queue or "",
                "" if track.percent is None else f"{track.percent}%",
                _ago(age),
                _printable((track.desc or "")[:40]),
            )
        )
    _table(rows)
    if page.next:
        click.echo(f"more: add --cursor {page.next}", err=True)


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell; the last one as it is."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())


def _ago(seconds: float) -> str:
    """An age as people say it: ``12 s ago``, ``4 min ago``, ``3 h ago``, ``2 d ago``."""
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _printable(text: str) -> str:
    """``text`` on one line of a table: control characters (newlines, escapes) shown
    as escapes, so no desc can break the table or drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _simple(name: str, action: Callable[[Tracker, str], Track], help_text: str) -> None:
    @main.command(name=name, help=help_text)
    @click.argument("jid")
    def command(jid: str) -> None:
        with connected() as tracker:
            _print_track(action(tracker, jid))


_simple("cancel", lambda t, jid: t.cancel(jid), "Cancel a job that has not finished.")
_simple("pause", lambda t, jid: t.pause(jid), "Hold a waiting or enqueued job back.")
_simple("resume", lambda t, jid: t.resume(jid), "Release a paused job again.")
_simple("start", lambda t, jid: t.start(jid), "Start a job (as a worker would).")
_simple("seal", lambda t, jid: t.seal(jid), "A batch takes no more children.")


@main.command()
@click.argument("jid")
@click.option("--attempt", type=int, metavar="N", help=_ATTEMPT_HELP)
def success(jid: str, attempt: int | None) -> None:
    """Mark a job finished well (as a worker would)."""
    with connected() as tracker:
        _print_track(tracker.success(jid, attempt=attempt))


@main.command()
@click.argument("jid")
@click.argument("error")
@click.option("--no-retry", is_flag=True, help="Fail for good: the job becomes dead.")
@click.option("--attempt", type=int, metavar="N", help=_ATTEMPT_HELP)
@click.option("--type", "error_type", metavar="NAME", help="The error's type, e.g. ValueError.")
@click.option(
    "--traceback",
    type=click.File("r"),
    metavar="FILE",
    help="Keep this file's text (- for standard input) as the error's traceback.",
)
def fail(
    jid: str,
    error: str,
    no_retry: bool,
    attempt: int | None,
    error_type: str | None,
    traceback: TextIO | None,
) -> None:
    """Report a failed attempt (as a worker would)."""
    text = None if traceback is None else traceback.read()
    with connected() as tracker:
        _print_track(
            tracker.fail(
                jid,
                error,
                retry=not no_retry,
                attempt=attempt,
                error_type=error_type,
                traceback=text,
            )
        )


@main.command()
@click.argument("jid")
@click.option("--dependents", is_flag=True, help="Also put back the dependents its death killed.")
def retry(jid: str, dependents: bool) -> None:
    """Put a dead, failed or cancelled job that has a payload back to its queue."""
    with connected() as tracker:
        _print_track(tracker.retry(jid, dependents=dependents))


@main.command()
@click.argument("jid")
def delete(jid: str) -> None:
    """Forget a finished job (success, dead or cancelled)."""
    with connected() as tracker:
        was = tracker.delete(jid)
    click.echo(f"tracker: deleted {jid} (it was {was.value})")


@main.command()
@click.argument("jid", required=False)
@click.option("--state", type=click.Choice([s.value for s in STORED_STATES]))
@click.option("--queue")
@click.option("--label", metavar="KEY=VALUE", help="Only jobs with this label.")
def events(jid: str | None, state: str | None, queue: str | None, label: str | None) -> None:
    """Follow changes as they happen, one JSON track a line, until Ctrl-C.

    With JID: the job's track now, then each change of it, ending after a terminal
    state (exit 1 when the job is unknown)."""
    wanted = None if label is None else parse_label(label)
    with connected() as tracker:
        if jid is None:
            after = tracker.newest_event()
            click.echo(f"tracker: following the changes after event {after}", err=True)
        else:
            after, track = tracker.snapshot(jid)
            _print_line(track)
            if track.state is State.UNKNOWN:
                sys.exit(EXIT_UNKNOWN)
            if track.state.terminal:
                return
        while True:
            for event in tracker.events(after, block_ms=5000):
                after, track = event.id, event.track
                if jid is not None and track.jid != jid:
                    continue
                if (state and track.state != state) or (queue and track.queue != queue):
                    continue
                if wanted and (track.labels or {}).get(wanted[0]) != wanted[1]:
                    continue
                _print_line(track)
                if jid is not None and track.state.terminal:
                    return


def _print_line(track: Track) -> None:
    click.echo(json.dumps(track.to_dict(), ensure_ascii=False), nl=True)
    sys.stdout.flush()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON worker per line.")
def workers(as_json: bool) -> None:
    """The workers that beat lately: alive (idle or busy) or lost."""
    with connected() as tracker:
        found = tracker.workers()
    if as_json:
        for worker in found:
            click.echo(json.dumps(worker.to_dict(), ensure_ascii=False))
        return
    if not found:
        click.echo("no worker has beaten lately", err=True)
        return
    now = datetime.now(UTC).timestamp() * 1000
    rows = [("NAME", "STATE", "QUEUES", "JOB", "DONE", "FAILED", "BEAT", "HOST:PID")]
    for worker in found:
        rows.append(
            (
                worker.name,
                worker.state,
                ",".join(worker.queues),
                worker.job or "-",
                str(worker.done),
                str(worker.failed),
                _ago((now - worker.heartbeat_at) / 1000),
                f"{worker.host}:{worker.pid}",
            )
        )
    _table(rows)


@main.command()
def stats() -> None:
    """Counts of live jobs by state and queue, as JSON."""
    with connected() as tracker:
        counts = tracker.stats()
    click.echo(json.dumps({"states": counts.states, "queues": counts.queues}, indent=2))
