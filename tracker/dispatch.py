"""The hand-off of released jobs to RQ, recorded at registration and replayed by Lua.

A job with a payload must appear in its RQ queue exactly once, even if a process
dies between steps. So the hand-off is not a second step at all: at registration
we let RQ itself build its enqueue (the job hash, the queue push) into a Redis
pipeline that is never sent, and store those commands with the track. The script
that releases the job replays them in the same atomic call that moves its state.
Element 0 of the stored list undoes the push, for pause.

RQ queue names are RQ's own: every tracker namespace shares them (SPEC section 8).
"""

from __future__ import annotations

import re
from typing import Any

import redis
from rq import Queue

from .errors import InvalidInput

_RQ_JOB_ID = re.compile(r"[A-Za-z0-9_-]+")

# Never connects: it only lends RQ a pipeline to write into, and an encoder.
_OFFLINE = redis.Redis(host="localhost", port=6379)
_ENCODER = _OFFLINE.get_encoder()


def _netstrings(args: tuple[Any, ...]) -> bytes:
    out = bytearray()
    for arg in args:
        data: bytes = _ENCODER.encode(arg)  # type: ignore[no-untyped-call]
        out += b"%d:%s," % (len(data), data)
    return bytes(out)


def rq_handoff(jid: str, queue: str, payload: dict[str, Any]) -> list[bytes]:
    """The commands that put ``jid`` into RQ queue ``queue``; the first undoes the push."""
    if not _RQ_JOB_ID.fullmatch(jid):
        raise InvalidInput(
            "jid", f"is the RQ job id of a job with a payload: only A-Z a-z 0-9 _ - ({jid!r})"
        )
    rq_queue = Queue(queue, connection=_OFFLINE)
    rq_queue.redis_server_version = (7, 0, 0)  # spares RQ a round trip to ask
    try:
        job = rq_queue.create_job(
            payload["func"],
            args=tuple(payload.get("args", ())),
            kwargs=payload.get("kwargs", {}),
            job_id=jid,
            timeout=-1,  # the tracker's reservation, kept alive by the worker, bounds a run
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInput("payload", f"RQ cannot take it: {exc}") from None
    pipe = _OFFLINE.pipeline(transaction=False)
    rq_queue.enqueue_job(job, pipeline=pipe)
    commands = [_netstrings(args) for args, _options in pipe.command_stack]
    undo = _netstrings(("LREM", rq_queue.key, 0, jid))
    return [undo, *commands]
