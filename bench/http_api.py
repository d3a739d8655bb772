"""The HTTP API through uvicorn, against a bare Starlette endpoint served the same way.

    python bench/http_api.py [--url URL] [--rounds 5] [--seconds 5] [--connections 16]

Two servers run side by side, each one uvicorn worker on loopback started by the same
function with the same settings (uvicorn's automatic choice of event loop and HTTP
parser, printed: asyncio and h11 unless uvloop and httptools are installed, and they
are not dependencies of tracker; no access log): **tracker**, the app ``tracker serve`` runs
(``create_app``, with its event hub and maintenance), on an embedded Valkey in a
temporary directory or on ``--url``; and **bare**, a Starlette app whose
``GET /jobs/{jid}`` returns a constant JSON (a real track, so the bodies weigh the
same) and whose ``POST /jobs/{jid}/track`` reads the body and returns it too.

``wrk`` (one thread, keep-alive connections) is the load: it spends a fraction of a
core where a Python server spends a whole one. Its Lua script walks 1,000 jids, and
for POST sends ``{"percent": n, "desc": "copying files k/40"}``; every job is
registered and started first, so TRACK SET hits working jobs. Each round runs wrk on
both servers, alternately first; rates and latencies are medians of the rounds, and
"ratio" is the ratio of the median rates (what the targets are judged on), "paired"
the median of the rounds' own ratios. A round whose answers were not all 2xx fails
the run. p99 is wrk's (closed loop: each connection waits for its answer, so latency
is about connections / rate).

(Named http_api.py, not http.py: with bench/ first on sys.path, as ``python bench/X.py``
puts it, a bench/http.py would stand in for the standard library's http package in every
benchmark, and break them all.)

``--profile SECONDS`` then runs ``py-spy record`` on each server for that long under
each load and writes its samples (collapsed stacks) into ``--profile-dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

JOBS = 1000
START_TIMEOUT = 30.0
WRK_SCRIPT = """
local jobs = {jobs}
local post = {post}
local n = 0
request = function()
  n = n + 1
  local path = string.format("/jobs/job-%05d", n % jobs)
  if not post then
    return wrk.format("GET", path)
  end
  local body = string.format('{{"percent":%d,"desc":"copying files %d/40"}}', n % 101, n % 40)
  return wrk.format("POST", path .. "/track", {{["Content-Type"] = "application/json"}}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {{"requests":%d,"us":%d,"status":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"p50":%d,"p99":%d,"max":%d}}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


# --- the servers (each in a process of its own: ``http_api.py --serve KIND``) ------------


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

    return Starlette(
        routes=[
            Route("/jobs/{jid}", get, methods=["GET"]),
            Route("/jobs/{jid}/track", post, methods=["POST"]),
        ]
    )


def serve(kind: str, port: int, options: dict[str, Any]) -> None:
    """Run one server until killed: both kinds through this one call of uvicorn."""
    import uvicorn

    from tracker.web import create_app

    if kind == "tracker":
        settings = Settings(redis_url=options["url"], namespace=options["namespace"])
        app = create_app(settings)
    else:
        app = bare_app(options["body"])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        workers=1,
        log_level="warning",
        access_log=options.get("access_log", False),
    )


def uvicorn_stack() -> str:
    """The event loop and HTTP parser uvicorn's "auto" picks here: uvloop and httptools
    when installed (``uvicorn[standard]``), else asyncio and h11."""
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
    with serving(process, running.base + probe, f"the {kind} server", START_TIMEOUT):
        yield running


# --- the load -------------------------------------------------------------------------


@dataclass
class Run:
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def wrk(base: str, script: Path, seconds: int, connections: int) -> Run:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            base,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    errors = {k: result[k] for k in ("status", "connect", "read", "write", "timeout") if result[k]}
    if errors:
        raise RuntimeError(f"wrk on {base}: errors {errors} (non-2xx answers count as status)")
    return Run(
        rate=result["requests"] / (result["us"] / 1e6),
        p50_ms=result["p50"] / 1000,
        p99_ms=result["p99"] / 1000,
        max_ms=result["max"] / 1000,
    )


@dataclass
class Result:
    name: str
    target: float
    tracker: list[Run] = field(default_factory=list)
    bare: list[Run] = field(default_factory=list)

    def med(self, side: str, attribute: str) -> float:
        return median([getattr(run, attribute) for run in getattr(self, side)])

    @property
    def ratio(self) -> float:
        return self.med("tracker", "rate") / self.med("bare", "rate")

    @property
    def paired(self) -> float:
        return median([t.rate / b.rate for t, b in zip(self.tracker, self.bare, strict=True)])


def bench(
    servers: dict[str, Server],
    scripts: dict[str, Path],
    rounds: int,
    seconds: int,
    connections: int,
) -> list[Result]:
    results = [
        Result("GET /jobs/{jid} (TRACK GET)", 0.6),
        Result("POST /jobs/{jid}/track (TRACK SET)", 0.5),
    ]
    for result, script in zip(results, (scripts["get"], scripts["post"]), strict=True):
        for side in ("tracker", "bare"):  # warm up: connections, caches, the Redis pool
            wrk(servers[side].base, script, 1, connections)
        for i in range(rounds):
            order = ("tracker", "bare") if i % 2 == 0 else ("bare", "tracker")
            for side in order:
                getattr(result, side).append(wrk(servers[side].base, script, seconds, connections))
    return results


