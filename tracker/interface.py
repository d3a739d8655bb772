"""The interface of every script: the keys and arguments each Lua function takes, by name.

One declaration per operation is the contract between Python and Lua. scripts.py
generates each function's prelude from it (``local JOB = KEYS[14]``, ``local ATTEMPT =
ARGV[10]``, the tables of a variadic tail), so a ``.lua`` file names what it is given and
never counts positions; and :meth:`Operation.bind` builds the ``KEYS`` and ``ARGV`` of a
call from keyword arguments checked against it, so a misspelt, missing or extra name
raises where the call is built. Adding an argument is one name here, plus the code that
passes it and the code that uses it.

The layout of a call, which nothing outside this module, calls.py and the generated
prelude depends on:

- ``KEYS``: the operation's ``keys``, then the entries of each of its key lists (each
  entry a group of ``members`` keys);
- ``ARGV``: :data:`HEAD` (the token naming the namespace's constants, and the time), the
  operation's ``args``, how many entries each list has (key lists first), then the
  entries of each argument list.

The namespace's constants (:data:`SHARED_KEYS` and :data:`CONSTANTS`: its event stream,
state indexes and settings) are the same in every call, so a call names them by a token
(a digest of them) instead of sending them: the library binds a token the first time a
call carries its constants, appended to ``KEYS`` and ``ARGV`` with the token written
``=token``, and every later call names it alone. A server that does not hold the token
(it restarted, or reloaded the library) answers ``UNBOUND``, and the client sends the
same call again, carrying them (calls.py, scripts.py). A call with no key of its own
always carries them: on a cluster, its keys are what route it.

A name is a Python identifier; Lua binds it upper-cased (``reserve_for`` is
``RESERVE_FOR``), a list as a table of values or, with members, of tables
(``PREREQUISITES[i].dependents``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .model import STORED_STATES

#: The namespace's keys every script may write, in this order after a call's own keys in a
#: call that carries its constants: the Lua variable each is bound to (declared in
#: lua/_common.lua), and its name in keys.py (:meth:`Keys.named`).
SHARED_KEYS: tuple[tuple[str, str], ...] = (
    ("EVENTS", "events"),
    ("RESERVED", "reservations"),
    ("QUEUES", "queues"),
    *((f"STATE_KEY.{state.value}", f"state:{state.value}") for state in STORED_STATES),
    ("SCHEDULE", "schedule"),
    ("FANOUT", "fanout"),
)

#: The namespace's settings every script reads, in this order after the shared keys'
#: in a call that carries its constants: the Lua variable each is bound to (declared in
#: lua/_common.lua), and how its value is read: a number, or a flag ('1' is true).
CONSTANTS: tuple[tuple[str, str], ...] = (
    ("TTL", "number"),  # ms
    ("PENDING_TTL", "number"),  # ms
    ("DONE_TTL", "number"),  # ms
    ("EVENTS_KEPT", "number"),  # the event stream's approximate cap
    ("JOB_PREFIX_LEN", "number"),  # length of a job key's prefix: jid_of() reads a jid off it
    ("PROPAGATE", "flag"),  # failures propagate to dependents
    ("BUDGET", "number"),  # most commits one call may make through the graph (_graph.lua)
)

#: The arguments every call starts with: the token naming the namespace's constants
#: (``=`` before it when the call carries them), and NOW (ms, or '' for the server's TIME).
HEAD: tuple[str, ...] = ("TOKEN", "NOW")


class InterfaceError(TypeError):
    """A call built against its operation's declaration with a name too many or too few."""


@dataclass(frozen=True, slots=True)
class Many:
    """A variadic tail: any number of entries, each one value or, with ``members``, a
    group of values (given by member name, or as a sequence in this order)."""

    name: str
    members: tuple[str, ...] = ()
    member_set: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "member_set", frozenset(self.members))

    @property
    def width(self) -> int:
        return max(1, len(self.members))


