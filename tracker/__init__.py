"""tracker: a Redis-backed job tracker.

Workers report progress and lifecycle (TRACK SET, start, success, fail); clients
read tracks (TRACK GET), list jobs and count them. State lives in expiring Redis
hashes and every change is one Lua script.
"""

from __future__ import annotations

from .context import aprogress, progress
from .errors import (
    Conflict,
    InvalidInput,
    JobCancelled,
    NotFound,
    SettingsError,
    StoreUnavailable,
    TrackerError,
)
from .model import State, Track, TrackUpdate
from .ops import Page, Registered, Stats
from .settings import Settings
from .store import Tracker

__all__ = [
    "Conflict",
    "InvalidInput",
    "JobCancelled",
    "NotFound",
    "Page",
    "Registered",
    "Settings",
    "SettingsError",
    "State",
    "Stats",
    "StoreUnavailable",
    "Track",
    "TrackUpdate",
    "Tracker",
    "TrackerError",
    "aprogress",
    "progress",
]