def profile(
    servers: dict[str, Server], scripts: dict[str, Path], seconds: int, connections: int, out: Path
) -> list[Path]:
    """py-spy's samples of each server under each load, as collapsed stacks (the input
    of flamegraph.pl and speedscope: one line per stack, its count last)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, script in scripts.items():
        for side, running in servers.items():
            stacks = out / f"http-{name}-{side}.txt"
            recorder = subprocess.Popen(
                [spy, "record", "-p", str(running.process.pid), "-d", str(seconds), "-r", "200",
                 "--format", "raw", "-o", str(stacks), "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)
            wrk(running.base, script, seconds, connections)
            recorder.wait(60)
            written.append(stacks)
    return written


def prepare(url: str, settings: Settings) -> dict[str, Any]:
    """Register and start every job; one track, as the bare server's constant answer."""
    with Tracker.from_url(url, settings) as tracker:
        for i in range(JOBS):
            jid = f"job-{i:05d}"
            tracker.register(jid)
            tracker.start(jid)
            tracker.track_set(jid, percent=40, desc="copying files 17/40")
        return tracker.track_get("job-00001").to_dict()


@contextlib.contextmanager
def target(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with embedded_valkey() as embedded:
        yield embedded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="Redis for the tracker server (default: an embedded Valkey)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side (default 5)")
    parser.add_argument("--seconds", type=int, default=5, help="one round (default 5)")
    parser.add_argument("--connections", type=int, default=16, help="wrk's (default 16)")
    parser.add_argument("--profile", type=int, default=0, help="seconds of py-spy per load")
    parser.add_argument("--profile-dir", default="bench-profiles", type=Path)
    parser.add_argument("--access-log", action="store_true", help="uvicorn's, on both servers")
    parser.add_argument("--serve", choices=["tracker", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(options.serve, options.port, json.load(sys.stdin))
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2

    print(f"machine: {machine()}")
    print(
        f"{options.rounds} rounds of {options.seconds} s per side and load; wrk -t1 "
        f"-c{options.connections}; uvicorn, 1 worker, {uvicorn_stack()}, "
        f"access log {'on' if options.access_log else 'off'}"
    )
    with target(options.url) as url, tempfile.TemporaryDirectory() as scratch:
        settings = Settings(redis_url=url, namespace=namespace())
        client = redis.Redis.from_url(url)
        try:
            body = prepare(url, settings)
            scripts = {}
            for name, post in (("get", "false"), ("post", "true")):
                scripts[name] = Path(scratch) / f"{name}.lua"
                scripts[name].write_text(WRK_SCRIPT.format(jobs=JOBS, post=post))
            common = {"access_log": options.access_log}
            tracker_options = {**common, "url": url, "namespace": settings.namespace}
            with (
                server("tracker", tracker_options, "/readyz") as tracker,
                server("bare", {**common, "body": body}, "/jobs/x") as bare,
            ):
                servers = {"tracker": tracker, "bare": bare}
                results = bench(
                    servers, scripts, options.rounds, options.seconds, options.connections
                )
                profiles = (
                    profile(servers, scripts, options.profile, options.connections,
                            options.profile_dir)
                    if options.profile else []
                )  # fmt: skip
        finally:
            cleanup(client, settings.namespace)
            client.close()
        label = server_label(url)

    rows = []
    for r in results:
        rows.append(
            [
                r.name,
                f"{r.med('tracker', 'rate'):,.0f}",
                f"{r.med('bare', 'rate'):,.0f}",
                f"{r.ratio:.2f}",
                f"{r.paired:.2f}",
                f">= {r.target}",
                "yes" if r.ratio >= r.target else "NO",
                f"{r.med('tracker', 'p50_ms'):.1f} / {r.med('tracker', 'p99_ms'):.1f}",
                f"{r.med('bare', 'p50_ms'):.1f} / {r.med('bare', 'p99_ms'):.1f}",
            ]
        )
    print(f"\ntracker on {label}; requests per second and latency (ms), medians of rounds:\n")
    print(
        table(
            ["load", "tracker/s", "bare/s", "ratio", "paired", "target", "met",
             "tracker p50 / p99", "bare p50 / p99"],
            rows,
        )
    )  # fmt: skip
    print("\nrounds (tracker | bare), requests/s and p99 ms:")
    for r in results:
        ours = " ".join(f"{x.rate:,.0f} ({x.p99_ms:.1f})" for x in r.tracker)
        theirs = " ".join(f"{x.rate:,.0f} ({x.p99_ms:.1f})" for x in r.bare)
        print(f"  {r.name}: {ours} | {theirs}")
    for stacks in profiles:
        print(f"profile: {stacks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
