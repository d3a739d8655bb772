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
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import redis

from tracker.embedded import EmbeddedValkey
from tracker.ops import Call, Plan

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def namespace(length: int = 16) -> str:
    """A namespace of this run's own, so cleanup deletes only what the run made.

    ``length`` matters where bytes are counted: every key name carries the namespace.
    """
    return "b" + uuid.uuid4().hex[: length - 1]


def cleanup(client: redis.Redis, namespace: str) -> int:
    """Delete every key of ``namespace`` (``{namespace}:*``), and nothing else."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match="{" + namespace + "}:*", count=1000):
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
    return f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, so the output pastes into BENCHMARKS.md as it is."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])
