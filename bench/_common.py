"""What every benchmark shares: the servers to run against, cleanup, medians, tables.

Run a benchmark as ``python bench/<name>.py``; Python then puts ``bench/`` on
``sys.path``, which is how the scripts import this module.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import redis
import rq

from tracker import Tracker, scripts
from tracker.calls import Call, Plan
from tracker.context import current, progress
from tracker.embedded import EmbeddedValkey

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def namespace(length: int = 16) -> str:
    """A namespace of this run's own, so cleanup deletes only what the run made.

    ``length`` matters where bytes are counted: every key name carries the namespace.
    """
    return "b" + uuid.uuid4().hex[: length - 1]


def cleanup(client: redis.Redis, namespace: str) -> int:
    """Delete every key of ``namespace`` (``{namespace}:*``), and nothing else."""
    return _delete_matching(client, "{" + namespace + "}:*")


def _delete_matching(client: redis.Redis, pattern: str) -> int:
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) == 1000:
            deleted += client.delete(*batch)
            batch.clear()
    if batch:
        deleted += client.delete(*batch)
    return deleted


def first_call(plan: Plan[Any]) -> Call:
    """The script call a plan starts with (every write starts with one)."""
    step = next(plan)
    assert isinstance(step, Call), step
    return step


def pipelined(tracker: Tracker, plans: Iterable[Plan[Any]]) -> None:
    """Run one-call plans together, their function calls (FCALL) in one pipeline.

    The steps of ``Tracker._drive`` with the round trips shared: each plan yields
    its ``Call``, gets its reply back and checks it (raising on a refusal).
    """
    pipe = tracker.client.pipeline(transaction=False)
    started = []
    for plan in plans:
        call = first_call(plan)
        tracker._library.call(pipe, call.script, call.keys, call.args)
        started.append(plan)
    for plan, reply in zip(started, pipe.execute(), strict=True):
        try:
            plan.send(reply)
        except StopIteration:
            continue
        raise AssertionError("a plan wanted more than one call")


def cleanup_matching(client: redis.Redis, tag: str) -> int:
    """Delete every key whose name contains ``tag``: the RQ keys of a run that put its
    own unique tag in every RQ job id, queue name and worker name. Also drops the run's
    queues and workers from RQ's ``rq:queues`` and ``rq:workers`` sets."""
    deleted = _delete_matching(client, f"*{tag}*")
    for registry in ("rq:queues", "rq:workers"):
        ours = [m for m in client.smembers(registry) if tag.encode() in m]
        if ours:
            client.srem(registry, *ours)
    return deleted


def timed_burst(worker: rq.Worker) -> tuple[float, float]:
    """Run ``worker`` in burst mode (RQ logging at WARNING); returns the seconds the run
    took and, of those, the seconds its teardown took.

    The teardown unsubscribes from the worker's pub/sub channel and joins the thread
    that listens on it, for up to 1 s: the thread, blocked in a read with a 60 s
    timeout, misses the stop now and then (23 teardowns of 70 in one day's runs), so
    a burst run takes 0 or 1 s more at random, whatever it ran. Subtract the teardown
    to time only the jobs.
    """
    teardown = worker.teardown
    spent = [0.0]

    def timed_teardown() -> None:
        start = time.perf_counter()
        try:
            teardown()
        finally:
            spent[0] += time.perf_counter() - start

    worker.teardown = timed_teardown  # type: ignore[method-assign]
    start = time.perf_counter()
    worker.work(burst=True, logging_level="WARNING")
    return time.perf_counter() - start, spent[0]


# --- job functions, importable by a worker as ``_common.<name>`` -----------------


def noop() -> None:
    """The trivial job."""


