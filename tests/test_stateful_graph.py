"""SPEC sections 3 to 5 as a model of the job graph: random registrations of jobs with
prerequisites, of batches and of their children, and every lifecycle call on them, must
leave each track's state, prerequisites, blocked_by or error source, batch counts and
percent, and every refusal, exactly where a plain Python model says, with failure
propagation on and off.

The tests at the end pin down three disagreements with SPEC that the model found (the
cycle check went through jobs that had ended, a cancel below a batch lost to a failure
passed on, and resume returned the track from before its work), now fixed."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from conftest import FakeClock, MakeTracker
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from refusals import Refusal, perform

from tracker import Conflict, InvalidInput, NotFound, State, Track, Tracker
from tracker.model import STORED_STATES

T = TypeVar("T")
View = dict[str, Any]
Node = tuple[str, str]  # ("R", jid): the job is released; ("S", jid): it succeeded

JIDS = ("j1", "j2", "j3", "j4", "j5", "j6")
ERROR_TYPE = "Boom"
#: Long enough that nothing expires while the fake clock runs ahead of the server's.
LONG_TTL = 30 * 24 * 3600
UNRELEASED = frozenset({State.WAITING, State.PAUSED})
STARTABLE = frozenset({State.ENQUEUED, State.FAILED})
RUNNING = frozenset({State.WORKING, State.ENQUEUED})  # success and fail accept these
PAUSABLE = frozenset({State.WAITING, State.ENQUEUED})
UNFINISHED = frozenset(s for s in STORED_STATES if not s.terminal)
#: Later than any reservation a job of this model holds.
FAR_RESERVATION = "2099-01-01T00:00:00Z"
ENDED_BADLY = frozenset({State.DEAD, State.CANCELLED})

jids = st.sampled_from(JIDS)
batch_or_not = st.sampled_from([False, False, True])
prerequisite_lists = st.lists(jids, max_size=3, unique=True)
max_attempts = st.integers(1, 3)
#: the jobs every example starts with: jid, batch, prerequisites, child of the last batch
first_jobs = st.lists(
    st.tuples(jids, batch_or_not, st.lists(jids, max_size=2, unique=True), st.booleans()),
    min_size=4,
    max_size=6,
    unique_by=lambda job: job[0],
)

#: Registrations that validation refuses before anything reaches Redis, by what is wrong.
INVALID_REGISTRATIONS: dict[str, Callable[[Tracker, str], object]] = {
    "a malformed prerequisite": lambda t, jid: t.register(jid, prerequisites=["j1", "not a jid"]),
    "prerequisites as one string": lambda t, jid: t.register(jid, prerequisites="j1"),
    "missing_prerequisites 'maybe'": lambda t, jid: t.register(
        jid, prerequisites=["j1"], missing_prerequisites="maybe"
    ),
    "a malformed parent": lambda t, jid: t.register(jid, parent="a/b"),
    "batch 'yes'": lambda t, jid: t.register(jid, batch="yes"),  # type: ignore[arg-type]
}

#: What the rule that calls anything on any jid may call: the model's method, its arguments.
CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "start": ("start_job", {}),
    "success": ("success", {}),
    "fail": ("fail_job", {"retry": True}),
    "fail for good": ("fail_job", {"retry": False}),
    "cancel": ("cancel_job", {}),
    "pause": ("pause_job", {}),
    "resume": ("resume_job", {}),
    "seal": ("seal_job", {}),
    "track_set": ("track_set_job", {"percent": 50}),
    "extend the reservation": ("extend_job", {}),
    **{
        f"register with {what}": ("invalid_registration", {"what": what})
        for what in INVALID_REGISTRATIONS
    },
}


@dataclass(frozen=True)
class Effect:
    """What a failure spreading through the graph may do to one unfinished job.

    ``fail``: its own last attempt failed; ``cancel``: cancelled (by a client, or as an
    unfinished child of a cancelled batch); ``kill``: dead because something it waits for
    ended badly (propagation on); ``mark``: blocked by ``root`` (propagation off);
    ``child``: a batch dead because a child ended badly.
    """

    kind: str
    root: str = ""

    def outcome(self) -> tuple[State, tuple[str | None, str | None] | None]:
        """The state and newest error (type, source) the effect leaves behind."""
        if self.kind == "cancel":
            return State.CANCELLED, None
        if self.kind == "fail":
            return State.DEAD, (ERROR_TYPE, None)
        if self.kind == "kill":
            return State.DEAD, ("PrerequisiteFailed", self.root)
        assert self.kind == "child"
        return State.DEAD, ("ChildFailed", self.root)


@dataclass
class Job:
    """One job as SPEC sections 2 to 5 describe it."""

    registration: dict[str, Any]
    state: State = State.WAITING
    #: prerequisites not succeeded yet that it still counts as pending
    waits_for: set[str] = field(default_factory=set)
    #: registered while its batch was waiting or paused: released only with the batch
    held: bool = False
    blocked_by: str | None = None
    attempts: int = 0
    #: a plain job's last reported percent; a batch's percent when it ended badly
    percent: int | None = None
    error: tuple[str | None, str | None] | None = None  # the newest error's type and source
    children: list[str] = field(default_factory=list)
    sealed: bool = False
    #: a batch's (success, dead) counts when it ended badly: they stop there
    frozen: tuple[int, int] | None = None

    @property
    def batch(self) -> bool:
        return bool(self.registration["batch"])

    @property
    def parent(self) -> str | None:
        parent: str | None = self.registration["parent"]
        return parent

    @property
    def prerequisites(self) -> list[str]:
        prerequisites: list[str] = self.registration["prerequisites"]
        return prerequisites


def body(registration: dict[str, Any]) -> tuple[Any, ...]:
    """What decides whether a second registration is the same one (SPEC section 3)."""
    return (
        frozenset(registration["prerequisites"]),
        registration["missing_prerequisites"],
        registration["parent"],
        registration["batch"],
        registration["max_attempts"],
    )


def view_of(track: Track) -> View:
    """The parts of a track this model decides. blocked_by only while unfinished: a blocked
    job that is then cancelled keeps it, and a cancel racing a block may or may not leave it."""
    error = track.error
    view: View = {
        "state": track.state,
        "attempts": track.attempts,
        "max_attempts": track.max_attempts,
        "percent": track.percent,
        "prerequisites": track.prerequisites,
        "parent": track.parent,
        "batch": track.batch,
        "error": None if error is None else (error.get("type"), error.get("source")),
    }
    if not track.state.terminal:
        view["blocked_by"] = track.blocked_by
    return view


class GraphMachine(RuleBasedStateMachine):
    """Drives one fresh namespace per example and keeps the model beside it."""

    def __init__(self, make_tracker: MakeTracker, base: Tracker, propagate: bool) -> None:
        super().__init__()
        self.propagate = propagate
        self.tracker = make_tracker(
            client=base.client,
            clock=FakeClock(),
            ttl=LONG_TTL,
            pending_ttl=LONG_TTL,
            propagate_failures=propagate,
        )
        self.jobs: dict[str, Job] = {}

    # --- the model: reading it ---------------------------------------------------

    def expected(self, jid: str) -> View:
        job = self.jobs.get(jid)
        if job is None:
            return view_of(Track(jid, State.UNKNOWN))
        view: View = {
            "state": job.state,
            "attempts": job.attempts,
            "max_attempts": job.registration["max_attempts"],
            "percent": self.percent(jid),
            "prerequisites": {"total": len(job.prerequisites), "pending": len(job.waits_for)}
            if job.prerequisites
            else None,
            "parent": job.parent,
            "batch": self.counts(jid) if job.batch else None,
            "error": job.error,
        }
        if not job.state.terminal:
            view["blocked_by"] = job.blocked_by
        return view

    def percent(self, jid: str) -> int | None:
        """SPEC section 5: floor(sum of the children's percent, success counting 100) over
        the children, one more while unsealed, at most 99 until the batch succeeds."""
        job = self.jobs[jid]
        if not job.batch:
            return job.percent
        if job.state is State.SUCCESS:
            return 100
        if job.state.terminal:
            return job.percent
        share = sum(
            100 if self.jobs[child].state is State.SUCCESS else self.percent(child) or 0
            for child in job.children
        )
        children = len(job.children) + (0 if job.sealed else 1)
        return min(99, share // children) if children else 0

    def counts(self, jid: str) -> dict[str, Any]:
        job = self.jobs[jid]
        total = len(job.children)
        if job.frozen is not None:
            success, dead = job.frozen
        else:
            success = sum(self.jobs[c].state is State.SUCCESS for c in job.children)
            dead = sum(self.jobs[c].state in ENDED_BADLY for c in job.children)
        return {
            "total": total,
            "pending": total - success - dead,
            "success": success,
            "dead": dead,
            "sealed": job.sealed,
        }

    def dependents(self, jid: str) -> list[str]:
        """Unfinished jobs that still count ``jid`` among their pending prerequisites."""
        return [
            d for d, job in self.jobs.items() if not job.state.terminal and jid in job.waits_for
        ]

    def held_children(self, jid: str) -> list[str]:
        return [c for c in self.jobs[jid].children if self.jobs[c].held]

    def ended_badly(self, jid: str) -> bool:
        job = self.jobs.get(jid)
        return job is not None and job.state in ENDED_BADLY

    def root(self, jid: str) -> str:
        """The job a failure started from: a dead job's error source, else the job itself."""
        job = self.jobs[jid]
        if job.state is State.DEAD and job.error is not None and job.error[1]:
            return job.error[1]
        return jid

    def closes_cycle(
        self,
        jid: str,
        prerequisites: list[str],
        satisfied: bool,
        parent: str | None,
    ) -> bool:
        """Whether registering ``jid`` would make something wait for itself.

        What waits for what, among unfinished jobs: a job's release waits for each pending
        prerequisite's success and for its batch's release while the batch holds it; a
        job's success waits for its release, and a batch's for its unfinished children's.
        A job that ended waits for nothing, and nothing waits for one that ended badly
        (see test_a_prerequisite_that_ended_badly_closes_no_cycle).
        """
        if jid in prerequisites:
            return True
        waits: dict[Node, set[Node]] = defaultdict(set)
        for x, job in self.jobs.items():
            if job.state.terminal:
                continue
            waits["S", x].add(("R", x))
            waits["S", x].update(("S", c) for c in job.children if not self.jobs[c].state.terminal)
            waits["R", x].update(("S", p) for p in job.waits_for if not self.ended_badly(p))
            if job.held and job.parent is not None:
                waits["R", x].add(("R", job.parent))
        waits["S", jid].add(("R", jid))
        for p in prerequisites:
            known = self.jobs.get(p)
            if known is None:
                if not satisfied:
                    waits["R", jid].add(("S", p))
            elif not known.state.terminal:
                waits["R", jid].add(("S", p))
        if parent is not None:
            if self.jobs[parent].state in UNRELEASED:
                waits["R", jid].add(("R", parent))
            waits["S", parent].add(("S", jid))
        # every new cycle passes through the new job's release
        start: Node = ("R", jid)
        seen: set[Node] = set()
        todo = list(waits[start])
        while todo:
            node = todo.pop()
            if node == start:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(waits[node])
        return False

    # --- the model: changing it --------------------------------------------------

    def releasable(self, jid: str) -> bool:
        job = self.jobs[jid]
        return (
            job.state is State.WAITING
            and not job.waits_for
            and not job.held
            and job.blocked_by is None
        )

    def release(self, jid: str) -> None:
        """All it waited for succeeded: a batch works (and lets its children go), any other
        job is enqueued."""
        job = self.jobs[jid]
        if not job.batch:
            job.state = State.ENQUEUED
            return
        job.state = State.WORKING
        for child in self.held_children(jid):
            self.jobs[child].held = False
            if self.releasable(child):
                self.release(child)
        self.finish_if_done(jid)

    def finish_if_done(self, jid: str) -> None:
        job = self.jobs[jid]
        if (
            job.state is State.WORKING
            and job.sealed
            and all(self.jobs[c].state is State.SUCCESS for c in job.children)
        ):
            event("a batch succeeded")
            job.state = State.SUCCESS
            self.succeeded(jid)

    def succeeded(self, jid: str) -> None:
        """Dependents lose a pending prerequisite (released at none); the batch may be done."""
        for dependent in self.dependents(jid):
            self.jobs[dependent].waits_for.discard(jid)
            if self.releasable(dependent):
                self.release(dependent)
        parent = self.jobs[jid].parent
        if parent is not None and not self.jobs[parent].state.terminal:
            self.finish_if_done(parent)

    def ended(self, jid: str) -> list[tuple[str, Effect]]:
        """What follows from ``jid`` ending dead or cancelled (SPEC sections 4 and 5)."""
        job = self.jobs[jid]
        root = self.root(jid)
        passed_on = Effect("kill" if self.propagate else "mark", root)
        effects = [(d, passed_on) for d in self.dependents(jid)]
        if job.batch and job.state is State.CANCELLED:
            effects += [(c, Effect("cancel")) for c in job.children]
        elif job.batch:
            effects += [(c, passed_on) for c in self.held_children(jid)]
        if job.parent is not None and not self.jobs[job.parent].state.terminal:
            effects.append((job.parent, Effect("child", root)))
        return effects

    def cancel_coming(self, jid: str) -> bool:
        """Whether a cancelled batch above ``jid``, through unfinished batches, reaches it."""
        parent = self.jobs[jid].parent
        while parent is not None:
            batch = self.jobs[parent]
            if batch.state is State.CANCELLED:
                return True
            if batch.state.terminal:
                return False
            parent = batch.parent
        return False

    def marked(self, jid: str, root: str) -> list[tuple[str, Effect]]:
        """What follows from ``jid`` being blocked by ``root``: what waits for it is too."""
        mark = Effect("mark", root)
        effects = [(d, mark) for d in self.dependents(jid)]
        if self.jobs[jid].batch:
            effects += [(c, mark) for c in self.held_children(jid)]
        return effects

    def spread(self, seeds: list[tuple[str, Effect]]) -> None:
        """Let a failure spread through the graph from ``seeds``.

        Where several failures reach one job in one call, the first to arrive decides
        which root its error or blocked_by names, whether a batch ends PrerequisiteFailed
        or ChildFailed, and how many children it counts when it stops counting; SPEC
        leaves that order open and the tracker visits sets in no fixed order. So the model
        lists every way each job may be reached, the tracker's own outcome must be one of
        them, and what follows is derived from that outcome. Everything reached must end
        (or be blocked), and nothing else may change. Below a cancelled batch the cancel
        decides, whatever reaches a job first (SPEC 3: a cancelled batch cancels its
        unfinished children, nested ones included): there a propagated failure or a
        child's end can only cancel, see
        test_cancelling_a_batch_cancels_a_grandchild_that_waits_for_a_child.
        """
        seen = {jid: self.tracker.track_get(jid) for jid in self.jobs}
        percents = {
            jid: self.percent(jid)
            for jid, job in self.jobs.items()
            if job.batch and not job.state.terminal
        }
        seeded = {jid for jid, _ in seeds}
        offers: dict[str, list[Effect]] = defaultdict(list)
        passed: set[tuple[str, str]] = set()
        work = deque(seeds)
        while work:
            jid, effect = work.popleft()
            job, track = self.jobs[jid], seen[jid]
            if job.state.terminal:
                continue
            if effect.kind in ("kill", "child") and self.cancel_coming(jid):
                effect = Effect("cancel")
            offers[jid].append(effect)
            if effect.kind == "mark":
                if job.blocked_by is not None or (jid, effect.root) in passed:
                    continue  # a blocked job is not blocked again
                if track.state.terminal:
                    # it may have been blocked on its way to its end, and passed that on
                    passed.add((jid, effect.root))
                    work.extend(self.marked(jid, effect.root))
                elif track.blocked_by == effect.root:
                    job.blocked_by = effect.root
                    work.extend(self.marked(jid, effect.root))
                continue
            state, error = effect.outcome()
            if track.state is not state or (error is not None and view_of(track)["error"] != error):
                continue  # not how it ended: another effect reached it first
            job.state = state
            job.error = error or job.error
            if job.batch:
                job.percent = percents[jid]
            work.extend(self.ended(jid))
        for jid, effects in offers.items():
            job = self.jobs[jid]
            blocked = job.blocked_by is not None and all(e.kind == "mark" for e in effects)
            assert job.state.terminal or blocked, f"{jid} was reached by {effects}: {seen[jid]}"
        if len(offers) > len(seeds):
            event(f"a failure spread (propagation {'on' if self.propagate else 'off'})")
        for jid in percents:
            job = self.jobs[jid]
            if job.state.terminal:
                self.freeze(jid, seen[jid], first=jid in seeded)

    def freeze(self, jid: str, track: Track, first: bool) -> None:
        """A batch that ended badly counts the children that ended before it, no more."""
        job = self.jobs[jid]
        success = sum(self.jobs[c].state is State.SUCCESS for c in job.children)
        # a batch alive at the start of the call had no child that ended badly
        ended_here = sum(self.jobs[c].state in ENDED_BADLY for c in job.children)
        low = 1 if job.error is not None and job.error[0] == "ChildFailed" else 0
        high = low if first else ended_here
        counts = track.batch
        assert counts is not None
        assert counts["total"] == len(job.children), (jid, counts)
        assert counts["success"] == success, (jid, counts)
        assert low <= counts["dead"] <= high, (jid, counts, low, high)
        job.frozen = (success, counts["dead"])

    # --- helpers -------------------------------------------------------------------

    def refusal(self, jid: str, allowed: Iterable[State]) -> Refusal | None:
        job = self.jobs.get(jid)
        if job is None:
            return Refusal(NotFound)
        if job.state not in allowed:
            return Refusal(Conflict, job.state.value)
        return None

    def returned(self, jid: str, track: Track) -> None:
        """The track a call returns is the job's track as the call left it."""
        assert view_of(track) == self.expected(jid), jid

    # --- rules ----------------------------------------------------------------------
    # Each rule picks a job its call suits when there is one, so that graphs make
    # progress within a short run; refusals come from the rule that calls anything on
    # any jid, and from every call that a cascade made unsuitable meanwhile.

    def pick(self, data: st.DataObject, suits: Callable[[Job], bool]) -> str:
        """A job the call suits, else any registered job, else any jid."""
        suited = [jid for jid, job in self.jobs.items() if suits(job)] or list(self.jobs)
        return data.draw(st.sampled_from(suited) if suited else jids, label="jid")

    def unregistered(self) -> list[str]:
        return [jid for jid in JIDS if jid not in self.jobs]

    def open_batches(self) -> list[str]:
        """Batches that take children: unsealed and unfinished."""
        return [
            jid
            for jid, job in self.jobs.items()
            if job.batch and not job.sealed and not job.state.terminal
        ]

    @initialize(jobs=first_jobs)
    def a_graph(self, jobs: list[tuple[str, bool, list[str], bool]]) -> None:
        """A batch and a few jobs to start from, each a child of the last batch before it
        or not, naming any other jobs but its own batches and children as prerequisites
        (those would be cycles; the other rules try them)."""
        parents: dict[str, str | None] = {}
        batches: list[str] = []
        for n, (jid, batch, _, child) in enumerate(jobs):
            parents[jid] = batches[-1] if child and batches else None
            if batch or n == 0:
                batches.append(jid)

        def lineage(jid: str) -> set[str]:
            line = {jid}
            while (parent := parents.get(jid)) is not None:
                line.add(jid := parent)
            return line

        for jid, _, prerequisites, _ in jobs:
            unrelated = [
                p for p in prerequisites if p not in lineage(jid) and jid not in lineage(p)
            ]
            self.register_job(jid, jid in batches, unrelated, False, parents[jid], 2)

    @precondition(lambda self: len(self.jobs) < len(JIDS))
    @rule(
        data=st.data(),
        batch=batch_or_not,
        prerequisites=prerequisite_lists,
        satisfied=st.booleans(),
        parent=st.none() | jids,
        attempts=max_attempts,
    )
    def register(
        self,
        data: st.DataObject,
        batch: bool,
        prerequisites: list[str],
        satisfied: bool,
        parent: str | None,
        attempts: int,
    ) -> None:
        jid = data.draw(st.sampled_from(self.unregistered()), label="jid")
        self.register_job(jid, batch, prerequisites, satisfied, parent, attempts)

    @precondition(lambda self: len(self.jobs) < len(JIDS) and self.open_batches())
    @rule(
        data=st.data(),
        batch=batch_or_not,
        prerequisites=prerequisite_lists,
        satisfied=st.booleans(),
        attempts=max_attempts,
    )
    def register_child(
        self,
        data: st.DataObject,
        batch: bool,
        prerequisites: list[str],
        satisfied: bool,
        attempts: int,
    ) -> None:
        jid = data.draw(st.sampled_from(self.unregistered()), label="jid")
        parent = data.draw(st.sampled_from(self.open_batches()), label="parent")
        self.register_job(jid, batch, prerequisites, satisfied, parent, attempts)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), change=st.sampled_from(["nothing", "order", "max_attempts", "batch"]))
    def register_again(self, data: st.DataObject, change: str) -> None:
        # the same body again (prerequisites in any order) is a no-op, another is refused
        jid = self.pick(data, lambda job: True)
        first = self.jobs[jid].registration
        self.register_job(
            jid,
            first["batch"] != (change == "batch"),
            first["prerequisites"][::-1] if change == "order" else first["prerequisites"],
            first["missing_prerequisites"] == "satisfied",
            first["parent"],
            first["max_attempts"] + (change == "max_attempts"),
        )

    def register_job(
        self,
        jid: str,
        batch: bool,
        prerequisites: list[str],
        satisfied: bool,
        parent: str | None,
        attempts: int,
    ) -> None:
        registration: dict[str, Any] = {
            "batch": batch,
            "prerequisites": prerequisites,
            "missing_prerequisites": "satisfied" if satisfied else "pending",
            "parent": parent,
            "max_attempts": attempts,
        }

        def call() -> Any:
            return self.tracker.register(jid, **registration)

        job = self.jobs.get(jid)
        if job is not None:
            if body(registration) != body(job.registration):
                perform(call, Refusal(Conflict, job.state.value))
                return
            done = perform(call, None)  # the same body again: a no-op in any state
            assert done is not None and not done.created
            self.returned(jid, done.track)
            return
        refusal = None
        if parent is not None:
            batch_job = self.jobs.get(parent)
            if (
                batch_job is None
                or not batch_job.batch
                or batch_job.sealed
                or batch_job.state.terminal
            ):
                refusal = Refusal(Conflict, "unknown")  # it takes no children
        if refusal is None and self.closes_cycle(jid, prerequisites, satisfied, parent):
            event("refused: a cycle")
            refusal = Refusal(Conflict, "unknown")
        done = perform(call, refusal)
        if done is not None:
            assert done.created
            self.add(jid, registration)
            self.returned(jid, done.track)

    def add(self, jid: str, registration: dict[str, Any]) -> None:
        """SPEC section 4: it waits for what has not succeeded, ends at once with what has
        ended badly, and a waiting or paused batch holds it."""
        job = self.jobs[jid] = Job(registration)
        failed: set[str] = set()
        blocked: set[str] = set()
        for p in job.prerequisites:
            known = self.jobs.get(p)
            if known is None:
                if registration["missing_prerequisites"] == "pending":
                    job.waits_for.add(p)
            elif known.state in ENDED_BADLY:
                failed.add(self.root(p))
                job.waits_for.add(p)  # pending, as for a job that waited before it ended
            elif known.state is not State.SUCCESS:
                job.waits_for.add(p)
                if known.blocked_by is not None:
                    blocked.add(known.blocked_by)
        if job.parent is not None:
            event("registered a child")
            batch = self.jobs[job.parent]
            batch.children.append(jid)
            if batch.state in UNRELEASED:
                job.held = True
                if batch.blocked_by is not None:
                    blocked.add(batch.blocked_by)
        if failed and self.propagate:
            self.spread([(jid, Effect("kill", root)) for root in sorted(failed)])
        elif failed or blocked:
            self.spread([(jid, Effect("mark", root)) for root in sorted(failed | blocked)])
        elif not job.waits_for and not job.held:
            self.release(jid)

    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        self.start_job(self.pick(data, lambda job: job.state in STARTABLE))

    def start_job(self, jid: str) -> None:
        refusal = self.refusal(jid, STARTABLE)
        track = perform(lambda: self.tracker.start(jid), refusal)
        if track is not None:
            job = self.jobs[jid]
            job.state = State.WORKING
            job.attempts += 1
            self.returned(jid, track)

    @rule(data=st.data())
    def work(self, data: st.DataObject) -> None:
        # a worker starts a job and reports success: the graph moves on
        jid = self.pick(data, lambda job: job.state in STARTABLE)
        self.start_job(jid)
        self.success(jid)

    def fail_job(self, jid: str, retry: bool) -> None:
        job = self.jobs.get(jid)
        if job is not None and job.batch:
            refusal: Refusal | None = Refusal(Conflict, job.state.value)  # its children decide
        else:
            refusal = self.refusal(jid, RUNNING)
        track = perform(
            lambda: self.tracker.fail(jid, "boom", retry=retry, error_type=ERROR_TYPE), refusal
        )
        if track is None:
            return
        assert job is not None
        if retry and job.attempts < job.registration["max_attempts"]:
            job.state = State.FAILED
            job.error = (ERROR_TYPE, None)
        else:
            self.spread([(jid, Effect("fail"))])
        self.returned(jid, track)

    # success, fail and cancel share a rule, as pause and resume do, so that jobs live
    # long enough for their dependents and batches to move

    @rule(data=st.data(), how=st.sampled_from(["success", "success", "fail", "dead", "cancel"]))
    def finish(self, data: st.DataObject, how: str) -> None:
        if how == "cancel":
            self.cancel_job(self.pick(data, lambda job: not job.state.terminal))
            return
        jid = self.pick(data, lambda job: job.state in RUNNING and not job.batch)
        if how == "success":
            self.success(jid)
        else:
            self.fail_job(jid, retry=how == "fail")

    def success(self, jid: str) -> None:
        job = self.jobs.get(jid)
        if job is not None and job.state is State.SUCCESS:
            refusal = None  # a second success is a no-op, a batch's too
        elif job is not None and job.batch:
            refusal = Refusal(Conflict, job.state.value)  # its children decide
        else:
            refusal = self.refusal(jid, RUNNING)
        track = perform(lambda: self.tracker.success(jid), refusal)
        if track is None:
            return
        assert job is not None
        if job.state is not State.SUCCESS:
            job.state = State.SUCCESS
            self.succeeded(jid)
        self.returned(jid, track)

    def cancel_job(self, jid: str) -> None:
        refusal = self.refusal(jid, UNFINISHED)
        track = perform(lambda: self.tracker.cancel(jid), refusal)
        if track is not None:
            self.spread([(jid, Effect("cancel"))])
            self.returned(jid, track)

    @rule(data=st.data(), resume=st.booleans())
    def hold(self, data: st.DataObject, resume: bool) -> None:
        if resume:
            self.resume_job(self.pick(data, lambda job: job.state is State.PAUSED))
        else:
            self.pause_job(self.pick(data, lambda job: job.state in PAUSABLE))

    def pause_job(self, jid: str) -> None:
        track = perform(lambda: self.tracker.pause(jid), self.refusal(jid, PAUSABLE))
        if track is not None:
            self.jobs[jid].state = State.PAUSED
            self.returned(jid, track)

    def resume_job(self, jid: str) -> None:
        refusal = self.refusal(jid, {State.PAUSED})
        track = perform(lambda: self.tracker.resume(jid), refusal)
        if track is None:
            return
        job = self.jobs[jid]
        job.state = State.WAITING
        if self.releasable(jid):
            self.release(jid)
        self.returned(jid, track)

    @rule(data=st.data())
    def seal(self, data: st.DataObject) -> None:
        self.seal_job(self.pick(data, lambda job: job.batch and not job.sealed))

    def seal_job(self, jid: str) -> None:
        job = self.jobs.get(jid)
        if job is None:
            refusal: Refusal | None = Refusal(NotFound)
        elif not job.batch or (job.state.terminal and not job.sealed):
            refusal = Refusal(Conflict, job.state.value)
        else:
            refusal = None  # sealing twice is a no-op
        track = perform(lambda: self.tracker.seal(jid), refusal)
        if track is None:
            return
        assert job is not None
        if not job.sealed:
            job.sealed = True
            self.finish_if_done(jid)
        self.returned(jid, track)

    @rule(data=st.data(), percent=st.integers(0, 100))
    def track_set(self, data: st.DataObject, percent: int) -> None:
        self.track_set_job(
            self.pick(data, lambda job: job.parent is not None and not job.state.terminal),
            percent,
        )

    def track_set_job(self, jid: str, percent: int) -> None:
        job = self.jobs.get(jid)
        if job is not None and job.batch and not job.state.terminal:
            refusal: Refusal | None = Refusal(Conflict, job.state.value)  # it is computed
        else:
            refusal = self.refusal(jid, UNFINISHED)
        perform(lambda: self.tracker.track_set(jid, percent=percent), refusal)
        if refusal is None:
            assert job is not None
            job.percent = percent

    def extend_job(self, jid: str) -> None:
        """A TRACK SET of a later reserve_until: only a working job that is not a batch
        (a batch's state is computed: it has no reservation)."""
        job = self.jobs.get(jid)
        if job is not None and job.batch and not job.state.terminal:
            refusal: Refusal | None = Refusal(Conflict, job.state.value)
        else:
            refusal = self.refusal(jid, {State.WORKING})
        perform(lambda: self.tracker.track_set(jid, reserve_until=FAR_RESERVATION), refusal)

    @rule(jid=jids, call=st.sampled_from(sorted(CALLS)))
    def any_call_on_any_jid(self, jid: str, call: str) -> None:
        # registered or not, suited or not: every refusal is the one the model predicts
        method, arguments = CALLS[call]
        getattr(self, method)(jid, **arguments)

    def invalid_registration(self, jid: str, what: str) -> None:
        perform(lambda: INVALID_REGISTRATIONS[what](self.tracker, jid), Refusal(InvalidInput))

    @rule(jid=jids)
    def track_get(self, jid: str) -> None:
        assert view_of(self.tracker.track_get(jid)) == self.expected(jid)

    # --- what must hold after every step -----------------------------------------

    @invariant()
    def every_track_matches_the_model(self) -> None:
        for jid in JIDS:
            assert view_of(self.tracker.track_get(jid)) == self.expected(jid), jid

    @invariant()
    def indexes_hold_each_job_once_in_its_state(self) -> None:
        pipe = self.tracker.client.pipeline(transaction=False)
        for state in STORED_STATES:
            pipe.zrange(self.tracker.keys.state(state), 0, -1)
        for state, members in zip(STORED_STATES, pipe.execute(), strict=True):
            expected = {jid for jid, job in self.jobs.items() if job.state is state}
            assert {m.decode() for m in members} == expected, state


