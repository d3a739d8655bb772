"""The JSON shapes of the HTTP API, written once: bodies are checked against them and
``/openapi.json`` is built from them.

A :class:`Body` says which fields a request may carry and their JSON types; reading
a body checks exactly that (an object, no unknown field, each value of its type,
``null`` meaning "not given"), and :mod:`tracker.model` then checks every limit,
naming the field. The limits in the schemas below come from the same constants.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from .. import model
from ..errors import InvalidInput
from ..model import STORED_STATES
from .problems import BodyTooLarge

MAX_BODY = 64 * 1024

NAME: dict[str, Any] = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9\-_.:@]{1,128}$",
    "minLength": 1,
    "maxLength": 128,
}
_NO_CONTROL = "^[^\\u0000-\\u001f\\u007f]*$"
_CONTROLS = r"\u0000-\u001f\u007f"
_VALUE_LENGTH = f"{{0,{model.MAX_LABEL_VALUE}}}"
#: ``KEY=VALUE``, or ``KEY:VALUE`` where neither holds a ``=`` (model.parse_label).
LABEL_FILTER: dict[str, Any] = {
    "type": "string",
    "pattern": rf"^([A-Za-z0-9\-_.:@]{{1,128}}=[^{_CONTROLS}]{_VALUE_LENGTH}"
    rf"|[A-Za-z0-9\-_.@]{{1,128}}:[^={_CONTROLS}]{_VALUE_LENGTH})$",
}
#: A page's ``next`` (``<updated_at ms>.<jid>``, see listing.py), or empty for the first.
CURSOR: dict[str, Any] = {
    "type": "string",
    "pattern": rf"^([0-9]{{1,{model.MAX_DIGITS}}}\.[A-Za-z0-9\-_.:@]{{1,128}})?$",
}
TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
STATE: dict[str, Any] = {"type": "string", "enum": ["unknown", *(s.value for s in STORED_STATES)]}
#: The states a filter takes: those a stored track can be in.
STORED_STATE: dict[str, Any] = {"type": "string", "enum": [s.value for s in STORED_STATES]}
#: The years times.parse_time takes: "date-time" alone lets a client send year 0001.
_YEAR_1970_TO_9999 = r"^(19[7-9][0-9]|[2-9][0-9]{3})-"


@dataclass(frozen=True)
class Field:
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Body:
    """A request body: a JSON object with these fields (all optional unless required)."""

    name: str
    fields: dict[str, Field] = field(default_factory=dict)

    def schema(self) -> dict[str, Any]:
        properties = {}
        for name, spec in self.fields.items():
            value = {**spec.schema, "description": spec.description}
            properties[name] = value if spec.required else {"anyOf": [value, {"type": "null"}]}
        out: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        required = [name for name, spec in self.fields.items() if spec.required]
        if required:
            out["required"] = required
        return out


REGISTER = Body(
    "Registration",
    {
        "queue": Field(NAME, "The queue it is released to (default `default`)."),
        "prerequisites": Field(
            {"type": "array", "items": NAME, "maxItems": model.MAX_PREREQUISITES},
            "Jobs that must succeed first.",
        ),
        "missing_prerequisites": Field(
            {"type": "string", "enum": ["pending", "satisfied"]},
            "How a prerequisite without a track counts (default `pending`).",
        ),
        "delay": Field(
            {"type": "integer", "minimum": 0, "maximum": model.MAX_RESERVE_FOR},
            "Seconds to hold it once released.",
        ),
        "parent": Field(NAME, "The batch it belongs to."),
        "batch": Field({"type": "boolean"}, "Whether it is a batch."),
        "labels": Field(
            {
                "type": "object",
                "maxProperties": model.MAX_LABELS,
                "propertyNames": NAME,
                "additionalProperties": {
                    "type": "string",
                    "maxLength": model.MAX_LABEL_VALUE,
                    "pattern": _NO_CONTROL,
                },
            },
            "Free labels to list jobs by (`GET /jobs?label=KEY=VALUE`).",
        ),
        "reserve_for": Field(
            {"type": "integer", "minimum": 1, "maximum": model.MAX_RESERVE_FOR},
            "Seconds a start reserves it for (default `TRACKER_RESERVE_FOR`).",
        ),
        "max_attempts": Field(
            {"type": "integer", "minimum": 1, "maximum": model.MAX_ATTEMPTS},
            "Attempts before a failure is final (default 25).",
        ),
        "payload": Field(
            {
                "type": "object",
                "properties": {
                    "func": {
                        "type": "string",
                        "pattern": r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$",
                        "description": "The function, as RQ names it: `module.function`.",
                    },
                    "args": {"type": "array"},
                    "kwargs": {"type": "object"},
                },
                "required": ["func"],
                "additionalProperties": False,
            },
            "What the queue runs: the job is enqueued into RQ when released, with its jid as"
            " RQ's job id, which allows only `A-Z a-z 0-9 _ -` (400 for a jid with others).",
        ),
        "hide_args": Field(
            {"type": "boolean"},
            'Show the payload\'s `args` and `kwargs` as `"hidden"` in the track (default false).',
        ),
    },
)
ATTEMPT = Field(
    {"type": "integer", "minimum": 1, "maximum": model.MAX_ATTEMPT},
    "The writer's attempt (the `attempts` of the track `start` returned): refused with 409 "
    "(`state`, and `attempt` the current one) once another attempt started. Without it, "
    "no check.",
)
TRACK_SET = Body(
    "TrackSet",
    {
        "jid": Field(NAME, "When given, must be the jid of the path."),
        "percent": Field({"type": "integer", "minimum": 0, "maximum": 100}, "Progress."),
        "desc": Field({"type": "string", "maxLength": model.MAX_DESC}, "What it is doing."),
        "reserve_until": Field(
            {**TIME, "pattern": _YEAR_1970_TO_9999},
            "A later end of the reservation (RFC 3339, with a zone; 1970 to 9999).",
        ),
        "attempt": ATTEMPT,
    },
)
START = Body(
    "Start",
    {
        "reserve_for": Field(
            {"type": "integer", "minimum": 1, "maximum": model.MAX_RESERVE_FOR},
            "Seconds to reserve it for (default: the job's own).",
        )
    },
)
FAIL = Body(
    "Fail",
    {
        "error": Field(
            {"type": "string", "maxLength": model.MAX_ERROR}, "What went wrong.", required=True
        ),
        "retry": Field({"type": "boolean"}, "Whether a retry is wanted (default true)."),
        "type": Field({"type": "string", "maxLength": 256}, "The error's type, e.g. `ValueError`."),
        "attempt": ATTEMPT,
        "traceback": Field({"type": "string"}, "The worker's traceback; kept to its last 8 KiB."),
    },
)
RETRY = Body(
    "Retry",
    {
        "dependents": Field(
            {"type": "boolean"},
            "Also put back the dependents its death killed (default false).",
        )
    },
)
SUCCESS = Body("Success", {"attempt": ATTEMPT})
EMPTY = Body("Empty")

_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "boolean": bool,
    "object": dict,
    "array": list,
}


async def read_body(request: Request, body: Body) -> dict[str, Any]:
    """The request's JSON object, its fields of the declared types, nulls dropped.

    A body over 64 KiB is refused before it is parsed (one that is not JSON, by its
    ``Content-Type``, never reaches here: see guard.py). An empty body is an empty object.
    """
    declared = request.headers.get("content-length", "")
    raw: bytes | bytearray
    if declared.isascii() and declared.isdigit():
        if int(declared) > MAX_BODY:
            raise BodyTooLarge(MAX_BODY)
        raw = await request.body()  # the server stops it at the length declared
    else:
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                raise BodyTooLarge(MAX_BODY)
    if not raw.strip():
        data: Any = {}
    else:
        try:
            # UTF-8 only (RFC 8259): json.loads would also read UTF-16 and UTF-32
            text = bytes(raw).decode("utf-8")
            data = json.loads(
                text, parse_int=_integer, parse_float=_fractional, parse_constant=_no_constant
            )
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput("body", f"not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidInput("body", "nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidInput("body", f"expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(body.fields))
    if unknown:
        raise InvalidInput("body", f"unknown fields {unknown}")
    out = {}
    for name, spec in body.fields.items():
        value = data.get(name)
        if value is None:
            if spec.required:
                raise InvalidInput(name, "is required")
            continue
        expected = spec.schema["type"]
        if expected == "integer" and type(value) is float and value.is_integer():
            value = int(value)  # 84.0 is the integer 84, as JSON Schema counts
        if not isinstance(value, _JSON_TYPES[expected]) or (
            expected == "integer" and isinstance(value, bool)
        ):
            raise InvalidInput(name, f"expected {expected}, got {_json_type(value)}")
        out[name] = _widened(name, value) if expected in ("object", "array") else value
    return out


def _widened(name: str, value: Any) -> Any:
    """Free-form JSON (a payload's args and kwargs) with its long integers made ints:
    any integer is a valid argument, up to the 4,300 digits Python reads."""
    if isinstance(value, LongNumber):
        if value.digits > _PYTHON_DIGITS:
            raise InvalidInput(name, f"a number of {value.digits} digits is too long")
        return int(value.text)
    if isinstance(value, list):
        return [_widened(name, item) for item in value]
    if isinstance(value, dict):
        return {key: _widened(name, item) for key, item in value.items()}
    return value


class LongNumber:
    """A JSON integer of more than MAX_DIGITS digits: no field takes one, and ``int()``
    would spend time on it (or raise past 4,300 digits). It fails the type of its field,
    or the packing of a payload, naming the field either way."""

    __slots__ = ("digits", "text")

    def __init__(self, text: str) -> None:
        self.digits, self.text = len(text.lstrip("-")), text


#: The longest integer ``int()`` reads by default (sys.get_int_max_str_digits()).
_PYTHON_DIGITS = 4300


def _integer(text: str) -> int | LongNumber:
    return int(text) if len(text) <= model.MAX_DIGITS else LongNumber(text)


_NUMBER = re.compile(
    r"-?(?P<whole>[0-9]+)(?:\.(?P<fraction>[0-9]+))?(?:[eE](?P<exponent>[+-]?[0-9]+))?"
)


class Fraction(float):
    """A JSON number with a fraction: no integer, also where a float rounds it to a
    whole one (``1.5e-400`` to 0.0, ``1.0000000000000001`` to 1.0)."""


def _fractional(text: str) -> float:
    """A JSON number with a fraction or an exponent, as a float, or a :class:`Fraction`
    when it is no whole number: decided on the text, not on the float, which rounds
    (and not by ``int()``, which fails on an exponent past 4,300 digits)."""
    number = _NUMBER.fullmatch(text)
    assert number is not None  # json.loads passes JSON numbers only
    significant = (number["whole"] + (number["fraction"] or "")).rstrip("0")
    exponent = number["exponent"] or "0"
    if not significant.strip("0"):
        whole = True  # zero
    elif len(exponent.lstrip("+-")) > model.MAX_DIGITS:  # past any float: inf or 0.0
        whole = not exponent.startswith("-")
    else:
        whole = len(significant) <= len(number["whole"]) + int(exponent)
    return float(text) if whole else Fraction(text)


def _no_constant(text: str) -> None:
    raise InvalidInput("body", f"not valid JSON: {text} is not a JSON number")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, LongNumber):
        return f"a number of {value.digits} digits"
    for name, kind in _JSON_TYPES.items():
        if isinstance(value, kind) and not (name == "integer" and isinstance(value, bool)):
            return name
    return "number" if isinstance(value, float) else type(value).__name__


# --- responses ---------------------------------------------------------------

ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "type": {"type": "string"},
        "at": TIME,
        "source": {"type": "string"},
        "traceback": {"type": "string", "description": "The worker's, at most 8 KiB."},
    },
    "required": ["message"],
}
TRACK: dict[str, Any] = {
    "type": "object",
    "properties": {
        "jid": {"type": "string"},
        "state": STATE,
        "percent": {"type": "integer", "minimum": 0, "maximum": 100},
        "desc": {"type": "string"},
        "reserve_until": TIME,
        "updated_at": TIME,
        "created_at": TIME,
        "queue": {"type": "string"},
        "attempts": {"type": "integer", "minimum": 0},
        "max_attempts": {"type": "integer", "minimum": 1},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "prerequisites": {
            "type": "object",
            "properties": {"total": {"type": "integer"}, "pending": {"type": "integer"}},
            "required": ["total", "pending"],
        },
        "parent": {"type": "string"},
        "batch": {
            "type": "object",
            "properties": {
                "total": {"type": "integer"},
                "pending": {"type": "integer"},
                "success": {"type": "integer"},
                "dead": {"type": "integer"},
                "sealed": {"type": "boolean"},
            },
            "required": ["total", "pending", "success", "dead", "sealed"],
        },
        "blocked_by": {"type": "string"},
        "eligible_at": TIME,
        "payload": {
            "type": "object",
            "description": 'As registered; `args` and `kwargs` are `"hidden"` with hide_args.',
            "properties": {
                "func": {"type": "string"},
                "args": {"anyOf": [{"type": "array"}, {"const": "hidden"}]},
                "kwargs": {"anyOf": [{"type": "object"}, {"const": "hidden"}]},
            },
            "required": ["func", "args", "kwargs"],
        },
        "error": ERROR,
        "errors": {"type": "array", "items": ERROR, "description": "Newest first, 10 kept."},
    },
    "required": ["jid", "state", "updated_at"],
}
PROBLEM: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "state": {"type": "string", "description": "The job's state (404 and 409)."},
        "field": {"type": "string", "description": "The input that was refused (400)."},
        "attempt": {
            "type": "integer",
            "description": "The job's current attempt (409 to a write from another attempt).",
        },
    },
    "required": ["type", "title", "status", "detail"],
}
PAGE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Track"}},
        "next": {"type": ["string", "null"], "description": "The cursor of the next page."},
    },
    "required": ["jobs", "next"],
}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
STATS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "states": _COUNTS,
        "queues": {"type": "object", "additionalProperties": _COUNTS},
    },
    "required": ["states", "queues"],
}
RELATED_JOB = {
    "type": "object",
    "properties": {"jid": {"type": "string"}, "state": STATE},
    "required": ["jid", "state"],
}
RELATED: dict[str, Any] = {
    "type": "object",
    "properties": {
        name: {"type": "array", "items": RELATED_JOB}
        for name in ("prerequisites", "dependents", "children")
    },
    "required": ["prerequisites", "dependents", "children"],
}
WORKFLOW: dict[str, Any] = {
    "type": "object",
    "properties": {
        "jobs": {"type": "array", "items": RELATED_JOB},
        "edges": {
            "type": "array",
            "description": "Each dependency as [prerequisite, dependent].",
            "items": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
        },
        "more": {"type": "boolean", "description": "The walk stopped before it saw them all."},
    },
    "required": ["jobs", "edges", "more"],
}
WORKER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "pid": {"type": "integer"},
        "host": {"type": "string"},
        "queues": {"type": "array", "items": {"type": "string"}},
        "state": {"type": "string", "enum": ["idle", "busy", "lost"]},
        "job": {"type": ["string", "null"]},
        "started_at": TIME,
        "heartbeat_at": TIME,
        "done": {"type": "integer", "minimum": 0},
        "failed": {"type": "integer", "minimum": 0},
    },
    "required": [
        "name", "pid", "host", "queues", "state", "job", "started_at", "heartbeat_at", "done",
        "failed",
    ],
}  # fmt: skip
WORKERS: dict[str, Any] = {
    "type": "object",
    "properties": {"workers": {"type": "array", "items": WORKER}},
    "required": ["workers"],
}
HEALTH: dict[str, Any] = {
    "type": "object",
    "properties": {"status": {"type": "string"}, "detail": {"type": "string"}},
    "required": ["status"],
}
COMPONENTS = {
    "Track": TRACK,
    "Problem": PROBLEM,
    "Page": PAGE,
    "Stats": STATS,
    "Related": RELATED,
    "Health": HEALTH,
    "Workers": WORKERS,
    "Workflow": WORKFLOW,
    **{
        body.name: body.schema()
        for body in (REGISTER, TRACK_SET, START, SUCCESS, FAIL, EMPTY, RETRY)
    },
}
