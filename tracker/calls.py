"""The call protocol: operations as plans, the script calls and reads they need,
without doing I/O.

A plan is a generator that yields :class:`Call` (run one script) or :class:`Read`
(run plain read commands in one pipeline), receives each reply, and returns the
operation's result. The clients in client.py drive every plan, :class:`Tracker`
with a blocking Redis client and :class:`AsyncTracker` with an asyncio one, so each
operation is written once: in lifecycle.py, graph.py, listing.py, events.py, upkeep.py and
workers.py, by what it does.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from . import records, scripts
from .keys import Keys
from .model import Track
from .settings import Settings

T = TypeVar("T")
EVENTS_KEPT = 10_000
#: Most commits (a queue hand-off counts 1 more) one call may make through the graph,
#: so that a call stretched a few times by a loaded machine still ends within a few
#: ms; the rest waits as fan-out work (BENCHMARKS.md, "Fan-out", measures the choice).
GRAPH_BUDGET = 60


@dataclass(frozen=True, slots=True)
class Call:
    script: str
    keys: list[str]
    args: list[Any]


@dataclass(frozen=True, slots=True)
class Read:
    commands: list[tuple[str, tuple[Any, ...]]]


Plan = Generator[Call | Read, Any, T]


class PlanBase:
    """What every plan needs: the namespace's keys, the settings, the clock."""

    def __init__(self, settings: Settings, clock: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self.keys = Keys(settings.namespace)
        self.clock = clock
        self._fixed = [
            str(settings.ttl * 1000),
            str(settings.pending_ttl * 1000),
            str(settings.done_ttl * 1000),
            EVENTS_KEPT,
            self.keys.job_prefix_len,
            "1" if settings.propagate_failures else "0",
            GRAPH_BUDGET,
        ]

    def _head(self) -> list[Any]:
        """The ARGV every script starts with (see lua/_common.lua)."""
        now = "" if self.clock is None else str(int(self.clock() * 1000))
        return [now, *self._fixed]

    def _hot_head(self) -> list[Any]:
        """The ARGV of the hot layout (TRACK SET), shorter than :meth:`_head`."""
        now = "" if self.clock is None else str(int(self.clock() * 1000))
        return [now, *self._fixed[:2], EVENTS_KEPT, self.keys.job_prefix_len]

    def _now_ms(self, server_time: tuple[int, int]) -> int:
        if self.clock is not None:
            return int(self.clock() * 1000)
        return int(server_time[0]) * 1000 + int(server_time[1]) // 1000

    def _job_call(self, script: str, jid: str, *args: Any) -> Call:
        return Call(script, self.keys.for_job(jid), [*self._head(), jid, *args])

    def _transition(self, script: str, jid: str, *args: Any) -> Plan[Track]:
        reply = yield self._job_call(script, jid, *args)
        flat, more = scripts.outcome(reply, jid)
        if more:
            yield from self.drain()
        return self.decode(jid, flat)

    def drain(self) -> Plan[int]:
        """Finish fan-out work left by a call; defined in upkeep.py."""
        raise NotImplementedError

    def decode(self, jid: str, fields: Iterable[Any] | dict[bytes, bytes]) -> Track:
        """A Track from a hash (HGETALL's dict, or a script's flat field/value list)."""
        return records.decode_track(self.keys, jid, fields)