PROPAGATION = pytest.mark.parametrize(
    "propagate", [True, False], ids=["propagation-on", "propagation-off"]
)


@PROPAGATION
def test_random_graphs_follow_the_model(make_tracker: MakeTracker, propagate: bool) -> None:
    base = make_tracker()
    run_state_machine_as_test(
        lambda: GraphMachine(make_tracker, base, propagate),
        settings=settings(max_examples=40, stateful_step_count=25, deadline=None),
    )


@PROPAGATION
def test_a_prerequisite_that_ended_badly_closes_no_cycle(
    make_tracker: MakeTracker, propagate: bool
) -> None:
    tracker = make_tracker(propagate_failures=propagate)
    tracker.register("b", batch=True)
    tracker.register("c1", parent="b")
    tracker.register("d", parent="b", prerequisites=["x"])  # x is not registered yet
    tracker.start("c1")
    tracker.fail("c1", "boom", retry=False)
    assert tracker.track_get("b").state is State.DEAD  # it waits for nothing any more
    track = tracker.register("x", prerequisites=["b"]).track
    if propagate:
        assert track.state is State.DEAD
        assert track.error is not None and track.error["source"] == "c1"
    else:
        assert (track.state, track.blocked_by) == (State.WAITING, "c1")


def test_cancelling_a_batch_cancels_a_grandchild_that_waits_for_a_child(
    make_tracker: MakeTracker,
) -> None:
    tracker = make_tracker(propagate_failures=True)
    copies = range(20)  # the order is random: one copy ends right half the time
    for n in copies:
        tracker.register(f"B{n}", batch=True)
        tracker.register(f"c{n}", parent=f"B{n}")
        tracker.register(f"C{n}", batch=True, parent=f"B{n}")
        tracker.register(f"x{n}", parent=f"C{n}", prerequisites=[f"c{n}"])
        tracker.cancel(f"B{n}")
    assert [tracker.track_get(f"x{n}").state for n in copies] == [State.CANCELLED for _ in copies]


def test_resuming_a_batch_returns_its_track_as_the_call_left_it(tracker: Tracker) -> None:
    tracker.register("prep")
    tracker.register("b", batch=True, prerequisites=["prep"])
    tracker.register("inner", batch=True, parent="b")  # held, and done once b lets it go
    tracker.seal("inner")
    tracker.seal("b")
    tracker.pause("b")
    tracker.success("prep")
    returned = tracker.resume("b")
    assert tracker.track_get("b").state is State.SUCCESS
    assert returned == tracker.track_get("b")
