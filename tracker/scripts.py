"""tracker's Lua, as one Redis function library: loaded once per server, called with FCALL.

``lua/_common.lua``, ``lua/_graph.lua`` and ``lua/_cycle.lua`` are the library's shared top; each
operation is ``lua/<name>.lua``, registered as the function
``tracker_<version>_<name>``, whose body starts with a prelude generated from the
operation's declaration in interface.py: ``begin(KEYS, ARGV)`` (the namespace's
constants, named by their token or carried by the call, and the time), then a local
name for each of its own keys and arguments.

Why functions rather than EVALSHA: a script re-runs its whole top level on every
call, and defining the shared helpers alone costs more than the raw HSET+EXPIRE a
TRACK SET is measured against (bench/track_set_breakdown.py). A library's top
level runs once, at FUNCTION LOAD. The version (a digest of the sources) is in
every name, so two tracker versions can share a server during an upgrade, and a
server that lost the library (a restart without persistence) gets it again on the
next call. Scripts reply with a small code (see ``_common.lua``); :func:`outcome`
turns a reply into its value or the matching exception, in one place.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import redis.exceptions

from . import fields, interface
from .cluster import is_cluster
from .errors import Conflict, InvalidInput, JobSuperseded, NotFound
from .times import format_time

if TYPE_CHECKING:
    from .calls import Call

OPERATIONS = tuple(interface.OPERATIONS)

#: The library's shared top, in this order.
SHARED = ("_common.lua", "_graph.lua", "_cycle.lua")

OK, NOT_FOUND, CONFLICT, INVALID = 0, 1, 2, 3


@cache
def library() -> tuple[str, str]:
    """``(version, source)`` of the function library built from ``lua/``."""
    folder = resources.files("tracker") / "lua"
    shared = [(folder / name).read_text(encoding="utf-8") for name in SHARED]
    bodies = {name: (folder / f"{name}.lua").read_text(encoding="utf-8") for name in OPERATIONS}
    top = "\n".join([fields.lua_constants(), *shared])
    parts = [fields.lua_constants(), *shared, _begin()]
    for name, body in bodies.items():
        operation = interface.OPERATIONS[name]
        check_body(name, body, operation, top)
        parts.append(
            f"redis.register_function('tracker_{{digest}}_{name}', function(KEYS, ARGV)\n"
            f"{prelude(operation)}{body}\nend)"
        )
    source = "\n".join(parts)
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    return digest, f"#!lua name=tracker_{digest}\n" + source.replace("{digest}", digest)


def _begin() -> str:
    """begin(): binds the namespace's constants (interface.SHARED_KEYS and CONSTANTS) to
    the library's per-call variables, from the call when it carries them (and keeps them
    under its token, see bind() in _common.lua) or from what the token names; then
    started() with the call's time. Returns UNBOUND's error reply for a token the library
    does not hold (the client then sends the call again, carrying them)."""
    shared, constants = interface.SHARED_KEYS, interface.CONSTANTS
    read = {"number": "tonumber({})", "flag": "{} == '1'"}
    states = [
        f"{variable[len('STATE_KEY.') :]} = KEYS[k + {i}]"
        for i, (variable, _) in enumerate(shared, 1)
        if variable.startswith("STATE_KEY.")
    ]
    carried = [
        *(
            f"      {variable} = KEYS[k + {i}],"
            for i, (variable, _) in enumerate(shared, 1)
            if not variable.startswith("STATE_KEY.")
        ),
        "      STATE_KEY = {" + ", ".join(states) + "},",
        *(
            f"      {variable} = {read[kind].format(f'ARGV[a + {i}]')},"
            for i, (variable, kind) in enumerate(constants, 1)
        ),
    ]
    names = [variable for variable, _ in shared if not variable.startswith("STATE_KEY.")]
    names += ["STATE_KEY", *(variable for variable, _ in constants)]
    return "\n".join(
        [
            "-- generated from interface.py (SHARED_KEYS, CONSTANTS, HEAD)",
            "local function begin(KEYS, ARGV)",
            "  local token = ARGV[1]",
            "  local c = BOUND[token]",
            "  if not c then",
            "    if string.sub(token, 1, 1) ~= '=' then",
            "      return redis.error_reply('UNBOUND ' .. token .. ': this server does not hold "
            "the constants of that token; send them')",
            "    end",
            f"    local k, a = #KEYS - {len(shared)}, #ARGV - {len(constants)}",
            "    c = {",
            *carried,
            "    }",
            "    bind(string.sub(token, 2), c)",
            "  end",
            *(f"  {name} = c.{name}" for name in names),
            "  started(ARGV[2])",
            "end",
        ]
    )


def prelude(operation: interface.Operation) -> str:
    """The Lua that starts a call (begin()) and binds an operation's declared keys and
    arguments to local names (see the layout in interface.py)."""
    lines = ["local unbound = begin(KEYS, ARGV)", "if unbound then return unbound end"]
    key_at, arg_at = 0, len(interface.HEAD)
    for name in operation.keys:
        key_at += 1
        lines.append(f"local {name.upper()} = KEYS[{key_at}]")
    for name in operation.args:
        arg_at += 1
        lines.append(f"local {name.upper()} = ARGV[{arg_at}]")
    lists = [*operation.key_lists, *operation.arg_lists]
    if lists:
        names = ", ".join(many.name.upper() for many in lists)
        lines.append(f"local {names} = {', '.join('{}' for _ in lists)}")
        counts = arg_at
        arg_at += len(lists)
        lines.append(f"do local k, a = {key_at + 1}, {arg_at + 1}")
        for n, many in enumerate(lists, 1):
            source, at = ("KEYS", "k") if many in operation.key_lists else ("ARGV", "a")
            if many.members:
                entry = (
                    "{"
                    + ", ".join(
                        f"{member} = {source}[{at}{f' + {i}' if i else ''}]"
                        for i, member in enumerate(many.members)
                    )
                    + "}"
                )
            else:
                entry = f"{source}[{at}]"
            lines.append(
                f"  for i = 1, tonumber(ARGV[{counts + n}]) do "
                f"{many.name.upper()}[i] = {entry}; {at} = {at} + {many.width} end"
            )
        lines.append("end")
    return "".join(line + "\n" for line in lines)


def check_body(name: str, body: str, operation: interface.Operation, top: str) -> None:
    """Refuse a script that reads KEYS or ARGV by position, leaves a declared name unused,
    binds a name the library's top already has (it would hide it), or uses an upper-case
    name that neither its declaration nor the library's top defines (a misspelt one)."""
    if "KEYS[" in body or "ARGV[" in body:
        raise interface.InterfaceError(f"{name}.lua: reads KEYS or ARGV by position")
    code, defined = _capitals(body), _capitals(top)
    declared = {declared.upper() for declared in operation.names}
    for lua in declared:
        if lua not in code:
            raise interface.InterfaceError(f"{name}.lua: {lua} is declared but never used")
        if lua in defined:
            raise interface.InterfaceError(f"{name}.lua: {lua} hides a name of the library")
    unknown = code - defined - declared
    if unknown:
        raise interface.InterfaceError(f"{name}.lua: {sorted(unknown)} are not declared")


