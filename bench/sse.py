"""Server-Sent Events: the delay from a TRACK SET to its event at each connected client.

    python bench/sse.py [--url URL] [--clients 100] [--rate 1000] [--rounds 3] [--seconds 10]

One ``tracker serve`` (one uvicorn worker, loopback) on an embedded Valkey in a
temporary directory, or on ``--url``. ``--clients`` clients hold ``GET /events`` open:
raw HTTP/1.1 on asyncio sockets, spread over ``--processes`` processes, each noting when
every event reaches it. A paced writer in this process then makes ``--rate`` TRACK SETs
per second with ``Tracker.track_set`` (what a worker's ``progress()`` does: straight to
Redis, not through the API), in turn on 100 working jobs registered after the server
started (so its event hub knows their whole tracks). Each TRACK SET's desc carries its
sequence number and the wall-clock time (us) just before the call.

The delay of one event at one client is its arrival minus that time: the write's round
trip, the hub's XREAD, the fan-out to 100 subscribers and the socket. The first second
of each round is left out (warm-up); an event a client has not got 5 s after the last
write counts as an infinite delay (shown as "late"), so percentiles cannot hide losses. Each
round has fresh clients; the table gives every round and the median of rounds.
Target: p99 < 250 ms.

Also printed: the rate the writer kept, the events delivered, the CPU the server
process used (of one core) during the writes, and the clients' CPU. ``--app
module:attribute`` serves that ASGI app with uvicorn instead, to measure a change to
the server without committing it. ``--profile SECONDS`` runs ``py-spy
record`` on the server during the last round and writes its samples (collapsed stacks)
into ``--profile-dir``.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from _common import (
    cleanup,
    embedded_valkey,
    free_port,
    machine,
    median,
    namespace,
    server_label,
    serving,
    table,
)

from tracker import Settings, Tracker

JOBS = 100
WARMUP = 1.0
DRAIN = 5.0  # seconds a client waits, after the last write, for the events still coming
START_TIMEOUT = 30.0
TARGET_P99_MS = 250.0
EVENT = re.compile(rb'"desc":"(\d+):(\d+)"')


# --- the clients (``sse.py --listen PORT``: a process holding some of them) --------------


async def listen(port: int, connections: int, out: Path) -> None:
    """Hold ``connections`` streams; after ``stop LAST SECONDS`` on stdin, wait for event
    LAST on every stream (or SECONDS), then write (client, seq, delay_us) rows to ``out``."""
    rows = array.array("q")
    ended = 0
    last_seen = [-1] * connections
    opened = 0
    all_open = asyncio.Event()

    async def stream(index: int) -> None:
        nonlocal ended, opened
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"GET /events answered {head[:200]!r}")
        opened += 1
        if opened == connections:
            all_open.set()
        pending = b""
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    ended += 1
                    return
                now_us = time.time_ns() // 1000
                pending += data
                cut = pending.rfind(b"\n\n")
                if cut < 0:
                    continue
                complete, pending = pending[:cut], pending[cut:]
                for seq, sent_us in EVENT.findall(complete):
                    number = int(seq)
                    rows.extend((index, number, now_us - int(sent_us)))
                    last_seen[index] = number
        finally:
            writer.close()

    tasks = [asyncio.create_task(stream(i)) for i in range(connections)]
    opening = asyncio.create_task(all_open.wait())
    await asyncio.wait([opening, *tasks], timeout=START_TIMEOUT, return_when="FIRST_COMPLETED")
    if not all_open.is_set():  # a stream failed (its exception ends this process) or hung
        for task in tasks:
            if task.done():
                task.result()
        raise RuntimeError(f"only {opened} of {connections} streams opened")
    print("ready", flush=True)
    command = await asyncio.to_thread(sys.stdin.readline)
    _, last, seconds = command.split()
    deadline = time.monotonic() + float(seconds)
    while min(last_seen) < int(last) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    with out.open("wb") as file:
        rows.tofile(file)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"ended": ended, "cpu": usage.ru_utime + usage.ru_stime}), flush=True)


@dataclass
class Clients:
    processes: list[subprocess.Popen[str]]
    files: list[Path]
    sizes: list[int]

    def stop(self, last: int) -> list[tuple[int, int, int]]:
        """(client, seq, delay_us) of every event every client got; clients numbered 0.."""
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(f"stop {last} {DRAIN}\n")
            process.stdin.flush()
        rows: list[tuple[int, int, int]] = []
        offset = ended = 0
        cpu = 0.0
        for process, file, size in zip(self.processes, self.files, self.sizes, strict=True):
            assert process.stdout is not None
            summary = json.loads(process.stdout.readline())
            ended += summary["ended"]
            cpu += summary["cpu"]
            process.wait(30)
            values = array.array("q")
            values.frombytes(file.read_bytes())
            rows.extend(
                (offset + values[i], values[i + 1], values[i + 2]) for i in range(0, len(values), 3)
            )
            offset += size
        print(
            f"  clients: {len(self.processes)} processes, {cpu:.1f} s of CPU in all, "
            f"{ended} streams ended early (the server drops a client 1,000 events behind)"
        )
        return rows


@contextlib.contextmanager
def clients(port: int, count: int, processes: int, scratch: Path) -> Iterator[Clients]:
    sizes = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    started: list[subprocess.Popen[str]] = []
    files = [scratch / f"client-{i}.bin" for i in range(processes)]
    try:
        for size, file in zip(sizes, files, strict=True):
            started.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--listen", str(port), "--connections",
                     str(size), "--out", str(file)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )  # fmt: skip
        for process in started:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError("a client process did not connect")
        yield Clients(started, files, sizes)
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()


# --- the server and the writer ------------------------------------------------------------


@contextlib.contextmanager
def tracker_serve(
    url: str, settings: Settings, scratch: Path, app: str | None = None
) -> Iterator[tuple[int, int]]:
    """``tracker serve`` on a free loopback port, or uvicorn serving ``app`` (an ASGI
    app as ``module:attribute``, made from the same TRACKER_* variables); (port, pid)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env.update(TRACKER_REDIS_URL=url, TRACKER_NAMESPACE=settings.namespace)
    script = shutil.which("tracker") or str(Path(sys.executable).with_name("tracker"))
    command = [script, "serve", "--port", str(port)]
    if app is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--no-access-log"]
    with (scratch / "serve.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=scratch, env=env, stdout=log, stderr=log)
    with serving(process, f"http://127.0.0.1:{port}/readyz", "tracker serve", START_TIMEOUT):
        yield port, process.pid


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write(tracker: Tracker, jids: list[str], rate: float, count: int, first: int) -> float:
    """``count`` TRACK SETs paced at ``rate`` per second (late ones go at once, so the
    schedule catches up); the rate kept."""
    start = time.perf_counter()
    for i in range(count):
        due = start + i / rate
        ahead = due - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
        tracker.track_set(jids[i % len(jids)], desc=f"{first + i}:{time.time_ns() // 1000}")
    return count / (time.perf_counter() - start)


@dataclass
class Round:
    rate: float
    expected: int
    delivered: int
    p50: float
    p90: float
    p99: float
    p999: float
    worst: float
    server_cpu: float


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1)]


