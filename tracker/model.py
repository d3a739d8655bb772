"""States, the Track record, and the validation of every input field.

Everything a caller sends is checked here before it becomes a script call, so
a refused input never reaches Redis. Times are integer milliseconds since the
epoch inside tracker and RFC 3339 strings outside (see times.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypedDict

import msgpack

from .errors import InvalidInput
from .times import format_time, parse_time

_NAME = re.compile(r"[A-Za-z0-9\-_.:@]{1,128}")
MAX_DESC = 4096
MAX_ERROR = 4096
#: A traceback is kept to this many bytes of UTF-8, cut from the top (the newest frames stay).
MAX_TRACEBACK = 8 * 1024
MAX_LABELS = 32
MAX_LABEL_VALUE = 256
MAX_PAYLOAD = 64 * 1024
MAX_ATTEMPTS = 1000
#: The highest attempt number a write may name (a retry may go on past max_attempts).
MAX_ATTEMPT = 2**31 - 1
MAX_RESERVE_FOR = 365 * 24 * 3600
DEFAULT_MAX_ATTEMPTS = 25
MAX_LIST_LIMIT = 1000
MAX_PREREQUISITES = 10_000
#: The most digits a number written as text may have: every number tracker takes fits,
#: and longer text is refused before ``int()`` spends time on it (or raises past 4,300).
MAX_DIGITS = 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class State(StrEnum):
    UNKNOWN = "unknown"
    WAITING = "waiting"
    PAUSED = "paused"
    ENQUEUED = "enqueued"
    WORKING = "working"
    FAILED = "failed"
    SUCCESS = "success"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({State.SUCCESS, State.DEAD, State.CANCELLED})
#: The states a stored track can be in, in the order scripts receive their index keys.
STORED_STATES = (
    State.WAITING,
    State.PAUSED,
    State.ENQUEUED,
    State.WORKING,
    State.FAILED,
    State.SUCCESS,
    State.DEAD,
    State.CANCELLED,
)


# --- field checks -----------------------------------------------------------


def check_name(name: str, value: object) -> str:
    """A jid, queue, batch id or label key: 1 to 128 of ``A-Z a-z 0-9 - _ . : @``."""
    if not isinstance(value, str):
        raise InvalidInput(name, f"expected a string, got {type(value).__name__}")
    if not _NAME.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidInput(
            name, f"must be 1 to 128 characters from A-Z a-z 0-9 - _ . : @, got {shown!r}"
        )
    return value


def check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(name, f"expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidInput(name, f"must be between {low} and {high}, got {value}")
    return value


def parse_int(name: str, text: str, low: int, high: int) -> int:
    """An integer written in ASCII digits (a query parameter, a header), ``low..high``."""
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_DIGITS:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise InvalidInput(name, f"expected an integer {low}..{high}, got {shown!r}")
    return check_int(name, int(text), low, high)


def parse_label(text: str) -> tuple[str, str]:
    """A label filter, ``KEY=VALUE``; the first ``=`` splits, since no key holds one.
    ``KEY:VALUE`` is read too where there is no ``=`` (a key with ``:`` then needs ``=``)."""
    key, sep, value = text.partition("=")
    if not sep:
        key, sep, value = text.partition(":")
    if not sep:
        raise InvalidInput("label", f"expected KEY=VALUE, got {text[:40]!r}")
    check_name("label key", key)
    check_text("label", value, MAX_LABEL_VALUE)
    if _CONTROL.search(value):
        raise InvalidInput("label", "a label value holds no control characters")
    return key, value


def check_text(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(name, f"expected a string, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidInput(name, f"must be at most {limit} characters, got {len(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(name, "must be valid Unicode (no lone surrogates)") from None
    return value


def check_labels(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidInput("labels", f"expected an object, got {type(value).__name__}")
    if len(value) > MAX_LABELS:
        raise InvalidInput("labels", f"at most {MAX_LABELS} labels, got {len(value)}")
    labels: dict[str, str] = {}
    for key, text in value.items():
        check_name("labels key", key)
        check_text(f"labels[{key}]", text, MAX_LABEL_VALUE)
        if _CONTROL.search(text):
            raise InvalidInput(f"labels[{key}]", "must not contain control characters")
        labels[key] = text
    return dict(sorted(labels.items()))


def check_payload(value: object) -> dict[str, Any]:
    """``{"func": "dotted.path", "args": [...], "kwargs": {...}}``, packed to at most 64 KiB."""
    if not isinstance(value, Mapping):
        raise InvalidInput("payload", f"expected an object, got {type(value).__name__}")
    extra = set(value) - {"func", "args", "kwargs"}
    if extra:
        raise InvalidInput("payload", f"unknown fields {sorted(extra)}")
    func = value.get("func")
    if not isinstance(func, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", func):
        raise InvalidInput("payload.func", "expected a dotted path such as 'app.tasks.resize'")
    args = value.get("args", [])
    kwargs = value.get("kwargs", {})
    if not isinstance(args, list | tuple):
        raise InvalidInput("payload.args", f"expected a list, got {type(args).__name__}")
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise InvalidInput("payload.kwargs", "expected an object with string keys")
    payload = {"func": func, "args": list(args), "kwargs": dict(kwargs)}
    if len(pack(payload)) > MAX_PAYLOAD:
        raise InvalidInput("payload", f"must pack to at most {MAX_PAYLOAD} bytes")
    return payload


def func_name(func: object) -> str:
    """How RQ names a function: ``module.qualname``, or the dotted path given."""
    if isinstance(func, str):
        return func
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", None)
    if not callable(func) or not module or not qualname or "<" in qualname:
        raise InvalidInput("func", "expected a module-level function or a dotted path to one")
    return f"{module}.{qualname}"


def pack(value: object) -> bytes:
    try:
        return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]
    except OverflowError:  # an integer past 64 bits: any is a valid argument
        return pack(_wide_ints_as_text(value))
    except (TypeError, ValueError) as exc:
        raise InvalidInput("payload", f"cannot be serialised: {exc}") from None


def _wide_ints_as_text(value: object) -> object:
    """``value`` with every integer msgpack cannot hold (past 64 bits) as its digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -(2**63) <= value < 2**64 else f"int:{value}"
    if isinstance(value, list | tuple):
        return [_wide_ints_as_text(item) for item in value]
    if isinstance(value, dict):
        return {key: _wide_ints_as_text(item) for key, item in value.items()}
    return value


