"""The HTTP API through uvicorn, against a bare Starlette endpoint served the same way.

    python bench/http_api.py [--url URL] [--quick] [--rounds 5] [--seconds 5] [--connections 16]

Two servers side by side, on loopback sockets made as ``tracker serve``'s, no access
log: **tracker** as ``tracker serve [--workers N]`` serves it, on the store measured;
**bare**, a Starlette app whose ``GET /jobs/{jid}`` returns a constant track and whose
``POST /jobs/{jid}/track`` returns it after reading the body. ``wrk`` (one thread,
keep-alive) walks 1,000 working jobs; POST sends ``{"percent": n, "desc": "..."}``.
Each round runs wrk on both, alternately first; the ratio is the median of the
rounds' rate ratios, with their range; a non-2xx answer fails the run. p99 is wrk's
(closed loop). Targets (issue 13): GET >= 0.7, POST >= 0.6 of bare, p99 < 3x bare's.
Not bench/http.py: it would shadow the standard library's http for every benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from _harness import (
    cleanup,
    free_port,
    label,
    machine,
    median,
    namespace,
    paired,
    parser,
    ratios,
    serving,
    stores,
    table,
    verdict,
)
from _internals import tcp_listener

from tracker import Settings, Tracker

JOBS = 1000
START_TIMEOUT = 30.0
WRK_SCRIPT = Path(__file__).with_name("http_api.lua")


def bare_app(body: dict[str, Any]) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def get(request: Request) -> Response:
        return JSONResponse(body)

    async def post(request: Request) -> Response:
        await request.body()
        return JSONResponse(body)

    routes = [Route("/jobs/{jid}", get, methods=["GET"]),
              Route("/jobs/{jid}/track", post, methods=["POST"])]  # fmt: skip
    return Starlette(routes=routes)


def serve(kind: str, port: int, options: dict[str, Any]) -> None:
    """Run one server until killed (tracker as ``tracker serve --workers N`` runs it)."""
    import uvicorn

    from tracker.web import create_app
    from tracker.web.serving import quiet_collector, serve_processes

    listener = tcp_listener(port)

    def one(app: Any) -> None:
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        if kind == "tracker":
            quiet_collector()
        uvicorn.Server(config).run(sockets=[listener])

    if kind == "bare":
        one(bare_app(options["body"]))
        return
    settings = Settings(redis_url=options["url"], namespace=options["namespace"])
    serve_processes(options.get("workers", 1), lambda: one(create_app(settings)))


def uvicorn_stack() -> str:
    """The loop and HTTP parser uvicorn's "auto" picks: uvloop, httptools when installed."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"loop {loop}, http {http}"