def _capitals(lua: str) -> set[str]:
    """The upper-case names Lua code uses, comments and strings left out."""
    code = re.sub(r"'(?:[^'\\\n]|\\.)*'", "''", re.sub(r"--[^\n]*", "", lua))
    return set(re.findall(r"\b[A-Z][A-Z0-9_]*\b", code))


def missing_function(exc: redis.exceptions.ResponseError) -> bool:
    """Whether the server answered that it does not hold the function (it lost the library)."""
    return "function not found" in str(exc).lower()


def unbound(exc: redis.exceptions.ResponseError) -> bool:
    """Whether the server answered that it does not hold the constants a call named."""
    return str(exc).startswith("UNBOUND ")


class Library:
    """Calls tracker's functions on a server: loads the library when the server lacks it,
    and sends a call's constants when the server does not hold them (interface.py)."""

    def __init__(self) -> None:
        self.version, self.source = library()
        self.names = {op: f"tracker_{self.version}_{op}" for op in OPERATIONS}

    def call(self, client: Any, call: Call) -> Any:
        for _ in range(2):
            try:
                return client.fcall(self.names[call.script], len(call.keys), *call.keys, *call.args)
            except redis.exceptions.ResponseError as exc:
                if missing_function(exc):
                    self.load(client)
                elif unbound(exc):
                    call = call.carrying()
                else:
                    raise
        # a library just loaded holds no constants: the call that carries them is the last
        return client.fcall(self.names[call.script], len(call.keys), *call.keys, *call.args)

    def queue(self, pipe: Any, call: Call) -> None:
        """Add ``call`` to a pipeline, carrying its constants (a pipeline's reply comes too
        late to send them again). The library must be loaded beforehand."""
        call = call.carrying()
        pipe.fcall(self.names[call.script], len(call.keys), *call.keys, *call.args)

    def load(self, client: Any) -> None:
        try:
            client.function_load(self.source, replace=is_cluster(client))
        except redis.exceptions.ResponseError as exc:
            if "already exists" not in str(exc):  # another process loaded it meanwhile
                raise

    def ensure(self, client: Any) -> None:
        """Load the library unless the server already holds it."""
        if not _held(client.function_list(library=f"tracker_{self.version}")):
            self.load(client)

    async def acall(self, client: Any, call: Call, via: Any = None) -> Any:
        """``via``: what sends the FCALL instead of ``client`` (an AutoPipeline)."""
        sender = via or client
        for _ in range(2):
            try:
                return await sender.fcall(
                    self.names[call.script], len(call.keys), *call.keys, *call.args
                )
            except redis.exceptions.ResponseError as exc:
                if missing_function(exc):
                    await self.aload(client)
                elif unbound(exc):
                    call = call.carrying()
                else:
                    raise
        return await sender.fcall(self.names[call.script], len(call.keys), *call.keys, *call.args)

    async def aload(self, client: Any) -> None:
        # on a cluster, loaded on every primary: REPLACE, so that one that holds it does
        # not stop the others from getting it (it costs a compile: a single server,
        # where a herd of callers may find it missing at once, is not asked to)
        try:
            await client.function_load(self.source, replace=is_cluster(client))
        except redis.exceptions.ResponseError as exc:
            if "already exists" not in str(exc):
                raise

    async def aensure(self, client: Any) -> None:
        """Load the library unless the server already holds it."""
        if not _held(await client.function_list(library=f"tracker_{self.version}")):
            await self.aload(client)


