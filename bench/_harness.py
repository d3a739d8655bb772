"""What every benchmark shares: the store to run on, paired rounds, spread, tables.

Run a benchmark as ``python bench/<name>.py``; Python puts ``bench/`` on ``sys.path``,
which is how the scripts import this module. Every benchmark takes:

- ``--url URL`` (repeatable): the store to measure. Without it, a private embedded
  Valkey (tracker's default server) in a temporary directory; ``--url valkey`` names
  that one, and ``--url redis-server`` starts a private ``redis-server`` on a unix
  socket without persistence, for the benchmarks that read ``used_memory``, SLOWLOG or
  per-command server time without other clients blurring them.
- ``--quick``: a short run (fewer rounds, smaller sizes, whatever else is given) that
  still prints every figure.

Ratios are taken from rounds that alternate the two sides (which goes first
alternates too): the figure is the median of the rounds' own ratios, and the spread
their range, so a slow spell of a shared machine shows instead of hiding.
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
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import redis
import rq
from _internals import library_version

from tracker.embedded import EmbeddedValkey

PRIVATE_REDIS = "redis-server"


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every benchmark has; add its own, then call ``parse_args``."""
    first = (doc or "").strip().split("\n\n")[0]
    options = argparse.ArgumentParser(description=first)
    options.add_argument(
        "--url",
        action="append",
        help="store to measure (repeatable): a Redis URL, 'valkey' for a private embedded "
        "Valkey (the default), 'redis-server' for a private Redis on a unix socket",
    )
    options.add_argument("--quick", action="store_true", help="a short run")
    return options


@contextlib.contextmanager
def stores(urls: Sequence[str] | None) -> Iterator[list[str]]:
    """The URLs to measure: those given (``redis-server`` started here), else an
    embedded Valkey started here; stopped after."""
    with contextlib.ExitStack() as stack:
        found = []
        for url in urls or ["valkey"]:
            if url == "valkey":
                found.append(stack.enter_context(embedded_valkey()))
            elif url == PRIVATE_REDIS:
                found.append(stack.enter_context(private_redis()))
            else:
                found.append(url)
        yield found


def fresh(url: str) -> contextlib.AbstractContextManager[str]:
    """For a measurement that wants a server of its own: a new embedded Valkey for the
    default store, a new redis-server for ``redis-server``, else ``url`` itself."""
    if url.startswith("unix://") and "tracker-bench-redis" in url:
        return private_redis()
    if url.startswith("unix://") and "tracker-bench-" in url:
        return embedded_valkey()
    return contextlib.nullcontext(url)


@contextlib.contextmanager
def embedded_valkey() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="tracker-bench-") as directory:
        server = EmbeddedValkey(directory)
        url = server.start()
        try:
            yield url
        finally:
            server.stop()


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH")
    with tempfile.TemporaryDirectory(prefix="tracker-bench-redis-") as directory:
        sock = Path(directory) / "redis.sock"
        process = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly",
             "no", "--dir", directory, "--logfile", str(Path(directory) / "redis.log")]
        )  # fmt: skip
        url = f"unix://{sock}"
        try:
            wait_until(lambda: reachable(url), 10, "the private redis-server did not start")
            yield url
        finally:
            process.terminate()
            process.wait(10)


def reachable(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=0.5) as client:
            return bool(client.ping())
    except redis.exceptions.RedisError:
        return False


def wait_until(condition: Callable[[], bool], seconds: float, failure: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.05)


def label(url: str) -> str:
    """``valkey 9.1.2 (unix)``: what answers at ``url`` and how it is reached."""
    with redis.Redis.from_url(url) as client:
        info = client.info("server")
    name = "valkey" if "valkey_version" in info else "redis"
    version = info.get("valkey_version") or info.get("redis_version")
    return f"{name} {version} ({'unix' if url.startswith('unix://') else 'tcp'})"


def machine() -> str:
    """The machine and the code measured: the commit, and the Lua library's digest."""
    python = f"{platform.python_implementation()} {platform.python_version()}"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "tracker"], capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "?", ""
    commit += " (tracker/ modified)" if dirty else ""
    return f"{os.cpu_count()} cores, {python}; commit {commit}, library {library_version()}"


# --- rounds and figures ------------------------------------------------------------


def alternate(rounds: int, *sides: Callable[[], float]) -> list[list[float]]:
    """``rounds`` rounds of every side, the order rotating; one list of results per side.
    Each side runs once first, untimed (connections, script caches)."""
    for side in sides:
        side()
    results: list[list[float]] = [[] for _ in sides]
    for r in range(rounds):
        order = list(range(len(sides)))
        order = order[r % len(sides) :] + order[: r % len(sides)]
        for i in order:
            results[i].append(sides[i]())
    return results