@dataclass
class Server:
    kind: str
    process: subprocess.Popen[bytes]
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def server(kind: str, options: dict[str, Any], probe: str) -> Iterator[Server]:
    """``kind``'s server in a process of its own, answering ``probe`` with a 2xx or 404."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--port", str(port)],
        stdin=subprocess.PIPE,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(options).encode())
    process.stdin.close()
    running = Server(kind, process, port)
    with serving(process, running.base + probe, START_TIMEOUT):
        yield running


@dataclass
class Run:
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def wrk(base: str, load: str, seconds: int, connections: int) -> Run:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s",
               str(WRK_SCRIPT), base, "--", str(JOBS), load]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    errors = {k: result[k] for k in ("status", "connect", "read", "write", "timeout") if result[k]}
    if errors:
        raise RuntimeError(f"wrk on {base}: errors {errors} (non-2xx answers count as status)")
    us = (result[k] / 1000 for k in ("p50", "p99", "max"))
    return Run(result["requests"] / (result["us"] / 1e6), *us)


@dataclass
class Result:
    name: str
    target: float
    tracker: list[Run] = field(default_factory=list)
    bare: list[Run] = field(default_factory=list)

    def med(self, side: str, attribute: str) -> float:
        return median([getattr(run, attribute) for run in getattr(self, side)])

    def rates(self) -> tuple[list[float], list[float]]:
        return [r.rate for r in self.tracker], [r.rate for r in self.bare]


def bench(servers: dict[str, Server], rounds: int, seconds: int, connections: int) -> list[Result]:
    results = [Result("GET /jobs/{jid} (TRACK GET)", 0.7),
               Result("POST /jobs/{jid}/track (TRACK SET)", 0.6)]  # fmt: skip
    for result, script in zip(results, ("get", "post"), strict=True):
        for side in ("tracker", "bare"):  # warm up: connections, caches, the Redis pool
            wrk(servers[side].base, script, 1, connections)
        for i in range(rounds):
            order = ("tracker", "bare") if i % 2 == 0 else ("bare", "tracker")
            for side in order:
                getattr(result, side).append(wrk(servers[side].base, script, seconds, connections))
    return results


def prepare(url: str, settings: Settings) -> dict[str, Any]:
    """Register and start every job; one track, as the bare server's constant answer."""
    with Tracker.from_url(url, settings) as tracker:
        for i in range(JOBS):
            jid = f"job-{i:05d}"
            tracker.register(jid)
            tracker.start(jid)
            tracker.track_set(jid, percent=40, desc="copying files 17/40")
        return tracker.track_get("job-00001").to_dict()


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--rounds", type=int, default=5, help="rounds per side (default 5)")
    options.add_argument("--seconds", type=int, default=5, help="one round (default 5)")
    options.add_argument("--connections", type=int, default=16, help="wrk's (default 16)")
    options.add_argument("--workers", type=int, default=1, help="tracker's processes (default 1)")
    options.add_argument("--serve", choices=["tracker", "bare"], help=argparse.SUPPRESS)
    options.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = options.parse_args()
    if args.serve:
        serve(args.serve, args.port, json.load(sys.stdin))
        return 0
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    if args.quick:
        args.rounds, args.seconds = 3, 3
    print(f"machine: {machine()}")
    print(f"{args.rounds} rounds of {args.seconds} s per side and load; wrk -t1 "
          f"-c{args.connections}; uvicorn, {uvicorn_stack()}; tracker {args.workers} "
          f"process(es), bare 1")  # fmt: skip
    with stores(args.url) as urls:
        for url in urls:
            results = measure(url, args)
            rows = []
            for r in results:
                ours, theirs = r.rates()
                p99 = r.med("tracker", "p99_ms") / r.med("bare", "p99_ms")
                rows.append([r.name, f"{median(ours):,.0f}", f"{median(theirs):,.0f}",
                             paired(ours, theirs), f">= {r.target}",
                             verdict(median(ratios(ours, theirs)) >= r.target),
                             *(f"{r.med(s, 'p50_ms'):.1f} / {r.med(s, 'p99_ms'):.1f}"
                               for s in ("tracker", "bare")),
                             f"{p99:.1f}x", verdict(p99 < 3)])  # fmt: skip
            print(f"\ntracker on {label(url)}; requests/s and latency (ms), medians of rounds:\n")
            table(["load", "tracker/s", "bare/s", "ratio (range)", "target", "met",
                   "tracker p50 / p99", "bare p50 / p99", "p99 / bare's (< 3x)", "met"],
                  rows)  # fmt: skip
    return 0


def measure(url: str, args: argparse.Namespace) -> list[Result]:
    settings = Settings(redis_url=url, namespace=namespace())
    client = redis.Redis.from_url(url)
    try:
        body = prepare(url, settings)
        with (
            server(
                "tracker",
                {"url": url, "namespace": settings.namespace, "workers": args.workers},
                "/readyz",
            ) as ours,
            server("bare", {"body": body}, "/jobs/x") as bare,
        ):
            servers = {"tracker": ours, "bare": bare}
            return bench(servers, args.rounds, args.seconds, args.connections)
    finally:
        cleanup(client, settings.namespace)
        client.close()


if __name__ == "__main__":
    sys.exit(main())