def _held(found: Any) -> bool:
    """Whether FUNCTION LIST's answer holds the library (a cluster's: on every primary)."""
    if isinstance(found, dict):  # a cluster's answer: one list per primary
        return all(found.values())
    return bool(found)


def _reserve_earlier(extra: list[Any]) -> str:
    current = format_time(int(extra[0])) if extra else "its current end"
    return f"reserve_until may only move later than {current}; nothing was applied"


_REASONS: dict[str, Callable[[list[Any]], str]] = {
    "different_body": lambda _: "already registered with a different body",
    "not_startable": lambda _: "only an enqueued or failed job can start",
    "finished": lambda _: "a finished job never changes again",
    "not_working": lambda _: "reserve_until applies only to a working job",
    "reserve_earlier": _reserve_earlier,
    "not_running": lambda _: "only a working or enqueued job can succeed or fail",
    "not_pausable": lambda _: "only a waiting or enqueued job can be paused",
    "not_paused": lambda _: "only a paused job can be resumed",
    "not_expired": lambda _: "the reservation has not ended",
    "batch_computed": lambda _: "a batch's state comes from its children",
    "batch_percent": lambda _: "a batch's percent is computed from its children",
    "batch_reserve": lambda _: "a batch has no reservation: its state comes from its children",
    "not_batch": lambda _: "only a batch can be sealed",
    "parent_unknown": lambda _: "the parent batch has no track",
    "parent_not_batch": lambda _: "the parent is not a batch",
    "sealed": lambda _: "the parent batch is sealed: it takes no more children",
    "parent_finished": lambda extra: f"the parent batch is {_text(extra[0])}",
    "cycle": lambda _: "its prerequisites already wait for it: that would be a cycle",
    "graph_too_large": lambda _: (
        "the jobs that wait for it and those its prerequisites wait for are both too many "
        "to check for a cycle"
    ),
    "not_retryable": lambda _: "only a dead, failed or cancelled job can be retried",
    "no_payload": lambda _: "only a job with a payload can be retried (nothing to hand to a queue)",
    "not_finished": lambda _: "only a finished job (success, dead, cancelled) can be deleted",
}

_INVALID: dict[str, str] = {
    "too_many": (
        "this namespace already holds the most queues it can at once (2047 queue names "
        "with live jobs). A queue is forgotten once none of its jobs is live "
        "(Tracker.prune() forgets them all; tracker serve and tracker worker run it every "
        "second): let jobs of old queues finish and expire, use fewer queue names (labels "
        "tell jobs apart), or another namespace"
    ),
}


def outcome(reply: list[Any], jid: str) -> Any:
    """The value of a script's reply, or the exception it stands for."""
    code = reply[0]
    if code == OK:
        return reply[1] if len(reply) == 2 else reply[1:]
    raise error(reply, jid)


def error(reply: list[Any], jid: str) -> Exception:
    """The exception for a non-zero reply code."""
    code = reply[0]
    if code == NOT_FOUND:
        return NotFound(jid)
    if code == CONFLICT:
        state, reason = _text(reply[1]), _text(reply[2])
        if reason == "superseded":
            current, named = int(reply[3]), int(reply[4])
            if named == current:
                detail = f"attempt {named} has ended (reaped or failed): the job is {state}"
            else:
                gone = "was superseded" if named < current else "has not started"
                detail = f"attempt {named} {gone}: the current attempt is {current}"
            return JobSuperseded(jid, state, detail, current)
        return Conflict(jid, state, _REASONS[reason](reply[3:]))
    if code == INVALID:
        field, reason = _text(reply[1]), _text(reply[2])
        return InvalidInput(field, _INVALID[reason])
    raise AssertionError(f"unexpected script reply {reply!r}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
