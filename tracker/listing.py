"""Reads: TRACK GET, a job's state, lists of jobs and counts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import scripts
from .calls import Plan, PlanBase, Read
from .errors import InvalidInput
from .fields import stored
from .keys import QUEUE_BAND
from .model import (
    MAX_DIGITS,
    MAX_LIST_LIMIT,
    STORED_STATES,
    State,
    Track,
    check_int,
    check_name,
    check_state,
    parse_label,
)
from .records import Page, Stats

# Budgets: a call may hold Redis a few ms at most, loaded machine included;
# bench/scale.py measures where these leave them.
#: Entries of a label or children zset one call reads at most, and calls one page makes
#: at most before it ends where the walk stopped.
INDEX_BUDGET = 400
INDEX_CALLS = 3
#: Entries (and bands, which count one each) one call of list.lua reads at most.
LIST_BUDGET = 200
F_STATE, F_ATTEMPTS = stored("state"), stored("attempts")


class Listing(PlanBase):
    def track_get(self, jid: str) -> Plan[Track]:
        """TRACK GET: the job's track, with state ``unknown`` when it has none."""
        check_name("jid", jid)
        (fields,) = yield Read([("hgetall", (self.keys.job(jid),))])
        return self.decode(jid, fields)

    def track_get_many(self, jids: Sequence[str]) -> Plan[list[Track]]:
        """TRACK GET of many jobs in one round trip, in order (``unknown`` where none)."""
        for jid in jids:
            check_name("jid", jid)
        if not jids:
            return []
        replies = yield Read([("hgetall", (self.keys.job(jid),)) for jid in jids])
        return [self.decode(jid, fields) for jid, fields in zip(jids, replies, strict=True)]

    def state(self, jid: str) -> Plan[State]:
        """Only the job's state: what a worker polls to learn of a cancel."""
        check_name("jid", jid)
        (raw,) = yield Read([("hget", (self.keys.job(jid), F_STATE))])
        return State.UNKNOWN if raw is None else State(raw.decode())

    def state_and_attempt(self, jid: str) -> Plan[tuple[State, int]]:
        """The job's state and current attempt (0 before its first start): what a worker
        polls to learn that its job was cancelled, or reaped and started again."""
        check_name("jid", jid)
        ((state, attempt),) = yield Read([("hmget", (self.keys.job(jid), [F_STATE, F_ATTEMPTS]))])
        if state is None:
            return State.UNKNOWN, 0
        return State(state.decode()), int(attempt or 0)

    def ping(self) -> Plan[bool]:
        """Whether Redis answers (StoreUnavailable when it does not)."""
        (pong,) = yield Read([("ping", ())])
        return bool(pong)

    def stats(self) -> Plan[Stats]:
        """Counts of live jobs by state, overall and per queue."""
        reply = yield self._call("stats")
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
        parent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Plan[Page]:
        """Live jobs, newest ``updated_at`` first, filtered; pass ``Page.next`` as
        ``cursor`` for the next page."""
        states = [check_state(state)] if state is not None else [s.value for s in STORED_STATES]
        if queue is not None:
            check_name("queue", queue)
        check_int("limit", limit, 1, MAX_LIST_LIMIT)
        after = _parse_cursor(cursor)
        if parent is not None:
            check_name("parent", parent)
        index = None
        if label is not None:  # with a parent too: the label's jobs that are its children
            index = self._label_index(label)
        elif parent is not None:
            index = self.keys.children(parent)
        if index is not None:
            return (yield from self._list_index(index, states, queue, parent, limit, after))
        ids = yield from self._band_ids(states, queue, limit + 1, after)
        return (yield from self._page(ids, limit, lambda track: True))

    def _band_ids(
        self, states: list[str], queue: str | None, want: int, after: tuple[int, str] | None
    ) -> Plan[list[tuple[str, int]]]:
        """The ``want`` newest jobs (jid, updated_at) of the state zsets' bands (one state's
        jobs of one queue), after the cursor, merged.

        Each band is asked for a few jobs, then those whose last job read is newer than
        the ``want``-th newest found so far for twice as many more (up to ``want``): a
        band not asked again holds nothing newer than the last wanted. Calls read
        at most :data:`LIST_BUDGET` entries each, so many queues cost more calls, never a
        longer one.
        """
        queues, *sizes = yield Read(
            [
                ("hgetall", (self.keys.queues,)),
                *(("zcard", (self.keys.states[State(state)],)) for state in states),
            ]
        )
        qids = sorted(
            int(qid) for name, qid in queues.items() if queue is None or name.decode() == queue
        )
        held = [state for state, size in zip(states, sizes, strict=True) if size]
        bands = [_Band(state, qid, after) for state in held for qid in qids]
        first = max(1, min(want, -(-2 * want // max(len(bands), 1)), LIST_BUDGET - 1))
        asked = [(band, first) for band in bands]
        found: list[tuple[int, str]] = []
        while asked:
            call: list[tuple[_Band, int]] = []
            cost = 0  # a band read counts one, and each entry it may return
            for band, count in asked:
                if call and cost + 1 + count > LIST_BUDGET:
                    yield from self._read_bands(call)
                    call, cost = [], 0
                call.append((band, count))
                cost += 1 + count
            yield from self._read_bands(call)
            found = sorted((entry for band in bands for entry in band.found), reverse=True)
            end = found[want - 1] if len(found) >= want else None
            asked = [
                (band, min(want, 2 * band.asked, LIST_BUDGET - 1))
                for band in bands
                if band.more and (end is None or band.position is None or band.position > end)
            ]
        # a job that moved between states while the bands were read shows once
        ids: list[tuple[str, int]] = []
        shown: set[str] = set()
        for ms, jid in found[:want]:
            if jid not in shown:
                shown.add(jid)
                ids.append((jid, ms))
        return ids

    def _read_bands(self, asked: list[tuple[_Band, int]]) -> Plan[None]:
        """One call of list.lua for these bands, each asked for that many more jobs."""
        bands = []
        for band, count in asked:
            ms, jid = band.position or ("", "")
            bands.append((band.state, band.qid, ms, jid, count))
        reply = yield self._call("list", bands=bands)
        flat, at = scripts.outcome(reply, ""), 0
        for band, count in asked:
            n = int(flat[at])
            entries = [
                (int(flat[i + 1]), flat[i].decode()) for i in range(at + 1, at + 1 + 2 * n, 2)
            ]
            at += 1 + 2 * n
            band.found += entries
            band.asked, band.more = count, n == count
            if entries:
                band.position = entries[-1]

    def _label_index(self, label: str) -> str:
        return self.keys.label(*parse_label(label))

    def _list_index(
        self,
        index: str,
        states: list[str],
        queue: str | None,
        parent: str | None,
        limit: int,
        after: tuple[int, str] | None,
    ) -> Plan[Page]:
        """Walk a label or children zset (job keys by updated_at), filtering as it goes.

        Each call reads at most :data:`INDEX_BUDGET` entries; after :data:`INDEX_CALLS`
        of them the page ends where the walk stopped, with ``next`` to go on from there,
        even when it found nothing (a filter that matches little among many). Unless one
        state is asked for that holds fewer jobs than the zset and than such a page reads:
        then the state's whole zset is read instead, and of its jobs after the cursor those
        the zset holds are kept (one ZMSCORE): a rare state takes one page.
        """
        wanted: set[str] = set(states)

        def keep(track: Track) -> bool:
            return (
                track.state.value in wanted
                and (queue is None or track.queue == queue)
                and (parent is None or track.parent == parent)
            )

        if len(states) == 1:
            state_key = self.keys.states[State(states[0])]
            index_size, state_size = yield Read([("zcard", (index,)), ("zcard", (state_key,))])
            if state_size < min(index_size, INDEX_BUDGET * INDEX_CALLS):
                entries, qid = yield Read(
                    [
                        ("zrange", (state_key, 0, -1, False, True)),
                        ("hget", (self.keys.queues, queue or "")),
                    ]
                )
                ids = sorted(
                    (
                        (jid.decode(), ms)
                        for jid, score in entries
                        for band, ms in [divmod(int(score), QUEUE_BAND)]
                        if (queue is None or str(band).encode() == qid)
                        and (after is None or (ms, jid.decode()) < after)
                    ),
                    key=lambda entry: (entry[1], entry[0]),
                    reverse=True,
                )
                if ids:
                    members = [self.keys.job(jid) for jid, _ in ids]
                    (scores,) = yield Read([("zmscore", (index, members))])
                    ids = [e for e, score in zip(ids, scores, strict=True) if score is not None]
                return (yield from self._page(ids, limit, keep))

        chosen: list[tuple[str, int]] = []
        cursor, walked = after, ""
        for _ in range(INDEX_CALLS):
            reply = yield self._call(
                "list_index",
                index=index,
                state_names=",".join(states),
                queue=queue,
                after_ms=None if cursor is None else cursor[0],
                after_key=None if cursor is None else self.keys.job(cursor[1]),
                want=limit + 1 - len(chosen),
                reads=INDEX_BUDGET,
            )
            flat, resume = scripts.outcome(reply, "")
            chosen += [(flat[i].decode(), int(flat[i + 1])) for i in range(0, len(flat), 2)]
            if not resume:
                return (yield from self._page(chosen, limit, keep))
            ms, key = resume.decode().split("\n")
            cursor = (int(ms), self.keys.jid_of(key))
            walked = f"{cursor[0]}.{cursor[1]}"
        return (yield from self._page(chosen, limit, keep, walked))

    def _page(
        self,
        ids: list[tuple[str, int]],
        limit: int,
        keep: Callable[[Track], bool],
        resume: str | None = None,
    ) -> Plan[Page]:
        """The tracks of ``ids`` still kept; ``next`` after the last when more were found
        than ``limit``, else ``resume`` (where a walk stopped before its end)."""
        if len(ids) > limit:  # one more was found: the next page starts after the limit-th
            ids = ids[:limit]
            resume = f"{ids[-1][1]}.{ids[-1][0]}"
        if not ids:
            return Page([], resume)
        hashes = yield Read([("hgetall", (self.keys.job(jid),)) for jid, _ in ids])
        tracks = [self.decode(jid, fields) for (jid, _), fields in zip(ids, hashes, strict=True)]
        return Page(
            [track for track in tracks if track.state is not State.UNKNOWN and keep(track)], resume
        )

    def enqueued_ages(self) -> Plan[dict[str, int]]:
        """Per queue, how long (ms, by the server's clock) its oldest enqueued job has
        waited since it was enqueued or last updated."""
        server_time, queues = yield Read([("time", ()), ("hgetall", (self.keys.queues,))])
        now = self._now_ms(server_time)
        index = self.keys.state(State.ENQUEUED)
        names = [(name.decode(), int(qid) * QUEUE_BAND) for name, qid in queues.items()]
        if not names:
            return {}
        # entries older than the pending lifetime belong to expired jobs (see prune.lua)
        horizon = now - self.settings.pending_ttl * 1000
        firsts = yield Read(
            [
                ("zrangebyscore", (index, band + horizon, band + QUEUE_BAND - 1, 0, 1, True))
                for _, band in names
            ]
        )
        return {
            name: max(0, now - (int(first[0][1]) - band))
            for (name, band), first in zip(names, firsts, strict=True)
            if first
        }


@dataclass(slots=True)
class _Band:
    """One state's jobs of one queue, as a listing has read them: ``found`` newest first
    as ``(ms, jid)``, ``position`` the last read (or the cursor), ``more`` while a read
    filled what it asked for."""

    state: str
    qid: int
    position: tuple[int, str] | None
    found: list[tuple[int, str]] = field(default_factory=list)
    asked: int = 0
    more: bool = True


def _parse_cursor(cursor: str | None) -> tuple[int, str] | None:
    """``None`` or ``""``: the first page."""
    if not cursor:
        return None
    ms, _, jid = str(cursor).partition(".")
    if not (ms.isascii() and ms.isdigit() and len(ms) <= MAX_DIGITS) or not jid:
        raise InvalidInput("cursor", "not a cursor this server returned")
    return int(ms), check_name("cursor", jid)