# --- requests ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registration:
    """A validated register request, with every default filled in."""

    jid: str
    queue: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    reserve_for: int = 1800
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    payload: dict[str, Any] | None = None
    prerequisites: tuple[str, ...] = ()
    missing_prerequisites: str = "pending"
    delay: int = 0
    parent: str | None = None
    batch: bool = False
    hide_args: bool = False

    def fingerprint(self) -> bytes:
        """8 bytes that differ when two bodies mean different things."""
        body = [
            self.queue,
            self.labels,
            self.reserve_for,
            self.max_attempts,
            self.payload,
            sorted(self.prerequisites),
            self.missing_prerequisites,
            self.delay,
            self.parent,
            self.batch,
        ]
        if self.hide_args:  # only when set: the fingerprints of older tracks still match
            body.append(True)
        return hashlib.blake2b(pack(body), digest_size=8).digest()

    def shown_payload(self) -> dict[str, Any] | None:
        """The payload as the track shows it: its args and kwargs ``"hidden"`` when asked."""
        if self.payload is None:
            return None
        if self.hide_args:
            return {"func": self.payload["func"], "args": "hidden", "kwargs": "hidden"}
        return self.payload


class RegisterFields(TypedDict, total=False):
    """The optional fields of a registration (SPEC section 6, ``PUT /jobs/{jid}``)."""

    queue: str
    labels: Mapping[str, str] | None
    reserve_for: int | None
    max_attempts: int
    payload: Mapping[str, Any] | None
    prerequisites: Iterable[str] | None
    missing_prerequisites: str
    delay: int
    parent: str | None
    batch: bool
    hide_args: bool


def registration(
    jid: str,
    *,
    queue: str = "default",
    labels: Mapping[str, str] | None = None,
    reserve_for: int | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    payload: Mapping[str, Any] | None = None,
    prerequisites: Iterable[str] | None = None,
    missing_prerequisites: str = "pending",
    delay: int = 0,
    parent: str | None = None,
    batch: bool = False,
    hide_args: bool = False,
    default_reserve_for: int = 1800,
) -> Registration:
    return Registration(
        jid=check_name("jid", jid),
        queue=check_name("queue", queue),
        labels=check_labels(labels) if labels is not None else {},
        reserve_for=check_int("reserve_for", reserve_for, 1, MAX_RESERVE_FOR)
        if reserve_for is not None
        else default_reserve_for,
        max_attempts=check_int("max_attempts", max_attempts, 1, MAX_ATTEMPTS),
        payload=check_payload(payload) if payload is not None else None,
        prerequisites=check_prerequisites(prerequisites),
        missing_prerequisites=check_choice(
            "missing_prerequisites", missing_prerequisites, ("pending", "satisfied")
        ),
        delay=check_int("delay", delay, 0, MAX_RESERVE_FOR),
        parent=None if parent is None else check_name("parent", parent),
        batch=check_bool("batch", batch),
        hide_args=check_bool("hide_args", hide_args),
    )


def cut_traceback(text: object) -> str:
    """A traceback of at most :data:`MAX_TRACEBACK` bytes: a longer one loses its top
    (the outer frames), from a line start where one is near, and says so."""
    if not isinstance(text, str):
        raise InvalidInput("traceback", f"expected a string, got {type(text).__name__}")
    data = text.encode("utf-8", errors="replace")  # a lone surrogate (a file name) becomes ?
    if len(data) <= MAX_TRACEBACK:
        return data.decode("utf-8")
    marker = "[...]\n"
    tail = data[len(data) - MAX_TRACEBACK + len(marker) :].decode("utf-8", errors="ignore")
    newline = tail.find("\n")
    if 0 <= newline < 1024:
        tail = tail[newline + 1 :]
    return marker + tail


