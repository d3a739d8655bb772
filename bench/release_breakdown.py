"""Where the server time of a release goes: tracker's library against copies with a part cut.

    python bench/release_breakdown.py [--url URL ...] [--n 3000] [--rounds 7]

The companion of ``fanout.py``. Each round releases N dependents of one job (as
fanout.py does: registered with a payload, then ``Tracker.success`` of the root)
once through tracker's own function library and once through each variant: a
copy of the library's source with one part taken out, loaded under its own name
(the source is edited as text here; tracker's files are not touched). Reported is
the FCALL time per released dependent from INFO commandstats (median of the
rounds; variants take turns going first), and its difference from the library as
it is. Variants:

  hand-off read, not run     the RQ hand-off's stored commands are read (LRANGE),
                             but not run
  no hand-off                the hand-off is neither read nor run
  no event                   commit() neither builds the track's field list nor
                             XADDs it to the event stream (its reply is empty)
  without payload            the library as it is; dependents registered with no
                             payload, so there is no hand-off to replay

Then two micro measurements, in a small library of this script's own: the cost
of one ``redis.call`` from Lua (HINCRBY, against the command's own time), and of
reading one job's stored hand-off (LRANGE of its version, 4 commands and the undo, 22
elements). The source edits assert that what they remove is there:
when tracker's Lua changes, this script says so.

Servers: a private ``redis-server`` on a unix socket and an embedded Valkey,
started here (a variant library is loaded on each, and dropped after); with
``--url``, the given servers (the variant libraries are deleted at the end).
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import Callable

import redis
from _common import (
    cleanup,
    cleanup_matching,
    command_delta,
    command_stats,
    machine,
    median,
    namespace,
    pipelined,
    private_servers,
    server_label,
    table,
    url_parser,
)
from fanout import PAYLOAD, tag

from tracker import Settings, Tracker, scripts
from tracker.handoff import rq_handoff

BATCH = 1000
Edit = Callable[[str], str]


def remove(text: str, replacement: str = "") -> Edit:
    def edit(source: str) -> str:
        assert text in source, f"tracker's Lua changed: {text!r} is gone"
        return source.replace(text, replacement)

    return edit


VARIANTS: dict[str, Edit] = {
    "hand-off read, not run": remove("  replay(stored, false)\n"),
    "no hand-off": remove(
        "  local stored = redis.call('LRANGE', job.payload, 0, -1)\n"
        "  local wrong = unreadable(stored)\n"
        "  if wrong then\n"
        "    fail_job(job, 'the hand-off to queue ' .. job.h.q .. ' is unreadable: ' .. wrong,\n"
        "      'HandoffUnreadable', false)\n"
        "    return false\n"
        "  end\n"
        "  SPENT = SPENT + HANDOFF_COST\n"
        "  replay(stored, false)\n",
        "  SPENT = SPENT + HANDOFF_COST\n",
    ),
    "no event": remove(
        "  local track, size = track_of(h)\n"
        "  if streamed then\n"
        "    for i = 1, #streamed do track[size + i] = streamed[i] end\n"
        "  end\n"
        "  redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_KEPT, '*', 'jid', job.jid,"
        " 'w', old_state or '',\n"
        "    unpack(track))\n"
        "  for i = #track, size + 1, -1 do track[i] = nil end\n",
        "  local track = {}\n",
    ),
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


def variant_library(edit: Edit) -> scripts.Library:
    """tracker's library with ``edit`` applied, under names of its own."""
    library = scripts.Library()
    source = edit(library.source)
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    library.version, library.source = digest, source.replace(library.version, digest)
    library.names = {op: f"tracker_{digest}_{op}" for op in scripts.OPERATIONS}
    return library


