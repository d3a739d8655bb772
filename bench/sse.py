"""Server-Sent Events: the delay from a TRACK SET to its event at each connected client.

    python bench/sse.py [--url URL] [--quick] [--clients 100] [--rate 1000] [--rounds 3]
                        [--seconds 10]

One ``tracker serve`` (one uvicorn worker, loopback) on the store measured.
``--clients`` clients hold ``GET /events`` open (raw HTTP/1.1 on asyncio sockets, in
``--processes`` processes). A paced writer here makes ``--rate`` TRACK SETs a second
with ``Tracker.track_set`` (what ``progress()`` does), in turn on 100 working jobs;
each desc carries its sequence number and the wall-clock time just before the call.
An event's delay at a client is its arrival minus that time: the write, the hub's
XREAD, the fan-out and the socket. The first second of a round is left out; an event
not delivered 5 s after the last write counts as an infinite delay ("late"), so
percentiles cannot hide losses. Each round has fresh clients. Target: p99 < 250 ms.
Also printed: the rate kept, the events delivered, the server process's CPU.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import math
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from _harness import (
    cleanup,
    cpu_seconds,
    label,
    machine,
    median,
    namespace,
    parser,
    stores,
    table,
    tracker_serve,
)

from tracker import Settings, Tracker

JOBS = 100
WARMUP = 1.0
DRAIN = 5.0  # seconds a client waits, after the last write, for the events still coming
START_TIMEOUT = 30.0
TARGET_P99_MS = 250.0
EVENT = re.compile(rb'"desc":"(\d+):(\d+)"')


async def listen(port: int, connections: int, out: Path) -> None:
    """Hold ``connections`` streams; after ``stop LAST SECONDS`` on stdin, wait for event
    LAST on every stream (or SECONDS), then write (seq, delay_us) pairs to ``out``."""
    rows, last_seen, ended, opened = array.array("q"), [-1] * connections, [0], [0]

    async def stream(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"GET /events answered {head[:200]!r}")
        opened[0] += 1
        pending = b""
        try:
            while data := await reader.read(1 << 16):
                now_us, pending = time.time_ns() // 1000, pending + data
                cut = pending.rfind(b"\n\n")
                complete, pending = (pending[:cut], pending[cut:]) if cut >= 0 else (b"", pending)
                for seq, sent_us in EVENT.findall(complete):
                    rows.extend((int(seq), now_us - int(sent_us)))
                    last_seen[index] = int(seq)
            ended[0] += 1
        finally:
            writer.close()

    tasks = [asyncio.create_task(stream(i)) for i in range(connections)]
    deadline = time.monotonic() + START_TIMEOUT
    while opened[0] < connections:
        for task in tasks:
            if task.done():
                task.result()  # a stream that failed ends this process with its error
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {opened[0]} of {connections} streams opened")
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    _, last, seconds = (await asyncio.to_thread(sys.stdin.readline)).split()
    deadline = time.monotonic() + float(seconds)
    while min(last_seen) < int(last) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out.write_bytes(rows.tobytes())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"ended": ended[0], "cpu": usage.ru_utime + usage.ru_stime}), flush=True)


@contextlib.contextmanager
def clients(
    port: int, count: int, processes: int, scratch: Path
) -> Iterator[Callable[[int], list[tuple[int, int]]]]:
    """Start the client processes; yields ``stop(last)``, which returns (seq, delay_us)
    of every event every client got."""
    sizes = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    files = [scratch / f"client-{i}.bin" for i in range(processes)]
    started = [
        subprocess.Popen([sys.executable, __file__, "--listen", str(port), "--connections",
                          str(size), "--out", str(file)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for size, file in zip(sizes, files, strict=True)
    ]  # fmt: skip

    def stop(last: int) -> list[tuple[int, int]]:
        for process in started:
            process.stdin.write(f"stop {last} {DRAIN}\n")  # type: ignore[union-attr]
            process.stdin.flush()  # type: ignore[union-attr]
        summaries = [json.loads(process.stdout.readline()) for process in started]  # type: ignore[union-attr]
        values = array.array("q")
        for file in files:
            values.frombytes(file.read_bytes())
        print(f"  clients: {processes} processes, {sum(s['cpu'] for s in summaries):.1f} s of "
              f"CPU, {sum(s['ended'] for s in summaries)} streams ended early (the server "
              "drops a client 1,000 events behind)")  # fmt: skip
        return list(zip(values[::2], values[1::2], strict=True))

    try:
        for process in started:
            if process.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                raise RuntimeError("a client process did not connect")
        yield stop
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait()


def write(tracker: Tracker, jids: list[str], rate: float, count: int, first: int) -> float:
    """``count`` TRACK SETs paced at ``rate`` per second (late ones go at once, so the
    schedule catches up); the rate kept."""
    start = time.perf_counter()
    for i in range(count):
        time.sleep(max(0.0, start + i / rate - time.perf_counter()))
        tracker.track_set(jids[i % len(jids)], desc=f"{first + i}:{time.time_ns() // 1000}")
    return count / (time.perf_counter() - start)


@dataclass
class Round:
    rate: float
    expected: int
    delivered: int
    delays: dict[str, float]  # p50, p90, p99, p99.9, max (ms)
    server_cpu: float


def one_round(port: int, pid: int, tracker: Tracker, jids: list[str],
              options: argparse.Namespace, first: int, scratch: Path) -> Round:  # fmt: skip
    count = int(options.rate * options.seconds)
    warm = int(options.rate * WARMUP)
    with clients(port, options.clients, options.processes, scratch) as stop:
        cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
        kept = write(tracker, jids, options.rate, count, first)
        server_cpu = (cpu_seconds(pid) - cpu_before) / (time.perf_counter() - wall_before)
        rows = stop(first + count - 1)
    measured = range(first + warm, first + count)
    delays = sorted(d / 1000 for seq, d in rows if seq in measured)
    expected, delivered = options.clients * len(measured), len(delays)
    delays.extend([math.inf] * (expected - delivered))  # a lost event: an infinite delay
    at = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999, "max": 1.0}
    picked = {k: delays[min(len(delays), math.ceil(q * len(delays))) - 1] for k, q in at.items()}
    return Round(kept, expected, delivered, picked, server_cpu)


def ms(value: float) -> str:
    return "late" if math.isinf(value) else f"{value:.1f}"


def measure(url: str, options: argparse.Namespace) -> list[Round]:
    settings = Settings(redis_url=url, namespace=namespace())
    with (
        tempfile.TemporaryDirectory() as directory,
        tracker_serve(url, settings.namespace, Path(directory)) as (port, pid),
        Tracker.from_url(url, settings) as tracker,
    ):
        try:
            jids = [f"job-{i:03d}" for i in range(JOBS)]
            for jid in jids:
                tracker.register(jid)
                tracker.start(jid)
            per_round = int(options.rate * options.seconds)
            return [one_round(port, pid, tracker, jids, options, i * per_round, Path(directory))
                    for i in range(options.rounds)]  # fmt: skip
        finally:
            cleanup(tracker.client, settings.namespace)


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--clients", type=int, default=100, help="streams held (default 100)")
    options.add_argument("--processes", type=int, default=2, help="client processes (default 2)")
    options.add_argument("--rate", type=float, default=1000, help="TRACK SETs/s (default 1000)")
    options.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    options.add_argument("--seconds", type=float, default=10, help="writing per round (10)")
    options.add_argument("--listen", type=int, help=argparse.SUPPRESS)
    options.add_argument("--connections", type=int, help=argparse.SUPPRESS)
    options.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = options.parse_args()
    if args.listen:
        asyncio.run(listen(args.listen, args.connections, args.out))
        return 0
    if args.quick:
        args.rounds, args.seconds = min(args.rounds, 3), 4
    print(f"machine: {machine()}")
    print(f"{args.rounds} rounds: {args.clients} clients on GET /events in {args.processes} "
          f"processes, {args.rate:g} TRACK SETs/s for {args.seconds:g} s (the first "
          f"{WARMUP:g} s left out)")  # fmt: skip
    with stores(args.url) as urls:
        for url in urls:
            results = measure(url, args)
            rows = [[str(i + 1), f"{r.rate:,.0f}", f"{r.delivered:,} / {r.expected:,}",
                     *(ms(v) for v in r.delays.values()), f"{r.server_cpu:.0%}"]
                    for i, r in enumerate(results)]  # fmt: skip
            p99 = median([r.delays["p99"] for r in results])
            print(f"\ntracker serve on {label(url)}; delays from the write to the client, ms:\n")
            table(["round", "writes/s", "delivered", "p50", "p90", "p99", "p99.9", "max",
                   "server CPU"], rows)  # fmt: skip
            met = "yes" if p99 < TARGET_P99_MS else "NO"
            print(f"\ntarget: p99 < {TARGET_P99_MS:g} ms: {met} (median of rounds {ms(p99)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