def one_round(
    port: int,
    pid: int,
    tracker: Tracker,
    jids: list[str],
    options: argparse.Namespace,
    first: int,
    scratch: Path,
) -> Round:
    count = int(options.rate * options.seconds)
    warm = int(options.rate * WARMUP)
    with clients(port, options.clients, options.processes, scratch) as listening:
        cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
        kept = write(tracker, jids, options.rate, count, first)
        server_cpu = (cpu_seconds(pid) - cpu_before) / (time.perf_counter() - wall_before)
        rows = listening.stop(first + count - 1)
    measured = range(first + warm, first + count)
    delays = [d / 1000 for _, seq, d in rows if seq in measured]
    expected = options.clients * len(measured)
    delivered = len(delays)
    delays.sort()
    delays.extend([math.inf] * (expected - delivered))
    return Round(
        rate=kept,
        expected=expected,
        delivered=delivered,
        p50=percentile(delays, 0.5),
        p90=percentile(delays, 0.9),
        p99=percentile(delays, 0.99),
        p999=percentile(delays, 0.999),
        worst=delays[-1],
        server_cpu=server_cpu,
    )


@contextlib.contextmanager
def target(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with embedded_valkey() as embedded:
        yield embedded


def ms(value: float) -> str:
    return "late" if math.isinf(value) else f"{value:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="Redis for the server (default: an embedded Valkey)")
    parser.add_argument("--clients", type=int, default=100, help="streams held (default 100)")
    parser.add_argument("--processes", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--rate", type=float, default=1000, help="TRACK SETs/s (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=10, help="writing per round (10)")
    parser.add_argument("--profile", type=int, default=0, help="seconds of py-spy, last round")
    parser.add_argument("--profile-dir", default="bench-profiles", type=Path)
    parser.add_argument(
        "--app", help="serve this ASGI app (module:attribute) with uvicorn, not tracker serve"
    )
    parser.add_argument("--listen", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.listen:
        asyncio.run(listen(options.listen, options.connections, options.out))
        return 0

    print(f"machine: {machine()}")
    print(
        f"{options.rounds} rounds: {options.clients} clients on GET /events in "
        f"{options.processes} processes, {options.rate:g} TRACK SETs/s for "
        f"{options.seconds:g} s (the first {WARMUP:g} s left out)"
    )
    results: list[Round] = []
    with target(options.url) as url, tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        settings = Settings(redis_url=url, namespace=namespace())
        client = redis.Redis.from_url(url)
        label = server_label(url)
        try:
            with (
                tracker_serve(url, settings, scratch, options.app) as (port, pid),
                Tracker.from_url(url, settings) as tracker,
            ):
                jids = [f"job-{i:03d}" for i in range(JOBS)]
                for jid in jids:
                    tracker.register(jid)
                    tracker.start(jid)
                first = 0
                for i in range(options.rounds):
                    spy = None
                    if options.profile and i == options.rounds - 1:
                        spy = start_profile(pid, options.profile, options.profile_dir)
                    results.append(one_round(port, pid, tracker, jids, options, first, scratch))
                    if spy is not None:
                        spy.join()
                    first += int(options.rate * options.seconds)
        finally:
            cleanup(client, settings.namespace)
            client.close()

    rows = [
        [
            str(i + 1),
            f"{r.rate:,.0f}",
            f"{r.delivered:,} / {r.expected:,}",
            ms(r.p50),
            ms(r.p90),
            ms(r.p99),
            ms(r.p999),
            ms(r.worst),
            f"{r.server_cpu:.0%}",
        ]
        for i, r in enumerate(results)
    ]
    p99 = median([r.p99 for r in results])
    rows.append(
        ["median", f"{median([r.rate for r in results]):,.0f}", "",
         ms(median([r.p50 for r in results])), ms(median([r.p90 for r in results])),
         ms(p99), ms(median([r.p999 for r in results])),
         ms(median([r.worst for r in results])),
         f"{median([r.server_cpu for r in results]):.0%}"]
    )  # fmt: skip
    print(f"\ntracker serve on {label}; delays from the write to the client, in ms:\n")
    print(
        table(
            ["round", "writes/s", "delivered", "p50", "p90", "p99", "p99.9", "max",
             "server CPU"],
            rows,
        )
    )  # fmt: skip
    met = p99 < TARGET_P99_MS
    print(f"\ntarget: p99 < {TARGET_P99_MS:g} ms: {'yes' if met else 'NO'} ({ms(p99)} ms)")
    return 0


def start_profile(pid: int, seconds: int, out: Path) -> threading.Thread:
    """py-spy on the server for ``seconds``, in the background, from now."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out.mkdir(parents=True, exist_ok=True)
    stacks = out / "sse-server.txt"
    command = [spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "200", "--format",
               "raw", "-o", str(stacks), "--nonblocking"]  # fmt: skip
    thread = threading.Thread(
        target=subprocess.run,
        args=(command,),
        kwargs={"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL},
    )
    thread.start()
    print(f"profile: {stacks}")
    return thread


if __name__ == "__main__":
    sys.exit(main())