def release_us(url: str, library: scripts.Library, n: int, payload: bool) -> tuple[float, int]:
    """FCALL time per dependent of releasing ``n`` dependents through ``library``, and
    how many jobs reached the RQ queue."""
    run = tag()
    client = redis.Redis.from_url(url)
    tracker = Tracker(client, Settings(namespace=namespace()))
    tracker._library = library
    try:
        tracker.register("root", queue=run)
        jids = [f"{run}-{i:06d}" for i in range(n)]
        for first in range(0, n, BATCH):
            pipelined(
                tracker,
                (
                    tracker.plans.register(
                        jid, queue=run, prerequisites=["root"], payload=PAYLOAD if payload else None
                    )
                    for jid in jids[first : first + BATCH]
                ),
            )
        tracker.start("root")
        before = command_stats(client)
        tracker.success("root")
        _, usec = command_delta(before, command_stats(client))["fcall"]
        return usec / n, int(client.llen(f"rq:queue:{run}"))
    finally:
        cleanup(client, tracker.settings.namespace)
        cleanup_matching(client, run)
        client.close()


def releases(url: str, n: int, rounds: int) -> dict[str, list[float]]:
    libraries = {"as is": scripts.Library()}
    libraries.update({name: variant_library(edit) for name, edit in VARIANTS.items()})
    cases: list[tuple[str, scripts.Library, bool]] = [
        *((name, library, True) for name, library in libraries.items()),
        ("without payload", libraries["as is"], False),
    ]
    results: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    client = redis.Redis.from_url(url)
    try:
        release_us(url, libraries["as is"], min(n, 500), True)  # warm up
        for r in range(rounds):
            turn = cases[r % len(cases) :] + cases[: r % len(cases)]
            for name, library, payload in turn:
                us, enqueued = release_us(url, library, n, payload)
                assert name != "as is" or enqueued == n, (enqueued, n)
                results[name].append(us)
        return results
    finally:
        for name, library in libraries.items():
            if name != "as is":
                with contextlib.suppress(redis.exceptions.ResponseError):
                    client.function_delete(f"tracker_{library.version}")
        client.close()


def micro(url: str) -> dict[str, float]:
    """us per iteration of each micro function, medians of 5."""
    name = "b" + tag()
    client = redis.Redis.from_url(url)
    keys = [f"{name}:counter", f"{name}:handoff"]
    try:
        client.function_load(MICRO.format(name=name))
        handoff = rq_handoff("job-0000001", "queue", PAYLOAD, f"{name}:staged")
        client.rpush(keys[1], *handoff.commands)
        timings: dict[str, list[float]] = {}
        for _ in range(5):
            for function in ("call", "read"):
                before = command_stats(client)
                client.fcall(f"{name}_{function}", 2, *keys, MICRO_LOOPS)
                delta = command_delta(before, command_stats(client))
                timings.setdefault(function, []).append(delta["fcall"][1] / MICRO_LOOPS)
                if function == "call":
                    calls, usec = delta["hincrby"]
                    timings.setdefault("hincrby", []).append(usec / calls)
        return {function: median(values) for function, values in timings.items()}
    finally:
        with contextlib.suppress(redis.exceptions.ResponseError):
            client.function_delete(name)
        client.delete(*keys)
        client.close()


def main() -> int:
    parser = url_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="dependents per release (3,000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (default 7)")
    options = parser.parse_args()
    print(f"machine: {machine()}; N={options.n:,}, {options.rounds} rounds")
    with private_servers(options.url) as servers:
        for url, _ in servers:
            label = server_label(url)
            results = releases(url, options.n, options.rounds)
            base = median(results["as is"])
            rows = [
                [
                    name,
                    f"{median(values):.1f}",
                    "" if name == "as is" else f"{median(values) - base:+.1f}",
                    " ".join(f"{v:.0f}" for v in values),
                ]
                for name, values in results.items()
            ]
            print(f"\n{label}: FCALL us per released dependent (median of rounds):\n")
            print(table(["library", "us", "change", "rounds"], rows))
            costs = micro(url)
            print(
                f"\n  one redis.call of HINCRBY from Lua: {costs['call']:.2f} us, of which the "
                f"command {costs['hincrby']:.2f} us; reading one job's hand-off (LRANGE) "
                f"{costs['read']:.2f} us",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
