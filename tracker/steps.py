"""Ordered steps of parallel jobs (the Tasker pattern), as a chain of batches.

``register_steps(tracker, "report-7", [["fetch-a", "fetch-b"], ["merge"], ["mail"]])``
registers one batch for the whole workflow (``report-7``), one batch per step
(``report-7:step-1`` ...) as its children, each step's batch waiting for the one
before, and each job as a child of its step. A step's jobs are held until the
previous step succeeded; a dead job makes its step dead, and so the workflow
(and, with failure propagation on, every later step). The workflow's percent
rolls up from the steps, and theirs from their jobs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .client import Tracker
from .errors import InvalidInput
from .model import check_name

Job = str | Mapping[str, Any]


def step_jid(workflow: str, number: int) -> str:
    """The batch of step ``number`` (1-based) of ``workflow``."""
    return check_name("jid", f"{workflow}:step-{number}")


def register_steps(
    tracker: Tracker, workflow: str, steps: Sequence[Sequence[Job]], **workflow_fields: Any
) -> list[str]:
    """Register ``steps`` (each a list of jids, or of register fields with a ``jid``).

    Returns the step batches' jids. Registering the same workflow again is a no-op,
    as registering the same job again is.
    """
    if not steps or any(not step for step in steps):
        raise InvalidInput("steps", "expected one or more steps, each with one or more jobs")
    tracker.register(workflow, batch=True, **workflow_fields)
    batches: list[str] = []
    for number, jobs in enumerate(steps, start=1):
        batch = step_jid(workflow, number)
        before = batches[-1:]  # the previous step, if any
        tracker.register(batch, batch=True, parent=workflow, prerequisites=before)
        for job in jobs:
            fields = {"jid": job} if isinstance(job, str) else dict(job)
            jid = fields.pop("jid", None)
            if not isinstance(jid, str):
                raise InvalidInput("steps", "each job needs a jid")
            tracker.register(jid, parent=batch, **fields)
        tracker.seal(batch)
        batches.append(batch)
    tracker.seal(workflow)
    return batches
