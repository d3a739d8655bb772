"""What operations return, and how a track is read from a job's hash or an event."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import msgpack

from .fields import stored
from .keys import Keys
from .model import State, Track

# the stored names of the fields a track is decoded from (fields.py)
_STATE, _UPDATED, _CREATED, _QUEUE = (
    stored(n) for n in ("state", "updated_at", "created_at", "queue")
)
_ATTEMPTS, _MAX_ATTEMPTS, _PERCENT, _DESC = (
    stored(n) for n in ("attempts", "max_attempts", "percent", "desc")
)
_RESERVE_UNTIL, _LABELS, _ERRORS, _PARENT = (
    stored(n) for n in ("reserve_until", "labels", "errors", "parent")
)
_BLOCKED_BY, _ELIGIBLE_AT, _PREREQUISITES, _PENDING, _GATE_HELD = (
    stored(n) for n in ("blocked_by", "eligible_at", "prerequisites", "pending", "gate_held")
)
_BATCH, _CHILDREN, _SUCCEEDED, _DEAD, _SEALED = (
    stored(n) for n in ("batch", "children", "children_succeeded", "children_dead", "sealed")
)
_PAYLOAD, _TRACEBACKS = stored("payload"), stored("tracebacks")


@dataclass(frozen=True, slots=True)
class Registered:
    track: Track
    created: bool


@dataclass(frozen=True, slots=True)
class Page:
    jobs: list[Track]
    next: str | None


@dataclass(frozen=True, slots=True)
class Stats:
    states: dict[str, int] = field(default_factory=dict)
    queues: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Related:
    """The jobs around one job, each with its state (see ``Graph.related`` in graph.py)."""

    prerequisites: list[tuple[str, State]]
    dependents: list[tuple[str, State]]
    children: list[tuple[str, State]]


@dataclass(frozen=True, slots=True)
class Workflow:
    """The jobs linked to one job by dependencies, either way and at any distance
    (see ``Graph.workflow`` in graph.py): each with its state, and each dependency as
    (prerequisite, dependent). ``more``: the walk stopped before it saw them all."""

    jobs: list[tuple[str, State]]
    edges: list[tuple[str, str]]
    more: bool


@dataclass(frozen=True)
class Event:
    """One entry of the event stream (see the key layout in keys.py): the whole track
    after a change (without the payload and tracebacks, which may weigh kilobytes).

    ``change`` is False for a TRACK SET, True for a lifecycle change; ``was`` is the
    state a lifecycle change left (``None`` for a new job). ``release_ms`` is how long a
    released job waited between becoming releasable and its release, when the event
    is a release. ``jid`` and ``state`` are the track's; the rest of the track is decoded
    when first read (a reader that only counts events, as the metrics do, never pays).
    """

    id: str
    jid: str
    state: State
    change: bool
    was: State | None = None
    release_ms: int | None = None
    fields: dict[bytes, bytes] = field(default_factory=dict, repr=False, compare=False)
    keys: Keys | None = field(default=None, repr=False, compare=False)

    @cached_property
    def track(self) -> Track:
        assert self.keys is not None, "an event made without its stream entry"
        return decode_track(self.keys, self.jid, self.fields)


def decode_track(keys: Keys, jid: str, fields: Iterable[Any] | dict[bytes, bytes]) -> Track:
    """A Track from a hash (HGETALL's dict, or a script's flat field/value list)."""
    if not isinstance(fields, dict):
        flat = list(fields)
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
    if not fields:
        return Track(jid=jid, state=State.UNKNOWN)
    get = fields.get
    state = State(fields[_STATE].decode())
    if state is State.UNKNOWN:  # the event of a deletion (delete.lua)
        updated = get(_UPDATED)
        return Track(
            jid=jid,
            state=state,
            updated_at=None if updated is None else int(updated),
            queue=None if get(_QUEUE) is None else fields[_QUEUE].decode(),
        )
    percent, desc, reserve, labels = get(_PERCENT), get(_DESC), get(_RESERVE_UNTIL), get(_LABELS)
    errors, parent, blocked = get(_ERRORS), get(_PARENT), get(_BLOCKED_BY)
    eligible, total = get(_ELIGIBLE_AT), get(_PREREQUISITES)
    batch = _batch(fields, state) if get(_BATCH) else None
    return Track(
        jid=jid,
        state=state,
        updated_at=int(fields[_UPDATED]),
        created_at=int(fields[_CREATED]),
        percent=batch.pop("percent") if batch else None if percent is None else int(percent),
        desc=None if desc is None else desc.decode(),
        reserve_until=None if reserve is None else int(reserve),
        queue=fields[_QUEUE].decode(),
        attempts=int(fields[_ATTEMPTS]),
        max_attempts=int(fields[_MAX_ATTEMPTS]),
        labels=None if labels is None else msgpack.unpackb(labels),
        errors=() if errors is None else _errors(errors, get(_TRACEBACKS)),
        prerequisites=None
        if total is None
        else {"total": int(total), "pending": _pending_prerequisites(fields)},
        parent=None if parent is None else keys.jid_of(parent),
        batch=batch,
        blocked_by=None if blocked is None else blocked.decode(),
        eligible_at=None if eligible is None else int(eligible),
        payload=None if get(_PAYLOAD) is None else json.loads(fields[_PAYLOAD]),
    )


#: What decoding an entry raises when this version's scripts did not write it.
UNREADABLE = (KeyError, ValueError, TypeError)


def decode_event(keys: Keys, entry_id: bytes | str, fields: dict[bytes, bytes]) -> Event:
    """An :class:`Event` from one stream entry: ``jid``, ``w`` (none for a TRACK SET),
    the track's fields and ``rl`` (see add_event in lua/_common.lua)."""
    event_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    was, release = fields.get(b"w"), fields.get(b"rl")
    return Event(
        event_id,
        fields[b"jid"].decode(),
        State(fields[_STATE].decode()),
        change=was is not None,
        was=State(was.decode()) if was else None,
        release_ms=None if release is None else int(release),
        fields=fields,
        keys=keys,
    )


def _errors(errors: bytes, tracebacks: bytes | None) -> tuple[dict[str, Any], ...]:
    """The error history, each entry with its traceback when it has one (``tb`` is a list
    in step with it, kept apart so that events do not carry it: see with_error)."""
    entries: list[dict[str, Any]] = json.loads(errors)
    if tracebacks is not None:
        for entry, traceback in zip(entries, json.loads(tracebacks), strict=False):
            if traceback:
                entry["traceback"] = traceback
    return tuple(entries)


def _pending_prerequisites(fields: dict[bytes, bytes]) -> int:
    """Prerequisites not yet succeeded: ``pp`` less the hold of a waiting batch (``gh``)."""
    return int(fields.get(_PENDING, 0)) - int(fields.get(_GATE_HELD, 0))


def _batch(fields: dict[bytes, bytes], state: State) -> dict[str, Any]:
    total, success, dead = (int(fields.get(k, 0)) for k in (_CHILDREN, _SUCCEEDED, _DEAD))
    sealed = fields.get(_SEALED) == b"1"
    # the scripts keep a batch's percent in p (see batch_percent in lua/_graph.lua)
    percent = 100 if state is State.SUCCESS else int(fields.get(_PERCENT, 0))
    return {
        "total": total,
        "pending": total - success - dead,
        "success": success,
        "dead": dead,
        "sealed": sealed,
        "percent": percent,
    }
