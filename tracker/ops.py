"""Ops: every plan of one namespace (writes.py and reads.py), for the clients to drive."""

from __future__ import annotations

from .plans import Call, Page, Plan, Read, Registered, Stats
from .reads import ReadPlans
from .writes import WritePlans

__all__ = ["Call", "Ops", "Page", "Plan", "Read", "Registered", "Stats"]


class Ops(WritePlans, ReadPlans):
    """Builds the plans of one namespace with one set of settings."""
