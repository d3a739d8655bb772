"""The exceptions every part of tracker raises, all under :class:`TrackerError`.

The HTTP app maps each class to one status code (400, 404, 409, 503); the CLI
maps them to exit codes. Nothing else catches them.
"""

from __future__ import annotations


class TrackerError(Exception):
    """Base of every error tracker raises on purpose."""


class InvalidInput(TrackerError, ValueError):
    """A field failed validation; nothing was written."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class NotFound(TrackerError, LookupError):
    """The jid has no track: never registered, or its track expired."""

    state = "unknown"

    def __init__(self, jid: str) -> None:
        super().__init__(f"job {jid!r} has no track (state unknown)")
        self.jid = jid


class Conflict(TrackerError):
    """The job's current state refuses the request; nothing was written.

    ``attempt`` is the job's current attempt when the refusal is about attempts (a write
    naming one that is not running: fencing), else None.
    """

    def __init__(self, jid: str, state: str, detail: str, attempt: int | None = None) -> None:
        super().__init__(f"job {jid!r} is {state}: {detail}")
        self.jid = jid
        self.state = state
        self.detail = detail
        self.attempt = attempt


class JobSuperseded(Conflict):
    """A write named an attempt that is not running (fencing): it was reaped, or the job
    started again since. The writer must stop that job: another attempt owns it."""


class JobCancelled(Conflict):
    """Raised inside a running job whose track was cancelled meanwhile."""

    def __init__(self, jid: str) -> None:
        super().__init__(jid, "cancelled", "the job was cancelled")


class StoreUnavailable(TrackerError):
    """Redis (or Valkey) did not answer."""


class SettingsError(TrackerError):
    """A configuration value is invalid; the process should not start."""

    def __init__(self, variable: str, detail: str) -> None:
        super().__init__(f"{variable}: {detail}")
        self.variable = variable
        self.detail = detail


class UnsupportedRQ(TrackerError, ImportError):
    """The installed RQ is not a release tracker was tested on (``RQ_TESTED`` in
    handoff.py): raised when tracker is imported, since the hand-off replays what that
    RQ's enqueue writes."""
