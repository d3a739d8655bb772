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

import hashlib
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from . import records, scripts
from .interface import CONSTANTS, HEAD, OPERATIONS
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
class Constants:
    """A namespace's constants as scripts read them (interface.py): its shared keys and
    settings, and the token that names them once a server holds them."""

    token: str
    keys: tuple[str, ...]
    args: tuple[Any, ...]

    @classmethod
    def of(cls, keys: Iterable[str], args: Iterable[Any]) -> Constants:
        keys, args = tuple(keys), tuple(args)
        digest = hashlib.sha1(repr((keys, args)).encode()).hexdigest()[:16]
        return cls(digest, keys, args)


@dataclass(frozen=True, slots=True)
class Call:
    """One script call: its own keys and arguments, after a head that names the
    namespace's constants by their token, unless it carries them (:meth:`carrying`)."""

    script: str
    keys: list[str]
    args: list[Any]
    constants: Constants

    @property
    def own_args(self) -> list[Any]:
        """The arguments of the operation itself: after the head, before any constants."""
        end = len(self.args) - (0 if self.args[0] == self.constants.token else len(CONSTANTS))
        return self.args[len(HEAD) : end]

    def carrying(self) -> Call:
        """This call with its constants appended, for a server that does not hold them."""
        if self.args[0] != self.constants.token:
            return self  # it already carries them
        return Call(
            self.script,
            [*self.keys, *self.constants.keys],
            ["=" + self.constants.token, *self.args[1:], *self.constants.args],
            self.constants,
        )


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
        settings_of = {
            "TTL": settings.ttl * 1000,
            "PENDING_TTL": settings.pending_ttl * 1000,
            "DONE_TTL": settings.done_ttl * 1000,
            "EVENTS_KEPT": EVENTS_KEPT,
            "JOB_PREFIX_LEN": self.keys.job_prefix_len,
            "PROPAGATE": "1" if settings.propagate_failures else "0",
            "BUDGET": GRAPH_BUDGET,
        }
        self.constants = Constants.of(
            self.keys.shared, (settings_of[name] for name, _ in CONSTANTS)
        )

    def _head(self) -> list[Any]:
        """The ARGV every script starts with (interface.HEAD)."""
        now = "" if self.clock is None else str(int(self.clock() * 1000))
        return [self.constants.token, now]

    def _call(self, script: str, jid: str | None = None, /, **values: Any) -> Call:
        """The call of ``script`` with its declared keys and arguments (interface.py) by
        name. Keys not given are built from their names, a job's for ``jid``; so is the
        argument ``jid``. A name missing or unknown raises InterfaceError."""
        operation = OPERATIONS[script]
        for name in operation.keys:
            if name not in values:
                values[name] = self.keys.named(name, jid)
        if jid is not None and "jid" in operation.names and "jid" not in values:
            values["jid"] = jid
        keys, args = operation.bind(self._head(), values)
        call = Call(script, keys, args, self.constants)
        return call if keys else call.carrying()  # on a cluster, its keys route a call

    def _now_ms(self, server_time: tuple[int, int]) -> int:
        if self.clock is not None:
            return int(self.clock() * 1000)
        return int(server_time[0]) * 1000 + int(server_time[1]) // 1000

    def _transition(self, script: str, jid: str, **values: Any) -> Plan[Track]:
        reply = yield self._call(script, jid, **values)
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
