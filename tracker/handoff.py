"""The hand-off of released jobs to RQ, recorded at registration and replayed by Lua.

A job with a payload must appear in its RQ queue exactly once, even if a process
dies between steps. So the hand-off is not a second step at all: at registration
we let RQ itself build its enqueue (the job hash, the queue push) into a Redis
pipeline that is never sent, and store those commands with the track. The script
that releases the job replays them in the same atomic call that moves its state.
The first command stored undoes the push, for pause.

What is stored (the list ``{ns}:p:<jid>``, see keys.py) starts with the version of its
format, ``HANDOFF_VERSION``; then the commands, ready to run, one list element per
argument, each command preceded by its number of arguments: the release of a big
fan-out replays thousands of them, and splitting an encoded command in Lua cost more
than the rest of the hand-off. lua/_graph.lua reads only the version it names (the
same ``HANDOFF_VERSION``, a test holds the two together): a hand-off stored in another
format, or no longer stored at all, fails its job with error type ``HandoffUnreadable``
when it is released, rather than leaving it in no queue. RQ's job hash (its HSETs, about
15 fields) is not replayed field by field: it is written at registration to a staged
hash of tracker's, and the release copies it (``COPY ... REPLACE``, then ``PERSIST``: the
staged hash expires with the job, RQ's must not): fewer arguments to pass through Lua,
and fewer bytes to append to an AOF, per released job.

Since what is replayed is RQ's own enqueue, recorded by the RQ installed, tracker runs
only on the RQ releases listed in ``RQ_TESTED``: those tests/test_rq_contract.py (a job
released by tracker lands in RQ as ``Queue.enqueue`` puts it) and the rest of the suite
passed on. Importing this module with another RQ raises :class:`UnsupportedRQ`; how to
add a release is in docs/development.md.

A hand-off can still be lost after it happened: a worker takes the job from its queue
and dies before its ``start`` reaches the tracker. So registration also stores where
to look for the job in RQ (its queue, the queue's intermediate list where a worker's
dequeue moves it, RQ's job hash), and the release schedules a look at the job
``TRACKER_HANDOFF_TIMEOUT`` later: ``check_handoff`` in lua/_graph.lua hands it again,
or fails it, when it left its queue and never started.

RQ queue names are RQ's own: every tracker namespace shares them (SPEC section 8).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import redis
import rq
from rq import Queue

from .errors import InvalidInput, UnsupportedRQ

#: The first element of every stored hand-off: the version of its format. lua/_graph.lua
#: names the same one; a change to what is stored gets a new version.
HANDOFF_VERSION = "v1"

#: The RQ releases, as (major, minor), that the suite passed on. pyproject.toml's bound
#: on rq admits these and no other (tests/test_rq_contract.py holds them together).
RQ_TESTED: tuple[tuple[int, int], ...] = ((3, 0),)


def check_rq(installed: str) -> None:
    """Raise :class:`UnsupportedRQ` unless RQ ``installed`` (its version) is in a tested
    release: the hand-off stores what that RQ's enqueue writes, and another may write
    something else."""
    release = tuple(int(part) for part in re.findall(r"\d+", installed)[:2])
    if release not in RQ_TESTED:
        tested = ", ".join(f"{major}.{minor}" for major, minor in RQ_TESTED)
        raise UnsupportedRQ(
            f"rq {installed} is installed, but tracker hands jobs to RQ only on the releases"
            f" it was tested on: rq {tested} (install 'rq{rq_requirement()}')"
        )


def rq_requirement() -> str:
    """The version bound on rq that admits exactly the releases of ``RQ_TESTED``, as
    pyproject.toml states it."""
    low, high = min(RQ_TESTED), max(RQ_TESTED)
    return f">={low[0]}.{low[1]},<{high[0]}.{high[1] + 1}"


check_rq(rq.__version__)

_RQ_JOB_ID = re.compile(r"[A-Za-z0-9_-]+")

# Never connects: it only lends RQ a pipeline to write into, and an encoder.
_OFFLINE = redis.Redis(host="localhost", port=6379)
_ENCODER = _OFFLINE.get_encoder()


def _merged(commands: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``commands`` with each run of HSETs of one key written as one HSET, each field
    once with its last value: the hash ends the same, fields in the same order."""
    out: list[tuple[Any, ...]] = []
    for command in commands:
        last = out[-1] if out else None
        if last is None or not (_is_hset(command) and _is_hset(last) and command[1] == last[1]):
            out.append(command)
            continue
        fields = dict(zip(last[2::2], last[3::2], strict=True))
        fields.update(zip(command[2::2], command[3::2], strict=True))
        out[-1] = (*last[:2], *(item for pair in fields.items() for item in pair))
    return out


def _is_hset(command: tuple[Any, ...]) -> bool:
    return str(command[0]).upper() == "HSET"


def _flat(commands: list[tuple[Any, ...]]) -> list[bytes]:
    out: list[bytes] = []
    for args in commands:
        out.append(b"%d" % len(args))
        out.extend(_ENCODER.encode(arg) for arg in args)  # type: ignore[no-untyped-call]
    return out


@dataclass(frozen=True, slots=True)
class Handoff:
    """What registration stores for a job with a payload (see above)."""

    #: The version, then the commands, flat: a count, then that many arguments; the first
    #: command undoes the push.
    commands: list[bytes]
    #: RQ's job hash as field/value pairs, for the staged hash (empty: nothing staged).
    staged: list[bytes]
    #: Where a check finds the job in RQ: its queue, that queue's intermediate list, its hash.
    probe: tuple[str, ...] = ()


def rq_handoff(jid: str, queue: str, payload: dict[str, Any], staged_key: str) -> Handoff:
    """The hand-off that puts ``jid`` into RQ queue ``queue``, its job hash staged at
    ``staged_key``."""
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
    commands = _merged([args for args, _options in pipe.command_stack])
    staged: list[bytes] = []
    for n, command in enumerate(commands):
        if _is_hset(command) and command[1] == job.key:
            staged = [_ENCODER.encode(arg) for arg in command[2:]]  # type: ignore[no-untyped-call]
            commands[n : n + 1] = [("COPY", staged_key, job.key, "REPLACE"), ("PERSIST", job.key)]
            break
    probe = (rq_queue.key, rq_queue.intermediate_queue_key, job.key)
    flat = _flat([("LREM", rq_queue.key, 0, jid), *commands])
    return Handoff([HANDOFF_VERSION.encode(), *flat], staged, probe)
