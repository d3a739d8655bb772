"""Every operation as a plan: the script calls and reads it needs, without doing I/O.

A plan is a generator that yields :class:`Call` (run one script) or :class:`Read`
(run plain read commands in one pipeline), receives each reply, and returns the
operation's result. :class:`~tracker.store.Tracker` drives plans with a blocking
client and :class:`~tracker.aio.AsyncTracker` with an asyncio one, so the logic
of each operation is written once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgpack

from . import scripts
from .errors import InvalidInput, TrackerError
from .keys import Keys
from .model import (
    DEFAULT_MAX_ATTEMPTS,
    MAX_ERROR,
    MAX_LIST_LIMIT,
    STORED_STATES,
    Registration,
    State,
    Track,
    TrackUpdate,
    check_int,
    check_name,
    check_text,
    checked_update,
    registration,
    track_update,
)
from .settings import Settings

T = TypeVar("T")
EVENTS_KEPT = 10_000
MAX_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Call:
    script: str
    keys: list[str]
    args: list[Any]


@dataclass(frozen=True, slots=True)
class Read:
    commands: list[tuple[str, tuple[Any, ...]]]


Plan = Generator[Call | Read, Any, T]


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


class Ops:
    """Builds the plans of one namespace with one set of settings."""

    def __init__(self, settings: Settings, clock: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self.keys = Keys(settings.namespace)
        self.clock = clock
        self._ttl_ms = str(settings.ttl * 1000)
        self._pending_ms = str(settings.pending_ttl * 1000)

    def _head(self) -> list[Any]:
        now = "" if self.clock is None else str(int(self.clock() * 1000))
        return [now, self._ttl_ms, self._pending_ms, EVENTS_KEPT]

    def _job_call(self, script: str, jid: str, *args: Any) -> Call:
        return Call(script, self.keys.for_job(jid), [*self._head(), jid, *args])

    def _transition(self, script: str, jid: str, *args: Any) -> Plan[Track]:
        reply = yield self._job_call(script, jid, *args)
        return decode_track(jid, scripts.outcome(reply, jid))

    # --- lifecycle ---------------------------------------------------------

    def register(
        self,
        jid: str,
        *,
        queue: str = "default",
        labels: Mapping[str, str] | None = None,
        reserve_for: int | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        payload: Mapping[str, Any] | None = None,
    ) -> Plan[Registered]:
        reg = registration(
            jid,
            queue=queue,
            labels=labels,
            reserve_for=reserve_for,
            max_attempts=max_attempts,
            payload=payload,
            default_reserve_for=self.settings.reserve_for,
        )
        return self._register(reg)

    def _register(self, reg: Registration) -> Plan[Registered]:
        label_keys = [self.keys.label(k, v) for k, v in reg.labels.items()]
        call = Call(
            "register",
            [*self.keys.for_job(reg.jid), self.keys.labels_in_use, *label_keys],
            [
                *self._head(),
                reg.jid,
                reg.queue,
                reg.fingerprint(),
                reg.reserve_for,
                reg.max_attempts,
                msgpack.packb(reg.labels) if reg.labels else "",
                msgpack.packb(reg.payload, use_bin_type=True) if reg.payload else "",
            ],
        )
        reply = yield call
        created, flat = scripts.outcome(reply, reg.jid)
        return Registered(decode_track(reg.jid, flat), bool(created))

    def start(self, jid: str, reserve_for: int | None = None) -> Plan[Track]:
        check_name("jid", jid)
        if reserve_for is not None:
            check_int("reserve_for", reserve_for, 1, 365 * 24 * 3600)
        return self._transition("start", jid, "" if reserve_for is None else reserve_for)

    def track_set(
        self, jid: str, *, percent: object = None, desc: object = None, reserve_until: object = None
    ) -> Plan[Track]:
        update = track_update(jid, percent=percent, desc=desc, reserve_until=reserve_until)
        return self._transition("track_set", update.jid, *_update_args(update)[1:])

    def track_set_many(
        self, items: Iterable[TrackUpdate | Mapping[str, Any]]
    ) -> Plan[list[Track | TrackerError]]:
        """Validates every update before anything is sent; then one call per 1,000."""
        updates = [
            checked_update(u) if isinstance(u, TrackUpdate) else _update_from(u) for u in items
        ]
        return self._track_set_many(updates)

    def _track_set_many(self, updates: Sequence[TrackUpdate]) -> Plan[list[Track | TrackerError]]:
        results: list[Track | TrackerError] = []
        for start in range(0, len(updates), MAX_BATCH):
            chunk = updates[start : start + MAX_BATCH]
            args = [*self._head()]
            for update in chunk:
                args.extend(_update_args(update))
            reply = yield Call(
                "track_set_many", [*self.keys.shared, *(self.keys.job(u.jid) for u in chunk)], args
            )
            for update, one in zip(chunk, scripts.outcome(reply, ""), strict=True):
                if one[0] == scripts.OK:
                    results.append(decode_track(update.jid, one[1]))
                else:
                    results.append(scripts.error(one, update.jid))  # type: ignore[arg-type]
        return results

    def success(self, jid: str) -> Plan[Track]:
        return self._transition("success", check_name("jid", jid))

    def fail(
        self, jid: str, error: str, *, retry: bool = True, error_type: str | None = None
    ) -> Plan[Track]:
        check_name("jid", jid)
        check_text("error", error, MAX_ERROR)
        if error_type is not None:
            check_text("error_type", error_type, 256)
        if not isinstance(retry, bool):
            raise InvalidInput("retry", f"expected true or false, got {type(retry).__name__}")
        return self._transition("fail", jid, error, error_type or "", "1" if retry else "0")

    def cancel(self, jid: str) -> Plan[Track]:
        return self._transition("cancel", check_name("jid", jid))

    def pause(self, jid: str) -> Plan[Track]:
        return self._transition("pause", check_name("jid", jid))

    def resume(self, jid: str) -> Plan[Track]:
        return self._transition("resume", check_name("jid", jid))

    def reap(self, limit: int = 100) -> Plan[list[Track]]:
        """Fail up to ``limit`` working jobs whose reservation has ended."""
        server_time, due = yield Read(
            [
                ("time", ()),
                ("zrangebyscore", (self.keys.reservations, "-inf", "+inf", 0, limit, True)),
            ]
        )
        now = self._now_ms(server_time)
        reaped: list[Track] = []
        for raw, reserve_until in due:
            if reserve_until > now:
                break
            jid = raw.decode()
            reply = yield self._job_call("reap", jid)
            if reply[0] == scripts.OK:
                reaped.append(decode_track(jid, reply[1]))
        return reaped

    def prune(self, batch: int = 1000) -> Plan[int]:
        """Drop expired entries from the state indexes; returns how many went."""
        reply = yield Call("prune", list(self.keys.shared), [*self._head(), batch])
        return int(scripts.outcome(reply, ""))

    def prune_labels(self, batch: int = 200) -> Plan[int]:
        """Drop expired jobs from the label zsets; returns how many entries went."""
        server_time, index_keys = yield Read(
            [("time", ()), ("smembers", (self.keys.labels_in_use,))]
        )
        now = self._now_ms(server_time)
        # every live track was updated less than its shortest lifetime ago
        horizon = now - min(self.settings.ttl, self.settings.pending_ttl) * 1000
        removed = 0
        for raw_key in index_keys:
            index = raw_key.decode()
            (old,) = yield Read([("zrangebyscore", (index, "-inf", horizon, 0, batch))])
            jids = [jid.decode() for jid in old]
            reply = yield Call(
                "prune_labels",
                [
                    *self.keys.shared,
                    self.keys.labels_in_use,
                    index,
                    *(self.keys.job(jid) for jid in jids),
                ],
                [*self._head(), *jids],
            )
            removed += scripts.outcome(reply, "")
        return removed

    def _now_ms(self, server_time: tuple[int, int]) -> int:
        if self.clock is not None:
            return int(self.clock() * 1000)
        return int(server_time[0]) * 1000 + int(server_time[1]) // 1000

    # --- reads -------------------------------------------------------------

    def get(self, jid: str) -> Plan[Track]:
        check_name("jid", jid)
        (fields,) = yield Read([("hgetall", (self.keys.job(jid),))])
        return decode_track(jid, fields)

    def stats(self) -> Plan[Stats]:
        reply = yield Call("stats", list(self.keys.shared), self._head())
        flat = scripts.outcome(reply, "")
        stats = Stats()
        for i in range(0, len(flat), 3):
            queue, state, count = flat[i].decode(), flat[i + 1].decode(), int(flat[i + 2])
            stats.states[state] = stats.states.get(state, 0) + count
            stats.queues.setdefault(queue, {})[state] = count
        return stats

    def list_jobs(
        self,
        *,
        state: str | State | None = None,
        queue: str | None = None,
        label: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Plan[Page]:
        """Live jobs, newest ``updated_at`` first, filtered; ``Page.next`` continues."""
        states = [_check_state(state)] if state is not None else [s.value for s in STORED_STATES]
        if queue is not None:
            check_name("queue", queue)
        check_int("limit", limit, 1, MAX_LIST_LIMIT)
        after = _parse_cursor(cursor)
        if label is not None:
            return (yield from self._list_label(label, states, queue, limit, after))
        reply = yield Call(
            "list",
            list(self.keys.shared),
            [
                *self._head(),
                ",".join(states),
                queue or "",
                "" if after is None else after[0],
                "" if after is None else after[1],
                limit,
            ],
        )
        flat = scripts.outcome(reply, "")
        ids = [(flat[i].decode(), int(flat[i + 1])) for i in range(0, len(flat), 2)]
        return (yield from self._page(ids, limit, lambda track: True))

    def _list_label(
        self,
        label: str,
        states: list[str],
        queue: str | None,
        limit: int,
        after: tuple[int, str] | None,
    ) -> Plan[Page]:
        key, _, value = label.partition(":")
        check_name("label key", key)
        index = self.keys.label(key, value)
        wanted: set[str] = set(states)

        def keep(track: Track) -> bool:
            return track.state.value in wanted and (queue is None or track.queue == queue)

        chosen: list[tuple[str, int]] = []
        top: Any = "+inf" if after is None else after[0]
        offset, more = 0, False
        while not more:
            (page,) = yield Read([("zrevrangebyscore", (index, top, "-inf", offset, 200, True))])
            ids = [(m.decode(), int(s)) for m, s in page]
            if after is not None:
                ids = [(j, ms) for j, ms in ids if ms < after[0] or j < after[1]]
            hashes = yield Read([("hgetall", (self.keys.job(jid),)) for jid, _ in ids])
            for (jid, ms), fields in zip(ids, hashes, strict=True):
                if fields and keep(decode_track(jid, fields)):
                    chosen.append((jid, ms))
            more = len(chosen) > limit
            if len(page) < 200:
                break
            offset += 200
        return (yield from self._page(chosen, limit, keep))

    def _page(
        self, ids: list[tuple[str, int]], limit: int, keep: Callable[[Track], bool]
    ) -> Plan[Page]:
        if not ids:
            return Page([], None)
        hashes = yield Read([("hgetall", (self.keys.job(jid),)) for jid, _ in ids])
        kept = [
            (track, ms)
            for (jid, ms), fields in zip(ids, hashes, strict=True)
            if fields and keep(track := decode_track(jid, fields))
        ]
        more = len(ids) > limit
        kept = kept[:limit]
        cursor = f"{kept[-1][1]}.{kept[-1][0].jid}" if more and kept else None
        return Page([track for track, _ in kept], cursor)


def _update_from(item: Mapping[str, Any]) -> TrackUpdate:
    if not isinstance(item, Mapping):
        raise InvalidInput("updates", f"expected objects, got {type(item).__name__}")
    unknown = set(item) - {"jid", "percent", "desc", "reserve_until"}
    if unknown:
        raise InvalidInput("updates", f"unknown fields {sorted(unknown)}")
    if "jid" not in item:
        raise InvalidInput("jid", "is required")
    return track_update(**item)


def _update_args(update: TrackUpdate) -> list[Any]:
    return [
        update.jid,
        "" if update.percent is None else update.percent,
        "" if update.desc is None else "1",
        update.desc or "",
        "" if update.reserve_until is None else update.reserve_until,
    ]


def _check_state(state: str | State) -> str:
    try:
        value = State(state)
    except ValueError:
        raise InvalidInput("state", f"unknown state {state!r}") from None
    if value is State.UNKNOWN:
        raise InvalidInput("state", "no stored track is in state unknown")
    return value.value


def _parse_cursor(cursor: str | None) -> tuple[int, str] | None:
    if cursor is None:
        return None
    ms, _, jid = str(cursor).partition(".")
    if not ms.isdigit() or not jid:
        raise InvalidInput("cursor", "not a cursor this server returned")
    return int(ms), check_name("cursor", jid)


def decode_track(jid: str, fields: Iterable[Any] | dict[bytes, bytes]) -> Track:
    """A Track from a hash (HGETALL's dict, or a script's flat field/value list)."""
    if not isinstance(fields, dict):
        flat = list(fields)
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
    if not fields:
        return Track(jid=jid, state=State.UNKNOWN)
    get = fields.get
    percent, desc, reserve, labels, errors = get(b"p"), get(b"d"), get(b"r"), get(b"l"), get(b"e")
    return Track(
        jid=jid,
        state=State(fields[b"s"].decode()),
        updated_at=int(fields[b"u"]),
        created_at=int(fields[b"c"]),
        percent=None if percent is None else int(percent),
        desc=None if desc is None else desc.decode(),
        reserve_until=None if reserve is None else int(reserve),
        queue=fields[b"q"].decode(),
        attempts=int(fields[b"a"]),
        max_attempts=int(fields[b"m"]),
        labels=None if labels is None else msgpack.unpackb(labels),
        errors=() if errors is None else tuple(json.loads(errors)),
    )
