"""The Lua scripts: loaded once from package data, registered once per client.

Each operation is ``lua/<name>.lua`` with ``lua/_common.lua`` and ``lua/_graph.lua``
in front of it.
Scripts reply with a small code (see ``_common.lua``); :func:`outcome` turns a
reply into its value or the matching exception, in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from .errors import Conflict, InvalidInput, NotFound
from .model import format_time

OPERATIONS = (
    "register",
    "start",
    "track_set",
    "track_set_many",
    "success",
    "fail",
    "reap",
    "cancel",
    "pause",
    "resume",
    "stats",
    "list",
    "prune",
    "prune_labels",
    "seal",
    "drain",
    "promote",
)

OK, NOT_FOUND, CONFLICT, INVALID = 0, 1, 2, 3


@cache
def source(name: str) -> str:
    """The full text of one operation's script (the shared preambles included)."""
    folder = resources.files("tracker") / "lua"
    parts = ("_common.lua", "_graph.lua", f"{name}.lua")
    return "\n".join((folder / part).read_text(encoding="utf-8") for part in parts)


def register_all(client: Any) -> dict[str, Any]:
    """One ``Script`` (or ``AsyncScript``) per operation, bound to ``client``."""
    return {name: client.register_script(source(name)) for name in OPERATIONS}


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
    "not_batch": lambda _: "only a batch can be sealed",
    "parent_unknown": lambda _: "the parent batch has no track",
    "parent_not_batch": lambda _: "the parent is not a batch",
    "sealed": lambda _: "the parent batch is sealed: it takes no more children",
    "parent_finished": lambda extra: f"the parent batch is {_text(extra[0])}",
    "cycle": lambda _: "its prerequisites already wait for it: that would be a cycle",
    "graph_too_large": lambda _: "too many jobs wait for it to check for a cycle",
}

_INVALID: dict[str, str] = {
    "too_many": "this namespace already has the most queues it can hold (2047)",
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
        return Conflict(jid, state, _REASONS[reason](reply[3:]))
    if code == INVALID:
        field, reason = _text(reply[1]), _text(reply[2])
        return InvalidInput(field, _INVALID[reason])
    raise AssertionError(f"unexpected script reply {reply!r}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
