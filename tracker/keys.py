"""Every Redis key tracker uses, built here and nowhere else.

Key layout for namespace ``ns``::

    {ns}:j:<jid>          hash    the track of one job (fields below)
    {ns}:p:<jid>          list    the job's queue hand-off, until it finishes (see handoff.py)
    {ns}:x:<jid>          hash    RQ's job hash for it, staged until it finishes (ditto)
    {ns}:s:<state>        zset    jobs in that state; score = queue band + updated_at (ms)
    {ns}:r                zset    working jobs by reserve_until (ms): the reaper's list
    {ns}:q                hash    queue name -> queue id (the band of the state zsets)
    {ns}:qf               list    queue ids freed by forgotten queues, for new names
    {ns}:sd               zset    the state zsets' bands ('<state>:<queue id>'), by when
                                  each may next hold an expired job (ms), for the pruner
    {ns}:sq               hash    queue id -> name of the queues whose bands are in
                                  {ns}:sd: recorded when a name gets its id, gone when
                                  the queue is forgotten (see queue_id in lua/_common.lua)
    {ns}:ev               stream  one entry per change; capped (see "Events" below)
    {ns}:l:<key>=<value>  zset    job keys carrying that label, score = updated_at (ms)
    {ns}:c:<batch>        zset    job keys of a batch's children, score = updated_at (ms)
    {ns}:ld               zset    the label and children zsets in use, for the pruner;
                                  score = when each may next hold an expired job (ms)
    {ns}:lx               set     the same, unscored, as versions before ld kept them;
                                  the pruner moves what it finds there into ld
    {ns}:d:<jid>          set     job keys waiting for <jid> to succeed (its dependents)
    {ns}:dr:<jid>         set     those its success released (or its death killed), kept
                                  as long as its track, so its graph still shows them
    {ns}:g:<batch>        set     job keys of children held while their batch waits
    {ns}:o:<batch>        set     job keys of a batch's unfinished children
    {ns}:sched            zset    job keys by the moment (ms) something is due: a delayed
                                  release or a backoff's hand-off (eligible_at), or the check
                                  of a hand-off not started (``hd``, see handoff.py)
    {ns}:fan              list    fan-out work left for the next call (see lua/_graph.lua)
    {ns}:w                hash    worker name -> what it runs, its counts (msgpack; workers.py)
    {ns}:wb               zset    worker names by their last heartbeat (ms)

Fields of ``{ns}:j:<jid>``: one table, in fields.py, names every one with what it
holds (docs/development.md lists it). A dead or cancelled job keeps its hand-off
(``p:`` and ``x:``) as long as its track, for a retry; a success drops it.

Events: an entry of ``{ns}:ev`` is ``jid``, ``w`` (the state the change left, empty
for a new job; none for a TRACK SET), then the whole track: the fields of the hash
that make it (those ``decode_track`` in records.py reads: the ``track`` fields of
fields.py, in TRACK_FIELDS' order), never the scripts' ``own`` fields, nor the
``shown`` ones (``pj`` and ``tb``, which may be kilobytes). A TRACK SET's event holds
the whole track too, so a reader never merges. A release from ``waiting`` to
``enqueued`` also carries ``rl``, the release latency: the
milliseconds from the moment the job became releasable (the success of its last
prerequisite, or the release of the batch that held it; for a delayed job its
``eligible_at``) to this commit. It is 0 when the release happened in the call that
made it possible, and more for a fan-out chunk drained later or a promote. ``rl`` is
in the event only, never in the hash. A job enqueued by its own registration or
resume, and a batch released to ``working``, carry none. A deletion's event carries
``w``, ``s`` ``unknown``, ``u`` and ``q``.

Keys of jobs reached through data (a dependent, a parent) are stored, as built
here, in the sets and fields above; the scripts read them and never build one.

Why a state zset is banded by queue: a worker reports with a jid alone, so a
script cannot be handed a per-queue key without first reading the job. Instead
each state has one zset whose score is ``queue_id * 2**42 + ms``: the band of one
queue is a score range, so "enqueued jobs of queue q, newest first" is one
``ZREVRANGEBYSCORE`` and every key a script touches is known before it runs.
2**42 ms reaches the year 2109 and leaves 11 bits: 2047 queues per namespace at once.
A queue none of whose jobs is live is forgotten (``forget_queue`` in lua/_common.lua):
its name leaves ``{ns}:q`` (and ``{ns}:sq``, its bands ``{ns}:sd``) and its id waits in
``{ns}:qf`` for the next new name, so a namespace may see any number of queue names
over its life. The pruner finds such a queue when one of its bands falls due and holds
no live job (lua/prune.lua). Band 0 is no queue's: it holds the successes a forgotten
queue still remembered (see ``DONE_TTL``), in ``{ns}:sd`` as ``success:0``.

Why every key carries the hash tag ``{ns}`` rather than one per job: a script
updates a job together with its namespace's indexes (and, for dependencies,
other jobs) atomically, which Redis Cluster allows only within one slot. A
namespace therefore lives in one slot; separate namespaces spread out.
"""

