"""Time at tracker's edges: epoch milliseconds inside, RFC 3339 (UTC, ``Z``) outside.

Every timestamp a script writes comes from the Redis server's clock, in ms; these
two functions turn one into the other for clients.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from .errors import InvalidInput


def format_time(ms: int) -> str:
    """RFC 3339 in UTC with ``Z``; milliseconds only when there are some."""
    second, milli = divmod(ms, 1000)
    if milli:
        return f"{_format_second(second)}.{milli:03d}Z"
    return _format_second(second) + "Z"


@lru_cache(maxsize=4096)
def _format_second(second: int) -> str:
    # tracks of one moment share their seconds: strftime once per second, not per field
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def parse_time(name: str, value: object) -> int:
    """An RFC 3339 timestamp with a zone (or an aware datetime) as epoch milliseconds."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInput(name, "a datetime needs a time zone")
        moment = value
    elif isinstance(value, str):
        if not _RFC3339.fullmatch(value):
            raise InvalidInput(
                name, f"expected an RFC 3339 timestamp with a zone, got {value[:64]!r}"
            )
        text = value.upper().replace(" ", "T").replace("Z", "+00:00")
        fraction = re.search(r"\.(\d+)", text)
        if fraction and len(fraction.group(1)) > 6:  # fromisoformat takes at most microseconds
            text = text.replace(fraction.group(0), fraction.group(0)[:7])
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(name, f"not a valid date or time: {value!r}") from None
    else:
        raise InvalidInput(name, f"expected an RFC 3339 string, got {type(value).__name__}")
    ms = (moment - _EPOCH) // timedelta(milliseconds=1)
    if not 0 <= ms < 253402300800000:
        raise InvalidInput(name, "must lie between 1970 and 9999")
    return ms
