"""The event stream: every change to a track, in order, for SSE readers and metrics."""

from __future__ import annotations

import logging
from typing import Any

from .calls import Plan, PlanBase, Read
from .model import Track, check_name
from .records import UNREADABLE, Event, decode_event

log = logging.getLogger("tracker")


class Events(PlanBase):
    def events(
        self, after: str, count: int = 500, block_ms: int | None = None, *, decode: bool = True
    ) -> Plan[list[Event]]:
        """Events after the id ``after`` (``"0"`` from the oldest still held), oldest first;
        with ``block_ms``, wait that long for one to come. An entry this version cannot
        read is skipped; with ``decode=False`` an event's track is decoded only when
        first read (and may raise then), for a reader that mostly counts events."""
        if block_ms is None:
            (entries,) = yield Read([("xrange", (self.keys.events, f"({after}", "+", count))])
        else:
            (reply,) = yield Read([("xread", ({self.keys.events: after}, count, block_ms))])
            entries = reply[0][1] if reply else []
        decoded = []
        for entry_id, fields in entries:
            try:
                event = decode_event(self.keys, entry_id, fields)
                if decode:
                    event.track  # noqa: B018 - decoded now, so that a bad one is skipped
            except UNREADABLE:  # not written by this version's scripts
                log.warning("skipped an event it cannot read: %r", entry_id)
                continue
            decoded.append(event)
        return decoded

    def newest_event(self) -> Plan[str]:
        """The id of the newest event (``0-0`` when there is none)."""
        (newest,) = yield Read([self._newest])
        return _event_id(newest)

    def snapshot(self, jid: str) -> Plan[tuple[str, Track]]:
        """The id of the newest event, then the job's track: a stream of the job's
        events after that id misses nothing the track does not already show."""
        check_name("jid", jid)
        newest, fields = yield Read([self._newest, ("hgetall", (self.keys.job(jid),))])
        return _event_id(newest), self.decode(jid, fields)

    @property
    def _newest(self) -> tuple[str, tuple[Any, ...]]:
        return ("xrevrange", (self.keys.events, "+", "-", 1))


def _event_id(newest: list[Any]) -> str:
    return str(newest[0][0].decode()) if newest else "0-0"