def rate(run: Callable[[], int], seconds: float) -> float:
    """Call ``run`` (it returns how many operations it did) for ``seconds``: ops/s."""
    done, start = 0, time.perf_counter()
    while True:
        done += run()
        now = time.perf_counter()
        if now - start >= seconds:
            return done / (now - start)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratios(ours: Sequence[float], theirs: Sequence[float]) -> list[float]:
    return [a / b for a, b in zip(ours, theirs, strict=True)]


def paired(ours: Sequence[float], theirs: Sequence[float], digits: int = 2) -> str:
    """The median of the rounds' own ratios, and their range: ``0.84 (0.79-0.90)``."""
    got = ratios(ours, theirs)
    return f"{median(got):.{digits}f} ({min(got):.{digits}f}-{max(got):.{digits}f})"


def spread(values: Sequence[float], fmt: str = ",.0f") -> str:
    """The median and the range: ``5,120 (4,800-5,300)``."""
    return f"{median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def verdict(met: bool) -> str:
    return "yes" if met else "NO"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a Markdown table, so the output pastes into BENCHMARKS.md as it is."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    print("\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])]), flush=True)


# --- keys, servers and processes -----------------------------------------------------


def namespace(length: int = 16) -> str:
    """A namespace of the run's own, so cleanup deletes only what it made; ``length``
    matters where bytes are counted (every key name carries it)."""
    return "b" + uuid.uuid4().hex[: length - 1]


def tag(prefix: str = "bt") -> str:
    """Unique to a run; put in every RQ job id, queue and worker name for cleanup."""
    return prefix + uuid.uuid4().hex[:10]


def cleanup(client: redis.Redis, ns: str) -> None:
    """Delete every key of the tracker namespace ``ns``, and nothing else."""
    _delete_matching(client, "{" + ns + "}:*")


def cleanup_rq(client: redis.Redis, run: str) -> None:
    """Delete every RQ key whose name carries ``run``; drop its queues and workers from
    RQ's ``rq:queues`` and ``rq:workers``."""
    _delete_matching(client, f"*{run}*")
    for registry in ("rq:queues", "rq:workers"):
        ours = [m for m in client.smembers(registry) if run.encode() in m]
        if ours:
            client.srem(registry, *ours)


def _delete_matching(client: redis.Redis, pattern: str) -> None:
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) == 1000:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def command_stats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """INFO commandstats: (calls, usec) per command, those functions ran included."""
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in client.info("commandstats").items()
    }


@contextlib.contextmanager
def server_usec(client: redis.Redis, command: str = "fcall") -> Iterator[list[int]]:
    """``[calls, usec]`` of ``command`` inside the block (INFO commandstats)."""
    before = command_stats(client).get(command, (0, 0))
    got = [0, 0]
    yield got
    after = command_stats(client).get(command, (0, 0))
    got[:] = [after[0] - before[0], after[1] - before[1]]


def timed_burst(worker: rq.Worker) -> float:
    """Seconds of ``worker.work(burst=True)``, its teardown left out: that joins a
    pub/sub thread which misses the stop now and then and waits 1 s, whatever ran."""
    teardown, spent = worker.teardown, [0.0]

    def timed_teardown() -> None:
        start = time.perf_counter()
        try:
            teardown()
        finally:
            spent[0] += time.perf_counter() - start

    worker.teardown = timed_teardown  # type: ignore[method-assign]
    start = time.perf_counter()
    worker.work(burst=True, logging_level="WARNING")
    return time.perf_counter() - start - spent[0]


def noop() -> None:
    """The trivial job, importable by a worker as ``_harness.noop``."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(process: subprocess.Popen[Any], url: str, timeout: float = 30) -> Iterator[None]:
    """Wait until the HTTP server ``process`` answers ``url`` below 500; stop it after."""
    try:

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(url, timeout=1.0).status_code < 500
            return False

        wait_until(answers, timeout, f"{url} did not answer within {timeout} s")
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def tracker_serve(
    url: str, namespace: str, scratch: Path, timeout: float = 30
) -> Iterator[tuple[int, int]]:
    """``tracker serve`` on a free loopback port: (port, pid)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env.update(TRACKER_REDIS_URL=url, TRACKER_NAMESPACE=namespace)
    script = shutil.which("tracker") or str(Path(sys.executable).with_name("tracker"))
    command = [script, "serve", "--port", str(port)]
    with (scratch / "serve.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=scratch, env=env, stdout=log, stderr=log)
    with serving(process, f"http://127.0.0.1:{port}/readyz", timeout):
        yield port, process.pid


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
