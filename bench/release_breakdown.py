"""Where the server time of a release goes: tracker's library against copies with a part cut.

    python bench/release_breakdown.py [--url URL ...] [--quick] [--n 3000] [--rounds 7]

The companion of ``fanout.py``. Each round releases N dependents of one job (as
fanout.py does: registered with a payload, then ``Tracker.success`` of the root)
through tracker's function library as it is and through each variant: a copy of
the library's source with one part taken out, loaded under its own name (edited as
text here; tracker's files are not touched). Reported: the FCALL time per released
dependent (INFO commandstats; median and range of the rounds, the order rotating)
and its difference from the library as it is. Variants:

  hand-off read, not run   the RQ hand-off's stored commands are read (LRANGE), not run
  no hand-off              dispatch() neither reads nor runs the hand-off (nor
                           schedules its timeout)
  no event                 add_event() XADDs no event of a state change (a release's)
  without payload          the library as it is, dependents registered without a
                           payload: no hand-off to replay

A variant whose text is no longer in tracker's Lua is skipped, and said so. Then two
micro measurements, in a small library of the run's own: one ``redis.call`` from Lua
(HINCRBY, against the command's own time), and reading one job's stored hand-off.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import redis
from _harness import (
    cleanup,
    cleanup_rq,
    command_stats,
    label,
    machine,
    median,
    namespace,
    parser,
    server_usec,
    spread,
    stores,
    table,
    tag,
)
from _internals import drop_library, library_source, rq_handoff, use_library, variant_library
from fanout import PAYLOAD, register_dependents

from tracker import Settings, Tracker

Edit = Callable[[str], str]

REPLAY = "  replay(stored, false)\n"
DISPATCH = "  if not job.payload then return true end\n"
XADD = (
    "redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_KEPT, '*', 'jid', jid, 'w', was,\n"
    "      unpack(track))"
)
VARIANTS: dict[str, tuple[str, str]] = {
    "hand-off read, not run": (REPLAY, ""),
    "no hand-off": (DISPATCH, "  do return true end\n"),
    "no event": (XADD, ""),
}
MICRO = """#!lua name={name}
redis.register_function('{name}_call', function(KEYS, ARGV)
  for i = 1, tonumber(ARGV[1]) do redis.call('HINCRBY', KEYS[1], 'f', 1) end
  return 1
end)
redis.register_function('{name}_read', function(KEYS, ARGV)
  for i = 1, tonumber(ARGV[1]) do redis.call('LRANGE', KEYS[2], 0, -1) end
  return 1
end)
"""
MICRO_LOOPS = 10_000


def release_us(url: str, library: object, n: int, payload: bool) -> tuple[float, int]:
    """FCALL us per dependent of releasing ``n`` through ``library`` (None: tracker's
    own), and how many jobs reached the RQ queue."""
    run = tag("rb")
    client = redis.Redis.from_url(url)
    tracker = Tracker(client, Settings(namespace=namespace()))
    if library is not None:
        use_library(tracker, library)  # type: ignore[arg-type]
    try:
        register_dependents(tracker, run, [f"{run}-{i:06d}" for i in range(n)], payload)
        with server_usec(client) as fcall:
            tracker.success("root")
        return fcall[1] / n, int(client.llen(f"rq:queue:{run}"))
    finally:
        cleanup(client, tracker.settings.namespace)
        cleanup_rq(client, run)
        client.close()


def releases(url: str, n: int, rounds: int) -> dict[str, list[float]]:
    source = library_source()
    cases: list[tuple[str, object, bool]] = [("as is", None, True)]
    for name, (text, replacement) in VARIANTS.items():
        if text not in source:
            print(f"  variant {name!r} skipped: tracker's Lua no longer holds {text.strip()!r}")
            continue
        edit: Edit = lambda s, t=text, r=replacement: s.replace(t, r)  # noqa: E731
        cases.append((name, variant_library(edit), True))
    cases.append(("without payload", None, False))
    results: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    client = redis.Redis.from_url(url)
    try:
        release_us(url, None, min(n, 500), True)  # warm up
        for r in range(rounds):
            for name, library, payload in cases[r % len(cases) :] + cases[: r % len(cases)]:
                us, enqueued = release_us(url, library, n, payload)
                assert name != "as is" or enqueued == n, (enqueued, n)
                results[name].append(us)
        return results
    finally:
        for _, library, _ in cases:
            if library is not None:
                drop_library(client, library)  # type: ignore[arg-type]
        client.close()


def micro(url: str) -> dict[str, float]:
    """us per iteration of each micro function, medians of 5."""
    name = "b" + tag()
    client = redis.Redis.from_url(url)
    keys = [f"{name}:counter", f"{name}:handoff"]
    try:
        client.function_load(MICRO.format(name=name))
        client.rpush(keys[1], *rq_handoff("job-0000001", "queue", PAYLOAD, f"{name}:s").commands)
        timings: dict[str, list[float]] = {}
        for _ in range(5):
            for function in ("call", "read"):
                before = command_stats(client)
                client.fcall(f"{name}_{function}", 2, *keys, MICRO_LOOPS)
                after = command_stats(client)
                usec = after["fcall"][1] - before["fcall"][1]
                timings.setdefault(function, []).append(usec / MICRO_LOOPS)
                if function == "call":
                    calls = after["hincrby"][0] - before.get("hincrby", (0, 0))[0]
                    usec = after["hincrby"][1] - before.get("hincrby", (0, 0))[1]
                    timings.setdefault("hincrby", []).append(usec / calls)
        return {function: median(values) for function, values in timings.items()}
    finally:
        client.function_delete(name)
        client.delete(*keys)
        client.close()


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--n", type=int, default=3000, help="dependents per release (3,000)")
    options.add_argument("--rounds", type=int, default=7, help="rounds (default 7)")
    args = options.parse_args()
    if args.quick:
        args.n, args.rounds = 1000, 3
    print(f"machine: {machine()}; N={args.n:,}, {args.rounds} rounds")
    with stores(args.url) as urls:
        for url in urls:
            results = releases(url, args.n, args.rounds)
            base = median(results["as is"])
            rows = [[name, spread(values, ".1f"),
                     "" if name == "as is" else f"{median(values) - base:+.1f}"]
                    for name, values in results.items()]  # fmt: skip
            print(f"\n{label(url)}: FCALL us per released dependent, median (range):\n")
            table(["library", "us", "change"], rows)
            costs = micro(url)
            print(f"\n  one redis.call of HINCRBY from Lua: {costs['call']:.2f} us, of which the "
                  f"command {costs['hincrby']:.2f} us; reading one job's hand-off (LRANGE) "
                  f"{costs['read']:.2f} us", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
