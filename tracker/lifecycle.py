"""A job's life: register (and enqueue), start, TRACK SET, success, fail, cancel, pause,
resume, retry and delete."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Unpack

import msgpack

from . import scripts
from .calls import Plan, PlanBase
from .errors import InvalidInput, TrackerError
from .handoff import Handoff, rq_handoff
from .model import (
    MAX_ERROR,
    MAX_RESERVE_FOR,
    RegisterFields,
    Registration,
    State,
    Track,
    TrackUpdate,
    check_attempt,
    check_bool,
    check_int,
    check_name,
    check_text,
    checked_update,
    cut_traceback,
    func_name,
    registration,
    track_update,
)
from .records import Registered

MAX_BATCH = 1000
#: A failed job with a payload goes back to its queue after this, doubling per attempt.
RETRY_BACKOFF_MS = 1000


class Lifecycle(PlanBase):
    def register(self, jid: str, **fields: Unpack[RegisterFields]) -> Plan[Registered]:
        """Create a job's track: ``queue`` (default ``default``), ``labels``, ``reserve_for``,
        ``max_attempts``, ``payload`` (run by RQ on release), ``prerequisites`` (with
        ``missing_prerequisites`` "pending" or "satisfied"), ``delay``, ``parent``, ``batch``.

        It waits while prerequisites are pending, else it is released (enqueued). The same
        body again is a no-op (``created`` False); another body is a Conflict.
        """
        reg = registration(jid, default_reserve_for=self.settings.reserve_for, **fields)
        if reg.payload and self.settings.redis_cluster:
            raise InvalidInput(
                "payload",
                "a Redis Cluster cannot hand jobs to RQ (its keys live in other slots than "
                "the tracker's); register the job without a payload and enqueue it yourself",
            )
        return self._register(reg)

    def _register(self, reg: Registration) -> Plan[Registered]:
        keys = self.keys
        parent = reg.parent
        handoff = (
            rq_handoff(reg.jid, reg.queue, reg.payload, keys.staged(reg.jid))
            if reg.payload
            else Handoff([], [])
        )
        reply = yield self._call(
            "register",
            reg.jid,
            queue=reg.queue,
            fingerprint=reg.fingerprint(),
            reserve_for=reg.reserve_for,
            max_attempts=reg.max_attempts,
            labels=msgpack.packb(reg.labels) if reg.labels else "",
            batch=reg.batch,
            delay=reg.delay,
            missing_satisfied=reg.missing_prerequisites == "satisfied",
            handoff_timeout=self.settings.handoff_timeout if reg.payload else None,
            handoff_probe="\n".join(handoff.probe),
            shown=_shown(reg),
            parent=[]
            if parent is None
            else [
                (
                    keys.job(parent),
                    keys.gate(parent),
                    keys.open_children(parent),
                    keys.children(parent),
                )
            ],
            prerequisites=[
                (keys.job(p), keys.dependents(p), keys.released(p)) for p in reg.prerequisites
            ],
            label_keys=[keys.label(k, v) for k, v in reg.labels.items()],
            prerequisite_jids=reg.prerequisites,
            handoff=handoff.commands,
            staged_fields=handoff.staged,
        )
        created, flat, more = scripts.outcome(reply, reg.jid)
        if more:
            yield from self.drain()
        return Registered(self.decode(reg.jid, flat), bool(created))

    def enqueue(
        self,
        func: Any,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        jid: str | None = None,
        **fields: Unpack[RegisterFields],
    ) -> Plan[str]:
        """Submit ``func(*args, **kwargs)`` as a tracked RQ job; returns its jid.

        The jid is the RQ job id (a new uuid unless given). ``fields`` are register's:
        ``queue``, ``prerequisites``, ``parent``, ``labels``, ``reserve_for``,
        ``max_attempts``, ``delay``... The job reaches its RQ queue when released.
        """
        jid = jid or uuid.uuid4().hex
        fields["payload"] = {
            "func": func_name(func),
            "args": list(args),
            "kwargs": dict(kwargs or {}),
        }
        return self._jid_of(jid, self.register(jid, **fields))

    def _jid_of(self, jid: str, registering: Plan[Registered]) -> Plan[str]:
        yield from registering
        return jid

    def start(self, jid: str, *, reserve_for: int | None = None) -> Plan[Track]:
        """A worker takes the job: working, attempts + 1, reserved for ``reserve_for`` s."""
        check_name("jid", jid)
        if reserve_for is not None:
            check_int("reserve_for", reserve_for, 1, MAX_RESERVE_FOR)
        return self._transition("start", jid, reserve_for=reserve_for)

    def track_set(
        self,
        jid: str,
        *,
        percent: object = None,
        desc: object = None,
        reserve_until: object = None,
        attempt: object = None,
    ) -> Plan[None]:
        """TRACK SET: report progress and/or extend the reservation (later only).

        One round trip. A refusal (a cancelled or finished job, an earlier reserve_until)
        raises and applies nothing; TRACK GET reads the track back. ``attempt`` (the
        ``attempts`` of the track ``start`` returned) fences the write: once that attempt
        is not running (reaped, or the job started again) it raises JobSuperseded.
        """
        update = track_update(
            jid, percent=percent, desc=desc, reserve_until=reserve_until, attempt=attempt
        )
        return self._track_set(update, returning=False)

    def track_set_returning(
        self,
        jid: str,
        *,
        percent: object = None,
        desc: object = None,
        reserve_until: object = None,
        attempt: object = None,
    ) -> Plan[Track]:
        """TRACK SET that also returns the track as the write left it (one round trip)."""
        update = track_update(
            jid, percent=percent, desc=desc, reserve_until=reserve_until, attempt=attempt
        )
        return self._track_set(update, returning=True)

    def _track_set(self, update: TrackUpdate, *, returning: bool) -> Plan[Any]:
        jid = update.jid
        reply = yield self._call("track_set", jid, **_update_args(update), returning=returning)
        if reply[0] != scripts.OK:
            raise scripts.error(reply, jid)
        return self.decode(jid, reply[2]) if returning else None

    def track_set_many(
        self, updates: Iterable[TrackUpdate | Mapping[str, Any]]
    ) -> Plan[list[TrackerError | None]]:
        """Many TRACK SETs in one round trip per 1,000; each succeeds or fails on its own:
        the result holds None for an update applied, else the error that refused it.

        Every update is validated first: one invalid update raises before anything is sent.
        """
        checked = [
            checked_update(u) if isinstance(u, TrackUpdate) else _update_from(u) for u in updates
        ]
        return self._track_set_many(checked)

    def _track_set_many(self, updates: Sequence[TrackUpdate]) -> Plan[list[TrackerError | None]]:
        results: list[TrackerError | None] = []
        for start in range(0, len(updates), MAX_BATCH):
            chunk = updates[start : start + MAX_BATCH]
            reply = yield self._call(
                "track_set_many",
                jobs=[self.keys.job(u.jid) for u in chunk],
                updates=[_update_args(u) for u in chunk],
            )
            for update, one in zip(chunk, scripts.outcome(reply, ""), strict=True):
                ok = one[0] == scripts.OK
                results.append(None if ok else scripts.error(one, update.jid))  # type: ignore[arg-type]
        return results

    def success(self, jid: str, *, attempt: object = None) -> Plan[Track]:
        """The job finished well; with ``attempt``, only if that is its current attempt."""
        check_name("jid", jid)
        return self._transition("success", jid, attempt=check_attempt(attempt))

    def fail(
        self,
        jid: str,
        error: str,
        *,
        retry: bool = True,
        error_type: str | None = None,
        attempt: object = None,
        traceback: str | None = None,
    ) -> Plan[Track]:
        """An attempt failed: ``failed`` if ``retry`` and attempts remain, else ``dead``.
        With ``attempt``, only if that is the job's current attempt. ``traceback`` (the
        worker's) is kept with the error, cut to its last 8 KiB."""
        check_name("jid", jid)
        check_text("error", error, MAX_ERROR)
        if error_type is not None:
            check_text("error_type", error_type, 256)
        if not isinstance(retry, bool):
            raise InvalidInput("retry", f"expected true or false, got {type(retry).__name__}")
        return self._transition(
            "fail",
            jid,
            error=error,
            error_type=error_type,
            retry=retry,
            backoff=RETRY_BACKOFF_MS,
            attempt=check_attempt(attempt),
            traceback=None if traceback is None else cut_traceback(traceback),
        )

    def retry(self, jid: str, *, dependents: bool = False) -> Plan[Track]:
        """Put a dead, failed or cancelled job that has a payload back to its queue:
        ``enqueued``, attempts going on (``max_attempts`` one more if they ran out), errors
        kept. What its end blocked waits again; with ``dependents``, the dependents its
        death killed wait again too."""
        check_name("jid", jid)
        check_bool("dependents", dependents)
        return self._transition("retry", jid, revive=dependents)

    def delete(self, jid: str) -> Plan[State]:
        """Forget a finished job (success, dead, cancelled): its track and every index
        entry; returns the state it had. A job registered later finds it unknown."""
        check_name("jid", jid)
        reply = yield self._call("delete", jid)
        was = scripts.outcome(reply, jid)
        return State(was.decode() if isinstance(was, bytes) else was)

    def cancel(self, jid: str) -> Plan[Track]:
        """Stop the job for good: a worker running it learns it at its next report."""
        return self._transition("cancel", check_name("jid", jid))

    def pause(self, jid: str) -> Plan[Track]:
        """Hold a waiting or enqueued job (taken back from its queue) until resumed."""
        return self._transition("pause", check_name("jid", jid))

    def resume(self, jid: str) -> Plan[Track]:
        """Let a paused job go on: waiting again, or back to its queue."""
        return self._transition("resume", check_name("jid", jid))


def _shown(reg: Registration) -> str:
    """The payload as the track carries it, as JSON (what JSON cannot hold, as text)."""
    shown = reg.shown_payload()
    return "" if shown is None else json.dumps(shown, default=str, ensure_ascii=False)


def _update_from(item: Mapping[str, Any]) -> TrackUpdate:
    if not isinstance(item, Mapping):
        raise InvalidInput("updates", f"expected objects, got {type(item).__name__}")
    unknown = set(item) - {"jid", "percent", "desc", "reserve_until", "attempt"}
    if unknown:
        raise InvalidInput("updates", f"unknown fields {sorted(unknown)}")
    if "jid" not in item:
        raise InvalidInput("jid", "is required")
    return track_update(**item)


def _update_args(update: TrackUpdate) -> dict[str, Any]:
    """The arguments of one TRACK SET, by name (see interface.py)."""
    return {
        "percent": update.percent,
        "desc_given": update.desc is not None,
        "desc": update.desc,
        "reserve_until": update.reserve_until,
        "attempt": update.attempt,
    }
