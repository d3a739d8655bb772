"""The graph between jobs: a batch's seal, and the jobs around one job.

Dependencies and batches are declared at registration (lifecycle.py) and kept by the
scripts (lua/_graph.lua): a job's success releases its dependents, a batch's children
decide its state, and the hand-off of a released job to its RQ queue (dispatch.py)
happens in the same call. What is left to ask of the graph from Python is here.
"""

from __future__ import annotations

from .calls import Plan, PlanBase, Read
from .errors import NotFound
from .fields import stored
from .model import MAX_LIST_LIMIT, State, Track, check_int, check_name
from .records import Related

F_STATE, F_PREREQUISITE_KEYS = stored("state"), stored("prerequisite_keys")


class Graph(PlanBase):
    def seal(self, jid: str) -> Plan[Track]:
        """A batch takes no more children; it succeeds once all of them have."""
        return self._transition("seal", check_name("jid", jid))

    def related(self, jid: str, limit: int = 100) -> Plan[Related]:
        """The jobs around one job, with their states, for the dashboard's graph.

        Prerequisites are all it was registered with; dependents are those waiting for
        it and those its success released (or its death killed); children are a batch's
        newest ``limit``. A job without a track is NotFound.
        """
        check_name("jid", jid)
        check_int("limit", limit, 1, MAX_LIST_LIMIT)
        keys = self.keys
        (own, waiting, released, children) = yield Read(
            [
                ("hmget", (keys.job(jid), [F_STATE, F_PREREQUISITE_KEYS])),
                ("srandmember", (keys.dependents(jid), limit)),
                ("srandmember", (keys.released(jid), limit)),
                ("zrevrange", (keys.children(jid), 0, limit - 1)),
            ]
        )
        state, prerequisites = own
        if state is None:
            raise NotFound(jid)
        groups = {
            "prerequisites": [
                keys.jid_of(line) for line in (prerequisites or b"").decode().split("\n") if line
            ],
            "dependents": sorted({keys.jid_of(k) for k in [*waiting, *released]}),
            "children": [keys.jid_of(k) for k in children],
        }
        jids = [j for group in groups.values() for j in group[:limit]]
        states = (yield Read([("hget", (keys.job(j), F_STATE)) for j in jids])) if jids else []
        state_of = {
            j: State.UNKNOWN if raw is None else State(raw.decode())
            for j, raw in zip(jids, states, strict=True)
        }
        return Related(
            **{name: [(j, state_of[j]) for j in group[:limit]] for name, group in groups.items()}
        )
