"""What the stateful models share: a refusal the model expects, and the check of one call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from hypothesis import event

from tracker import Conflict, TrackerError

T = TypeVar("T")


@dataclass(frozen=True)
class Refusal:
    error: type[TrackerError]
    state: str | None = None


def perform(call: Callable[[], T], refusal: Refusal | None) -> T | None:
    """Run ``call``; it must be refused exactly as ``refusal`` says, or not at all."""
    try:
        result = call()
    except TrackerError as exc:
        assert refusal is not None, f"the model accepts this call, the tracker said {exc!r}"
        assert type(exc) is refusal.error, f"expected {refusal}, got {exc!r}"
        if refusal.state is not None:
            assert isinstance(exc, Conflict)
            assert exc.state == refusal.state, f"expected {refusal}, got {exc!r}"
        event(f"refused: {type(exc).__name__}")
        return None
    assert refusal is None, f"expected {refusal}, the call was accepted"
    return result