from __future__ import annotations

from .interface import SHARED_KEYS
from .model import STORED_STATES, State, check_name

QUEUE_BAND = 2**42
MAX_QUEUES = 2047


class Keys:
    """The key names of one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = check_name("namespace", namespace)
        self.prefix = "{" + namespace + "}:"
        self.events = self.prefix + "ev"
        self.reservations = self.prefix + "r"
        self.queues = self.prefix + "q"
        self.free_queue_ids = self.prefix + "qf"
        self.bands_due = self.prefix + "sd"
        self.queues_recorded = self.prefix + "sq"
        self.labels_in_use = self.prefix + "ld"
        self.labels_in_use_unscored = self.prefix + "lx"
        self.schedule = self.prefix + "sched"
        self.fanout = self.prefix + "fan"
        self.workers = self.prefix + "w"
        self.worker_beats = self.prefix + "wb"
        self.states = {state: self.prefix + "s:" + state.value for state in STORED_STATES}
        #: The keys every script receives first, in the order of interface.SHARED_KEYS.
        self.shared: tuple[str, ...] = tuple(self.named(name) for _, name in SHARED_KEYS)
        #: Length of a job key's prefix: scripts read a jid off a stored job key with it.
        self.job_prefix_len = len(self.job(""))

    def job(self, jid: str) -> str:
        return self.prefix + "j:" + jid

    def payload(self, jid: str) -> str:
        return self.prefix + "p:" + jid

    def staged(self, jid: str) -> str:
        return self.prefix + "x:" + jid

    def state(self, state: State) -> str:
        return self.states[state]

    def label(self, key: str, value: str) -> str:
        return self.prefix + "l:" + key + "=" + value

    def dependents(self, jid: str) -> str:
        return self.prefix + "d:" + jid

    def released(self, jid: str) -> str:
        return self.prefix + "dr:" + jid

    def gate(self, batch: str) -> str:
        return self.prefix + "g:" + batch

    def open_children(self, batch: str) -> str:
        return self.prefix + "o:" + batch

    def children(self, batch: str) -> str:
        return self.prefix + "c:" + batch

    def jid_of(self, job_key: bytes | str) -> str:
        """The jid of a job key read back from Redis."""
        text = job_key.decode() if isinstance(job_key, bytes) else job_key
        return text[self.job_prefix_len :]

    def named(self, name: str, jid: str | None = None) -> str:
        """The key a script's declaration names (see interface.py): a key of the namespace
        (``events``, ``state:working``, ``bands_due``...), or of job ``jid`` (``job``,
        ``payload``, ``staged``, ``released``, ...)."""
        if name in _JOB_KEYS:
            if jid is None:
                raise ValueError(f"the key {name!r} is a job's: a jid is needed")
            return _JOB_KEYS[name](self, jid)
        if name.startswith("state:"):
            return self.states[State(name[len("state:") :])]
        if name in _NAMESPACE_KEYS:
            return str(getattr(self, name))
        raise ValueError(f"no key is named {name!r}")


#: Keys of one job, by the name a script's declaration gives them.
_JOB_KEYS = {
    "job": Keys.job,
    "payload": Keys.payload,
    "staged": Keys.staged,
    "dependents": Keys.dependents,
    "released": Keys.released,
    "gate": Keys.gate,
    "open_children": Keys.open_children,
    "children": Keys.children,
}
#: Keys of the namespace, by the name a script's declaration gives them.
_NAMESPACE_KEYS = frozenset(
    {
        "events",
        "reservations",
        "queues",
        "free_queue_ids",
        "bands_due",
        "queues_recorded",
        "labels_in_use",
        "labels_in_use_unscored",
        "schedule",
        "fanout",
        "workers",
        "worker_beats",
    }
)
