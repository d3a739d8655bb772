"""Every Redis key tracker uses, built here and nowhere else.

Key layout for namespace ``ns``::

    {ns}:j:<jid>          hash    the track of one job (fields below)
    {ns}:p:<jid>          string  the job's payload (msgpack) until it finishes
    {ns}:s:<state>        zset    jobs in that state; score = queue band + updated_at (ms)
    {ns}:r                zset    working jobs by reserve_until (ms): the reaper's list
    {ns}:q                hash    queue name -> queue id (the band of the state zsets)
    {ns}:ev               stream  one entry per change, holding the track; capped
    {ns}:l:<key>=<value>  zset    jobs carrying that label, score = updated_at (ms)
    {ns}:lx               set     the label zsets in use, for the pruner

Fields of ``{ns}:j:<jid>``: ``s`` state, ``q`` queue, ``Q`` queue id, ``c`` created,
``u`` updated, ``p`` percent, ``d`` desc, ``r`` reserve_until, ``rf`` reserve_for
(seconds), ``a`` attempts, ``m`` max_attempts, ``e`` error history (JSON, newest
first), ``l`` labels (msgpack), ``lk`` the job's label zsets (newline separated),
``h`` the fingerprint of the registration body.

Why a state zset is banded by queue: a worker reports with a jid alone, so a
script cannot be handed a per-queue key without first reading the job. Instead
each state has one zset whose score is ``queue_id * 2**42 + ms``: the band of one
queue is a score range, so "enqueued jobs of queue q, newest first" is one
``ZREVRANGEBYSCORE`` and every key a script touches is known before it runs.
2**42 ms reaches the year 2109 and leaves 11 bits: 2047 queues per namespace.

Why every key carries the hash tag ``{ns}`` rather than one per job: a script
updates a job together with its namespace's indexes (and, for dependencies,
other jobs) atomically, which Redis Cluster allows only within one slot. A
namespace therefore lives in one slot; separate namespaces spread out.
"""

from __future__ import annotations

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
        self.labels_in_use = self.prefix + "lx"
        self.states = {state: self.prefix + "s:" + state.value for state in STORED_STATES}
        #: The keys every job script receives after the job's own, in this order.
        self.shared: tuple[str, ...] = (
            self.events,
            self.reservations,
            self.queues,
            *self.states.values(),
        )

    def job(self, jid: str) -> str:
        return self.prefix + "j:" + jid

    def payload(self, jid: str) -> str:
        return self.prefix + "p:" + jid

    def state(self, state: State) -> str:
        return self.states[state]

    def label(self, key: str, value: str) -> str:
        return self.prefix + "l:" + key + "=" + value

    def for_job(self, jid: str) -> list[str]:
        """``KEYS`` of a script that changes one job: :attr:`shared`, then the job's own."""
        return [*self.shared, self.prefix + "j:" + jid, self.prefix + "p:" + jid]
