"""SPEC section 3 as a model: random sequences of lifecycle calls and TRACK SETs must
leave every track, index and refusal exactly where a plain Python model says."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

from conftest import FakeClock, MakeTracker
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from refusals import Refusal, perform

from tracker import (
    Conflict,
    InvalidInput,
    JobSuperseded,
    NotFound,
    Registered,
    State,
    Track,
    Tracker,
)
from tracker.model import STORED_STATES

T = TypeVar("T")
Body = tuple[str, int, int]  # queue, reserve_for, max_attempts

JIDS = ("job-a", "job-b", "job-c", "job-d")
NOT_A_JID = "not a jid"
MAX_ERRORS = 10
RUNNABLE = frozenset({State.ENQUEUED, State.WORKING, State.FAILED})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Long enough that no track expires while the fake clock runs ahead of the server's.
LONG_TTL = 30 * 24 * 3600

jids = st.sampled_from(JIDS)
queues = st.sampled_from(["default", "mail"])
# small, so that jobs die of exhausted attempts; 12 lets the error history outgrow its cap
max_attempts = st.sampled_from([1, 2, 3, 12])
reserve_fors = st.integers(1, 90)  # short, so that advancing the clock ends some
bodies = st.tuples(queues, reserve_fors, max_attempts)
# milliseconds after the job's current reservation (or after now, when it has none)
reserve_shifts = st.none() | st.integers(-5_000, 5_000)

#: Calls that validation refuses before anything reaches Redis, by what is wrong.
INVALID_CALLS: dict[str, Callable[[Tracker, str], object]] = {
    "register: malformed jid": lambda t, _: t.register(NOT_A_JID),
    "register: max_attempts 0": lambda t, jid: t.register(jid, max_attempts=0),
    "register: max_attempts True": lambda t, jid: t.register(jid, max_attempts=True),
    "register: queue with a space": lambda t, jid: t.register(jid, queue="a queue"),
    "register: reserve_for 0": lambda t, jid: t.register(jid, reserve_for=0),
    "start: malformed jid": lambda t, _: t.start(NOT_A_JID),
    "start: reserve_for 0": lambda t, jid: t.start(jid, reserve_for=0),
    "start: reserve_for True": lambda t, jid: t.start(jid, reserve_for=True),
    "track_set: malformed jid": lambda t, _: t.track_set(NOT_A_JID, percent=1),
    "track_set: percent -1": lambda t, jid: t.track_set(jid, percent=-1),
    "track_set: percent 101": lambda t, jid: t.track_set(jid, percent=101),
    "track_set: percent True": lambda t, jid: t.track_set(jid, percent=True),
    "track_set: percent 12.5": lambda t, jid: t.track_set(jid, percent=12.5),  # type: ignore[arg-type]
    "track_set: percent '50'": lambda t, jid: t.track_set(jid, percent="50"),  # type: ignore[arg-type]
    "track_set: desc too long": lambda t, jid: t.track_set(jid, percent=5, desc="x" * 4097),
    "track_set: desc not text": lambda t, jid: t.track_set(jid, desc=7),  # type: ignore[arg-type]
    "track_set: reserve_until without zone": lambda t, jid: t.track_set(
        jid, percent=5, reserve_until="2030-01-01T00:00:00"
    ),
    "track_set: reserve_until naive datetime": lambda t, jid: t.track_set(
        jid, reserve_until=datetime(2030, 1, 1)
    ),
    "track_set: reserve_until a number": lambda t, jid: t.track_set(
        jid, reserve_until=1_900_000_000
    ),
    "success: malformed jid": lambda t, _: t.success(NOT_A_JID),
    "fail: malformed jid": lambda t, _: t.fail(NOT_A_JID, "boom"),
    "fail: error too long": lambda t, jid: t.fail(jid, "x" * 4097),
    "fail: retry not a bool": lambda t, jid: t.fail(jid, "boom", retry="yes"),  # type: ignore[arg-type]
    "cancel: malformed jid": lambda t, _: t.cancel(NOT_A_JID),
    "pause: malformed jid": lambda t, _: t.pause(NOT_A_JID),
    "resume: malformed jid": lambda t, _: t.resume(NOT_A_JID),
    "track_get: malformed jid": lambda t, _: t.track_get(NOT_A_JID),
}


def moment(ms: int, zone: int) -> str | datetime:
    """A moment in one of the shapes TRACK SET accepts: a ``Z`` string or an aware datetime."""
    utc = EPOCH + timedelta(milliseconds=ms)
    if zone == 0:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return utc.astimezone(timezone(timedelta(hours=zone)))


@dataclass
class Job:
    """What SPEC sections 2 and 3 say one job's track holds."""

    body: Body
    created_at: int
    updated_at: int
    state: State = State.ENQUEUED
    attempts: int = 0
    percent: int | None = None
    desc: str | None = None
    reserve_until: int | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def max_attempts(self) -> int:
        return self.body[2]

    def track(self, jid: str) -> Track:
        return Track(
            jid=jid,
            state=self.state,
            updated_at=self.updated_at,
            created_at=self.created_at,
            percent=self.percent,
            desc=self.desc,
            reserve_until=self.reserve_until,
            queue=self.body[0],
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            errors=tuple(self.errors),
        )

    def move(self, state: State, now: int) -> None:
        if state is not State.WORKING:
            self.reserve_until = None
        self.state = state
        self.updated_at = now

    def fail(self, now: int, message: str, error_type: str | None, retry: bool) -> None:
        entry: dict[str, Any] = {"message": message, "at": now}
        if error_type:
            entry["type"] = error_type
        self.errors = [entry, *self.errors][:MAX_ERRORS]
        retried = retry and self.attempts < self.max_attempts
        self.move(State.FAILED if retried else State.DEAD, now)