#: The least a progress report must do: write percent to the job's hash, set its expiry.
RAW_PROGRESS = """
-- KEYS[1] the job's hash; ARGV[1] percent, ARGV[2] expiry (s)
redis.call('HSET', KEYS[1], 'p', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""
RAW_EXPIRY = 86_400


def progress_against_raw(calls: int, raw_first: bool) -> list[float]:
    """Run inside a tracked job: the seconds of ``calls`` ``progress(percent=i)`` and of
    ``calls`` raw EVALSHA of :data:`RAW_PROGRESS` on the job's hash, through the same
    client (the tracker's), in the order given; ``[progress, raw]``.

    One call of each first, untimed: the raw script may need its SCRIPT LOAD.
    """
    running = current()
    client = running.tracker.client
    raw = client.register_script(RAW_PROGRESS)
    keys = [running.tracker.keys.job(running.jid)]
    progress(percent=0)
    raw(keys=keys, args=[0, RAW_EXPIRY])

    def timed_progress() -> float:
        start = time.perf_counter()
        for i in range(calls):
            progress(percent=i)
        return time.perf_counter() - start

    def timed_raw() -> float:
        start = time.perf_counter()
        for i in range(calls):
            raw(keys=keys, args=[i, RAW_EXPIRY])
        return time.perf_counter() - start

    if raw_first:
        raw_seconds = timed_raw()
        return [timed_progress(), raw_seconds]
    progress_seconds = timed_progress()
    return [progress_seconds, timed_raw()]


@contextlib.contextmanager
def slow_commands(client: redis.Redis, slower_than_us: int) -> Iterator[list[dict[str, Any]]]:
    """Log commands slower than ``slower_than_us`` inside the block; the list fills with
    SLOWLOG's entries (``duration`` in us, ``command``) on the way out.

    Only for a server of our own: it changes the server's configuration while inside,
    and resets its slow log. The threshold should stay well above the commands a
    function runs, since Redis 7 logs those too (at 0, a long function call floods
    the log and the logging slows it down).
    """
    saved = client.config_get("slowlog-*")
    entries: list[dict[str, Any]] = []
    client.config_set("slowlog-max-len", 100_000)
    client.slowlog_reset()
    client.config_set("slowlog-log-slower-than", slower_than_us)
    try:
        yield entries
    finally:
        client.config_set("slowlog-log-slower-than", saved["slowlog-log-slower-than"])
        entries.extend(client.slowlog_get(-1))
        client.slowlog_reset()
        client.config_set("slowlog-max-len", saved["slowlog-max-len"])


def command_stats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """INFO commandstats: calls and usec per command, those run by functions included."""
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in client.info("commandstats").items()
    }


def command_delta(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """What ran between two readings of :func:`command_stats`: name -> (calls, usec)."""
    delta = {}
    for name, (calls, usec) in after.items():
        calls0, usec0 = before.get(name, (0, 0))
        if calls != calls0:
            delta[name] = (calls - calls0, usec - usec0)
    return delta


def server_time(commands: dict[str, tuple[int, int]], per: int, outer: str = "fcall") -> str:
    """FCALL time per operation: each command the functions ran, and the rest of the
    FCALLs' time (the Lua interpreter, and redis.call's own overhead). Commands of the
    benchmark's own around the measurement (INFO, CONFIG, SLOWLOG) are left out.
    ``outer="evalsha"`` does the same for scripts."""
    inner = {
        name: usec
        for name, (_, usec) in commands.items()
        if name != outer and not name.startswith(("slowlog", "config", "info"))
    }
    total = commands.get(outer, (0, 0))[1]
    rest = total - sum(inner.values())
    top = sorted(inner.items(), key=lambda item: -item[1])[:8]
    shown = ", ".join(f"{name} {usec / per:.1f}" for name, usec in top if usec / per >= 0.5)
    return (
        f"{outer.upper()} {total / per:.1f} us = commands {(total - rest) / per:.1f} ({shown}) "
        f"+ Lua and redis.call overhead {rest / per:.1f}"
    )


def reachable(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.exceptions.RedisError:
        return False


def server_label(url: str) -> str:
    """``valkey 9.0.0 (unix)``: what answers at ``url`` and how we reach it."""
    client = redis.Redis.from_url(url)
    try:
        info = client.info("server")
    finally:
        client.close()
    name = "valkey" if "valkey_version" in info else "redis"
    version = info.get("valkey_version") or info.get("redis_version")
    transport = "unix" if url.startswith("unix://") else "tcp"
    return f"{name} {version} ({transport})"


def url_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--url",
        action="append",
        help="server to run against (repeatable); default: an embedded Valkey in a temporary "
        f"directory, and {SHARED_REDIS} when it answers",
    )
    return parser


@contextlib.contextmanager
def embedded_valkey() -> Iterator[str]:
    """A private embedded Valkey (tracker's default server) in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="tracker-bench-") as directory:
        server = EmbeddedValkey(directory)
        url = server.start()
        try:
            yield url
        finally:
            server.stop()


@contextlib.contextmanager
def private_redis() -> Iterator[str | None]:
    """A private ``redis-server`` on a unix socket, no persistence; None if not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="tracker-bench-redis-") as directory:
        sock, pidfile = Path(directory) / "redis.sock", Path(directory) / "redis.pid"
        subprocess.run(
            [
                binary,
                "--port",
                "0",
                "--unixsocket",
                str(sock),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--pidfile",
                str(pidfile),
                "--logfile",
                str(Path(directory) / "redis.log"),
                "--dir",
                directory,
            ],
            check=True,
        )
        url = f"unix://{sock}"
        deadline = time.monotonic() + 10
        while not reachable(url):
            if time.monotonic() > deadline:
                raise RuntimeError("the private redis-server did not start")
            time.sleep(0.05)
        try:
            yield url
        finally:
            client = redis.Redis.from_url(url)
            with contextlib.suppress(redis.exceptions.ConnectionError):
                client.shutdown(nosave=True)
            client.close()
            deadline = time.monotonic() + 10
            while pidfile.exists() and time.monotonic() < deadline:
                time.sleep(0.05)


def fresh_servers(
    urls: Sequence[str] | None,
) -> list[Callable[[], contextlib.AbstractContextManager[str]]]:
    """One factory per server kind; each call gives a server for one measurement.

    The URLs given (the same server each time), or else a fresh private
    ``redis-server`` (when installed) and a fresh embedded Valkey per call.
    """
    if urls:
        return [lambda url=url: contextlib.nullcontext(url) for url in urls]  # type: ignore[misc]
    if shutil.which("redis-server") is None:
        print("redis-server is not on PATH: measuring the embedded Valkey only")
        return [embedded_valkey]
    return [_private_redis, embedded_valkey]


@contextlib.contextmanager
def _private_redis() -> Iterator[str]:
    with private_redis() as url:
        assert url is not None
        yield url


@contextlib.contextmanager
def private_servers(urls: Sequence[str] | None) -> Iterator[list[tuple[str, bool]]]:
    """``(url, ours)`` pairs: the URLs given (not ours), or else a private Redis 7 (when
    ``redis-server`` is installed) and an embedded Valkey, both started here (ours)."""
    if urls:
        yield [(url, False) for url in urls]
        return
    with private_redis() as redis_url, embedded_valkey() as valkey_url:
        yield [*([(redis_url, True)] if redis_url else []), (valkey_url, True)]


@contextlib.contextmanager
def default_targets(urls: Sequence[str] | None) -> Iterator[list[str]]:
    """The URLs given, or an embedded Valkey plus the shared Redis when it answers."""
    if urls:
        yield list(urls)
        return
    with embedded_valkey() as valkey_url:
        yield [valkey_url, *([SHARED_REDIS] if reachable(SHARED_REDIS) else [])]


def rate(run: Callable[[], int], seconds: float) -> float:
    """Call ``run`` (which returns how many operations it did) for ``seconds``; ops/s."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        done += run()
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    """The machine and the code measured: the commit, and the digest of the Lua library
    (which names the exact functions the server ran)."""
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{os.cpu_count()} cores, {python}; tracker {code_version()}"


def code_version() -> str:
    folder = Path(scripts.__file__).parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit, changed = "?", ""
    return f"{commit}{' (modified)' if changed else ''}, library {scripts.library()[0]}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, so the output pastes into BENCHMARKS.md as it is."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(
    process: subprocess.Popen[bytes], url: str, what: str, timeout: float
) -> Iterator[None]:
    """Wait until the server ``process`` answers ``url`` below 500; stop it after."""
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with {process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url, timeout=1.0).status_code < 500:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not answer within {timeout} s")
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
