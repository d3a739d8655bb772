"""The graph between jobs: a batch's seal, and the jobs around one job.

Dependencies and batches are declared at registration (lifecycle.py) and kept by the
scripts (lua/_graph.lua): a job's success releases its dependents, a batch's children
decide its state, and the hand-off of a released job to its RQ queue (handoff.py)
happens in the same call. What is left to ask of the graph from Python is here.
"""

from __future__ import annotations

from typing import Any

from .calls import Plan, PlanBase, Read
from .errors import NotFound
from .fields import stored
from .model import MAX_LIST_LIMIT, State, Track, check_int, check_name
from .records import Related, Workflow

#: Jobs a workflow shows at most by default, and may be asked to show at most.
WORKFLOW_JOBS = 300
MAX_WORKFLOW_JOBS = 1000
#: Jobs whose links one round trip of the walk reads, and members it reads of each set.
_WALK_BATCH = 50
_WALK_READ = 100

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

    def workflow(self, jid: str, limit: int = WORKFLOW_JOBS) -> Plan[Workflow]:
        """The whole workflow a job belongs to: every job linked to it by dependencies,
        prerequisites and dependents at any distance, with their states, walked breadth
        first up to ``limit`` jobs (``more`` says the walk stopped short). A job without
        a track is NotFound; a linked job whose track expired is shown ``unknown``."""
        check_name("jid", jid)
        check_int("limit", limit, 1, MAX_WORKFLOW_JOBS)
        keys = self.keys
        states: dict[str, State] = {}
        edges: set[tuple[str, str]] = set()
        waiting, queued, more = [jid], {jid}, False
        while waiting:
            batch, waiting = waiting[:_WALK_BATCH], waiting[_WALK_BATCH:]
            commands: list[tuple[str, tuple[Any, ...]]] = []
            for one in batch:
                commands += [
                    ("hmget", (keys.job(one), ["s", "pq"])),
                    ("srandmember", (keys.dependents(one), _WALK_READ)),
                    ("srandmember", (keys.released(one), _WALK_READ)),
                    ("scard", (keys.dependents(one),)),
                    ("scard", (keys.released(one),)),
                ]
            replies = yield Read(commands)
            for i, one in enumerate(batch):
                (state, pq), held, released, n_held, n_released = replies[5 * i : 5 * i + 5]
                if state is None:
                    if one == jid:
                        raise NotFound(jid)
                    states[one] = State.UNKNOWN  # expired: what it linked is not known
                    continue
                states[one] = State(state.decode())
                more = more or len(held) < n_held or len(released) < n_released
                prerequisites = [keys.jid_of(k) for k in (pq or b"").decode().split("\n") if k]
                dependents = {keys.jid_of(k) for k in [*held, *released]}
                edges.update((p, one) for p in prerequisites)
                edges.update((one, d) for d in dependents)
                for linked in [*prerequisites, *sorted(dependents)]:
                    if linked in queued:
                        continue
                    if len(queued) >= limit:
                        more = True
                        continue
                    queued.add(linked)
                    waiting.append(linked)
        return Workflow(
            jobs=sorted(states.items()),
            edges=sorted((a, b) for a, b in edges if a in states and b in states),
            more=more,
        )