def check_prerequisites(value: object) -> tuple[str, ...]:
    """Distinct jids, in the order given; at most MAX_PREREQUISITES."""
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidInput("prerequisites", f"expected a list of jids, got {type(value).__name__}")
    jids = list(dict.fromkeys(check_name("prerequisites", jid) for jid in value))
    if len(jids) > MAX_PREREQUISITES:
        raise InvalidInput(
            "prerequisites", f"at most {MAX_PREREQUISITES} prerequisites, got {len(jids)}"
        )
    return tuple(jids)


def check_state(state: str | State) -> str:
    """A state a stored track can be in (not ``unknown``), as its name."""
    try:
        value = State(state)
    except ValueError:
        raise InvalidInput("state", f"unknown state {state!r}") from None
    if value is State.UNKNOWN:
        raise InvalidInput("state", "no stored track is in state unknown")
    return value.value


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidInput(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(name, f"expected true or false, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class TrackUpdate:
    """A validated TRACK SET: the fields to change, ``None`` where unchanged."""

    jid: str
    percent: int | None = None
    desc: str | None = None
    reserve_until: int | None = None
    #: The writer's attempt (fencing): refused unless that attempt is running.
    attempt: int | None = None


def checked_update(update: TrackUpdate) -> TrackUpdate:
    """Check a :class:`TrackUpdate` built by hand, as :func:`track_update` checks its fields."""
    check_name("jid", update.jid)
    if update.percent is not None:
        check_int("percent", update.percent, 0, 100)
    if update.desc is not None:
        check_text("desc", update.desc, MAX_DESC)
    if update.reserve_until is not None:
        check_int("reserve_until", update.reserve_until, 0, 253402300799999)
    check_attempt(update.attempt)
    return update


def track_update(
    jid: str,
    *,
    percent: object = None,
    desc: object = None,
    reserve_until: object = None,
    attempt: object = None,
) -> TrackUpdate:
    return TrackUpdate(
        jid=check_name("jid", jid),
        percent=None if percent is None else check_int("percent", percent, 0, 100),
        desc=None if desc is None else check_text("desc", desc, MAX_DESC),
        reserve_until=None if reserve_until is None else parse_time("reserve_until", reserve_until),
        attempt=check_attempt(attempt),
    )


def check_attempt(attempt: object) -> int | None:
    """An attempt number (1 and up), as ``start`` returned it in ``attempts``; or None."""
    return None if attempt is None else check_int("attempt", attempt, 1, MAX_ATTEMPT)


# --- the track --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Track:
    """What TRACK GET returns. Times are epoch milliseconds; :meth:`to_dict` renders them."""

    jid: str
    state: State
    updated_at: int | None = None
    created_at: int | None = None
    percent: int | None = None
    desc: str | None = None
    reserve_until: int | None = None
    queue: str | None = None
    attempts: int | None = None
    max_attempts: int | None = None
    labels: dict[str, str] | None = None
    errors: tuple[dict[str, Any], ...] = ()
    prerequisites: dict[str, int] | None = None
    parent: str | None = None
    batch: dict[str, Any] | None = None
    blocked_by: str | None = None
    eligible_at: int | None = None
    payload: dict[str, Any] | None = None

    @property
    def error(self) -> dict[str, Any] | None:
        """The newest error, if the job ever failed."""
        return self.errors[0] if self.errors else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of SPEC section 2: absent fields are left out."""
        out: dict[str, Any] = {"jid": self.jid, "state": self.state.value}
        if self.percent is not None:
            out["percent"] = self.percent
        if self.desc is not None:
            out["desc"] = self.desc
        if self.reserve_until is not None:
            out["reserve_until"] = format_time(self.reserve_until)
        if self.updated_at is not None:
            out["updated_at"] = format_time(self.updated_at)
        if self.created_at is not None:
            out["created_at"] = format_time(self.created_at)
        if self.queue is not None:
            out["queue"] = self.queue
        if self.attempts is not None:
            out["attempts"] = self.attempts
        if self.max_attempts is not None:
            out["max_attempts"] = self.max_attempts
        if self.labels:
            out["labels"] = self.labels
        if self.prerequisites is not None:
            out["prerequisites"] = self.prerequisites
        if self.parent is not None:
            out["parent"] = self.parent
        if self.batch is not None:
            out["batch"] = self.batch
        if self.blocked_by is not None:
            out["blocked_by"] = self.blocked_by
        if self.eligible_at is not None:
            out["eligible_at"] = format_time(self.eligible_at)
        if self.payload is not None:
            out["payload"] = self.payload
        if self.errors:
            out["error"] = _error_json(self.errors[0])
            out["errors"] = [_error_json(e) for e in self.errors]
        return out


def _error_json(error: Mapping[str, Any]) -> dict[str, Any]:
    out = {"message": error["message"]}
    if error.get("type"):
        out["type"] = error["type"]
    if error.get("at") is not None:
        out["at"] = format_time(int(error["at"]))
    if error.get("source"):
        out["source"] = error["source"]
    if error.get("traceback"):
        out["traceback"] = error["traceback"]
    return out