@dataclass(frozen=True, slots=True)
class Operation:
    """What one script takes: named keys and arguments, then variadic key and argument
    lists. Keys a caller does not give are built by keys.py from their name (see
    :meth:`Keys.named`)."""

    keys: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    key_lists: tuple[Many, ...] = ()
    arg_lists: tuple[Many, ...] = ()
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        every = [
            *self.keys,
            *self.args,
            *(many.name for many in (*self.key_lists, *self.arg_lists)),
        ]
        if len(set(every)) != len(every):
            raise InterfaceError(f"a name is declared twice in {every}")
        for name in every:
            if not name.isidentifier() or name != name.lower():
                raise InterfaceError(f"{name!r} is not a lower-case identifier")
        object.__setattr__(self, "names", frozenset(every))

    def bind(self, head: Sequence[Any], values: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
        """``KEYS`` and ``ARGV`` of a call given every name of this operation in
        ``values`` (keys included), ``ARGV`` after ``head``."""
        if values.keys() != self.names:
            given = set(values)
            missing, unknown = sorted(self.names - given), sorted(given - self.names)
            raise InterfaceError(f"missing {missing}, unknown {unknown}")
        keys = [values[name] for name in self.keys]
        args = [*head]
        _convert([values[name] for name in self.args], args)
        if not (self.key_lists or self.arg_lists):  # most calls: a job's, TRACK SET's
            return keys, args
        lists: list[Any] = []
        for many in self.key_lists:
            entries = values[many.name]
            args.append(len(entries))
            _flatten(many, entries, keys)
        for many in self.arg_lists:
            entries = values[many.name]
            args.append(len(entries))
            _flatten(many, entries, lists)
        _convert(lists, args)
        return keys, args


def _convert(values: list[Any], into: list[Any]) -> None:
    """Arguments as a script reads them: None is '' (not given), a bool '1' or '0'."""
    for value in values:
        if value is None:
            value = ""
        elif value is True:
            value = "1"
        elif value is False:
            value = "0"
        into.append(value)


def _flatten(many: Many, entries: Iterable[Any], into: list[Any]) -> None:
    if not many.members:
        into.extend(entries)
        return
    for entry in entries:
        if isinstance(entry, Mapping):
            if entry.keys() != many.member_set:
                raise InterfaceError(f"{many.name}: expected {many.members}, got {sorted(entry)}")
            into.extend(entry[member] for member in many.members)
        elif len(entry) == len(many.members):
            into.extend(entry)
        else:
            raise InterfaceError(f"{many.name}: expected {many.members}, got {entry!r}")


JOB = ("job",)

#: Every operation (one lua/<name>.lua each), what it takes.
OPERATIONS: dict[str, Operation] = {
    "register": Operation(
        keys=(
            "job",
            "payload",
            "labels_in_use",
            "dependents",
            "gate",
            "open_children",
            "staged",
            "released",
            "free_queue_ids",
            "bands_due",
            "queues_recorded",
        ),
        args=(
            "jid",
            "queue",
            "fingerprint",
            "reserve_for",
            "max_attempts",
            "labels",  # msgpack, or '' for none
            "batch",
            "delay",  # s
            "missing_satisfied",  # unknown prerequisites count as done
            "handoff_timeout",  # s before a hand-off not started is checked, '' for none
            "handoff_probe",  # where that check looks in RQ (see handoff.py)
            "shown",  # the payload as the track shows it (JSON), or ''
        ),
        key_lists=(
            Many("parent", ("key", "gate", "open", "children")),  # none or one
            Many("prerequisites", ("key", "dependents", "released")),
            Many("label_keys"),  # the zsets of the job's labels
        ),
        arg_lists=(
            Many("prerequisite_jids"),  # in step with prerequisites
            Many("handoff"),  # the stored commands (see handoff.py)
            Many("staged_fields"),  # RQ's job hash, fields and values
        ),
    ),
    "start": Operation(keys=JOB, args=("reserve_for",)),  # '' for the job's own
    "track_set": Operation(
        keys=JOB,
        args=("percent", "desc_given", "desc", "reserve_until", "attempt", "returning"),
    ),
    "track_set_many": Operation(
        key_lists=(Many("jobs"),),
        arg_lists=(Many("updates", ("percent", "desc_given", "desc", "reserve_until", "attempt")),),
    ),
    "success": Operation(keys=JOB, args=("attempt",)),
    "fail": Operation(
        keys=JOB,
        args=("error", "error_type", "retry", "backoff", "attempt", "traceback"),
    ),
    "reap": Operation(keys=JOB, args=("jid", "backoff")),
    "cancel": Operation(keys=JOB),
    "pause": Operation(keys=JOB),
    "resume": Operation(keys=JOB),
    "seal": Operation(keys=JOB),
    "retry": Operation(keys=JOB, args=("revive",)),
    "delete": Operation(keys=("job", "payload", "staged", "released", "children")),
    "drain": Operation(),
    "promote": Operation(args=("backoff",)),
    "stats": Operation(),
    "list": Operation(arg_lists=(Many("bands", ("state", "qid", "ms", "jid", "count")),)),
    "list_index": Operation(
        keys=("index",),
        args=("state_names", "queue", "after_ms", "after_key", "want", "reads"),
    ),
    "prune": Operation(keys=("bands_due", "queues_recorded", "free_queue_ids"), args=("reads",)),
    "prune_labels": Operation(keys=("labels_in_use", "labels_in_use_unscored"), args=("reads",)),
    "worker_beat": Operation(
        keys=("workers", "worker_beats"), args=("name", "record", "forget_after", "leaving")
    ),
}
