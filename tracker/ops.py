"""Ops: every plan of one namespace (writes.py and reads.py), for the clients to drive."""

from __future__ import annotations

from .plans import Call, Event, Page, Plan, Read, Registered, Related, Stats
from .reads import ReadPlans
from .writes import WritePlans

__all__ = ["Call", "Event", "Ops", "Page", "Plan", "Read", "Registered", "Related", "Stats"]


class Ops(WritePlans, ReadPlans):
    """Builds the plans of one namespace with one set of settings."""