class LifecycleMachine(RuleBasedStateMachine):
    """Drives one fresh namespace per example and keeps the model beside it."""

    def __init__(self, make_tracker: MakeTracker, base: Tracker) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.tracker = make_tracker(
            client=base.client, clock=self.clock, ttl=LONG_TTL, pending_ttl=LONG_TTL
        )
        self.jobs: dict[str, Job] = {}
        self.events = 0

    # --- helpers -------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock() * 1000)  # what the tracker sends its scripts

    def set_now(self, ms: int) -> None:
        self.clock.now = ms / 1000
        while self.now() < ms:  # ms / 1000 may round down by a hair
            self.clock.now = math.nextafter(self.clock.now, math.inf)

    def transition(
        self,
        jid: str,
        call: Callable[[], Track],
        allowed: frozenset[State],
        apply: Callable[[Job, int], None],
    ) -> None:
        """A call accepted from the ``allowed`` states, changing the job as ``apply`` does."""
        job = self.jobs.get(jid)
        if job is None:
            perform(call, Refusal(NotFound))
        elif job.state not in allowed:
            perform(call, Refusal(Conflict, job.state.value))
        else:
            track = perform(call, None)
            apply(job, self.now())
            self.events += 1
            assert track == job.track(jid)

    # --- rules ---------------------------------------------------------------

    @initialize(bodies=st.lists(bodies, min_size=3, max_size=3))
    def register_most_jobs(self, bodies: list[Body]) -> None:
        # the last jid stays unknown until the register rule picks it
        for jid, body in zip(JIDS, bodies, strict=False):
            self.register(jid, body)

    @rule(jid=jids, body=bodies, again=st.booleans())
    def register(self, jid: str, body: Body, again: bool = False) -> None:
        if again and jid in self.jobs:
            body = self.jobs[jid].body  # the same body again: a no-op in any state
        queue, reserve_for, attempts = body

        def call() -> Registered:
            return self.tracker.register(
                jid, queue=queue, reserve_for=reserve_for, max_attempts=attempts
            )

        job = self.jobs.get(jid)
        if job is not None and job.body != body:
            perform(call, Refusal(Conflict, job.state.value))
            return
        done = perform(call, None)
        assert done is not None
        assert done.created == (job is None)
        if job is None:
            job = self.jobs[jid] = Job(body, created_at=self.now(), updated_at=self.now())
            self.events += 1
        assert done.track == job.track(jid)

    @rule(jid=jids, reserve_for=st.none() | reserve_fors)
    def start(self, jid: str, reserve_for: int | None) -> None:
        def apply(job: Job, now: int) -> None:
            job.move(State.WORKING, now)
            job.attempts += 1
            job.reserve_until = now + 1000 * (reserve_for or job.body[1])

        self.transition(
            jid,
            lambda: self.tracker.start(jid, reserve_for=reserve_for),
            frozenset({State.ENQUEUED, State.FAILED}),
            apply,
        )

    @rule(
        jid=jids,
        percent=st.none() | st.integers(0, 100),
        desc=st.none() | st.text(max_size=12),
        shift=reserve_shifts,
        zone=st.sampled_from([0, 2, -5]),
    )
    def track_set(
        self, jid: str, percent: int | None, desc: str | None, shift: int | None, zone: int
    ) -> None:
        job = self.jobs.get(jid)
        wanted: int | None = None
        if shift is not None:
            wanted = (job.reserve_until if job and job.reserve_until else self.now()) + shift

        def call() -> Track:
            self.tracker.track_set(
                jid,
                percent=percent,
                desc=desc,
                reserve_until=None if wanted is None else moment(wanted, zone),
            )
            return self.tracker.track_get(jid)

        def apply(job: Job, now: int) -> None:
            job.updated_at = now
            if percent is not None:
                job.percent = percent
            if desc is not None:
                job.desc = desc
            if wanted is not None:
                job.reserve_until = wanted

        allowed = frozenset(s for s in STORED_STATES if not s.terminal)
        if wanted is not None:
            # only while working, and only later: an earlier one applies nothing at all
            current = job.reserve_until if job else None
            later = current is not None and wanted >= current
            allowed = frozenset({State.WORKING}) if later else frozenset()
        self.transition(jid, call, allowed, apply)

    @rule(
        jid=jids,
        message=st.text(max_size=12),
        error_type=st.none() | st.sampled_from(["", "ValueError"]),
        retry=st.booleans(),
    )
    def fail(self, jid: str, message: str, error_type: str | None, retry: bool) -> None:
        self.transition(
            jid,
            lambda: self.tracker.fail(jid, message, retry=retry, error_type=error_type),
            frozenset({State.WORKING, State.ENQUEUED}),
            lambda job, now: job.fail(now, message, error_type, retry),
        )

    @rule(
        jid=jids,
        write=st.sampled_from(["track_set", "success", "fail"]),
        offset=st.integers(-1, 1),
    )
    def a_worker_names_its_attempt(self, jid: str, write: str, offset: int) -> None:
        """Fencing: a write naming an attempt that is not running (another one, or the
        current one once reaped or failed) is refused and changes nothing; a write
        naming the running attempt goes on as without one."""
        job = self.jobs.get(jid)
        attempt = max(1, (job.attempts if job else 1) + offset)
        calls: dict[str, Callable[[], Track]] = {
            "track_set": lambda: (
                self.tracker.track_set(jid, percent=offset + 50, attempt=attempt),
                self.tracker.track_get(jid),
            )[1],
            "success": lambda: self.tracker.success(jid, attempt=attempt),
            "fail": lambda: self.tracker.fail(jid, "fenced", attempt=attempt),
        }
        running = job is not None and (job.state is State.WORKING or job.state.terminal)
        if job is not None and (attempt != job.attempts or not running):
            perform(calls[write], Refusal(JobSuperseded, job.state.value))
        elif write == "track_set":

            def progress(job: Job, now: int) -> None:
                job.percent, job.updated_at = offset + 50, now

            allowed = frozenset(s for s in STORED_STATES if not s.terminal)
            self.transition(jid, calls[write], allowed, progress)
        elif write == "success" and job is not None and job.state is State.SUCCESS:
            assert perform(calls[write], None) == job.track(jid)
        elif write == "success":
            self.transition(
                jid,
                calls[write],
                frozenset({State.WORKING, State.ENQUEUED}),
                lambda job, now: job.move(State.SUCCESS, now),
            )
        else:
            self.transition(
                jid,
                calls[write],
                frozenset({State.WORKING, State.ENQUEUED}),
                lambda job, now: job.fail(now, "fenced", None, True),
            )

    @rule(jid=jids, attempts=st.integers(1, 6))
    def attempts_fail_while_retries_remain(self, jid: str, attempts: int) -> None:
        # a worker retrying at once: long error histories within a short run
        for n in range(attempts):
            job = self.jobs.get(jid)
            if job is None or job.state not in RUNNABLE or job.attempts + 1 >= job.max_attempts:
                return
            self.start(jid, reserve_for=None)
            self.fail(jid, f"attempt {n} failed", error_type=None, retry=True)

    # success and cancel share a rule, as pause and resume do, so that jobs live long
    # enough to be started, extended and failed a few times before they end

    @rule(jid=jids, cancel=st.booleans())
    def finish(self, jid: str, cancel: bool) -> None:
        if cancel:
            self.cancel(jid)
        else:
            self.success(jid)

    def success(self, jid: str) -> None:
        job = self.jobs.get(jid)
        if job is not None and job.state is State.SUCCESS:
            # a second success is a no-op that returns the track unchanged
            assert perform(lambda: self.tracker.success(jid), None) == job.track(jid)
            return
        self.transition(
            jid,
            lambda: self.tracker.success(jid),
            frozenset({State.WORKING, State.ENQUEUED}),
            lambda job, now: job.move(State.SUCCESS, now),
        )

    def cancel(self, jid: str) -> None:
        self.transition(
            jid,
            lambda: self.tracker.cancel(jid),
            frozenset(s for s in STORED_STATES if not s.terminal),
            lambda job, now: job.move(State.CANCELLED, now),
        )

    @rule(jid=jids, resume=st.booleans())
    def hold(self, jid: str, resume: bool) -> None:
        if resume:
            self.resume(jid)
        else:
            self.pause(jid)

    def pause(self, jid: str) -> None:
        self.transition(
            jid,
            lambda: self.tracker.pause(jid),
            frozenset({State.WAITING, State.ENQUEUED}),
            lambda job, now: job.move(State.PAUSED, now),
        )

    def resume(self, jid: str) -> None:
        # no job here has prerequisites, so a resumed job is enqueued at once
        self.transition(
            jid,
            lambda: self.tracker.resume(jid),
            frozenset({State.PAUSED}),
            lambda job, now: job.move(State.ENQUEUED, now),
        )

    @rule(jid=jids)
    def track_get(self, jid: str) -> None:
        job = self.jobs.get(jid)
        expected = job.track(jid) if job else Track(jid, State.UNKNOWN)
        assert self.tracker.track_get(jid) == expected

    @rule(jid=jids, what=st.sampled_from(sorted(INVALID_CALLS)))
    def invalid_input(self, jid: str, what: str) -> None:
        perform(lambda: INVALID_CALLS[what](self.tracker, jid), Refusal(InvalidInput))

    @rule(ms=st.integers(0, 120_000), to_a_reservation_end=st.booleans())
    def time_passes_and_the_reaper_runs(self, ms: int, to_a_reservation_end: bool) -> None:
        now = self.now()
        ends = [
            job.reserve_until
            for job in self.jobs.values()
            if job.reserve_until is not None and job.reserve_until > now
        ]
        if to_a_reservation_end and ends:
            self.set_now(min(ends))  # the boundary: a reservation ends at its reserve_until
        else:
            self.clock.advance(ms / 1000)
        now = self.now()
        due = sorted(
            (job.reserve_until, jid)
            for jid, job in self.jobs.items()
            if job.state is State.WORKING
            and job.reserve_until is not None
            and job.reserve_until <= now
        )
        reaped = self.tracker.reap(100)
        for _, jid in due:
            self.jobs[jid].fail(now, "reservation expired", "ReservationExpired", retry=True)
        self.events += len(due)
        assert reaped == [self.jobs[jid].track(jid) for _, jid in due]

    # --- what must hold after every step ---------------------------------------

    @invariant()
    def every_track_matches_the_model(self) -> None:
        for jid in JIDS:
            job = self.jobs.get(jid)
            expected = job.track(jid) if job else Track(jid, State.UNKNOWN)
            assert self.tracker.track_get(jid) == expected

    @invariant()
    def indexes_hold_each_job_once_in_its_state(self) -> None:
        keys = self.tracker.keys
        pipe = self.tracker.client.pipeline(transaction=False)
        for state in STORED_STATES:
            pipe.zrange(keys.state(state), 0, -1)
        pipe.zrange(keys.reservations, 0, -1, withscores=True)
        *by_state, reserved = pipe.execute()
        for state, members in zip(STORED_STATES, by_state, strict=True):
            expected = {jid for jid, job in self.jobs.items() if job.state is state}
            assert {m.decode() for m in members} == expected, state
        assert {m.decode(): int(score) for m, score in reserved} == {
            jid: job.reserve_until for jid, job in self.jobs.items() if job.state is State.WORKING
        }

    @invariant()
    def every_change_and_nothing_else_is_one_event(self) -> None:
        assert self.tracker.client.xlen(self.tracker.keys.events) == self.events


def test_random_lifecycles_follow_the_model(make_tracker: MakeTracker) -> None:
    base = make_tracker()
    run_state_machine_as_test(
        lambda: LifecycleMachine(make_tracker, base),
        settings=settings(max_examples=60, stateful_step_count=30, deadline=None),
    )
