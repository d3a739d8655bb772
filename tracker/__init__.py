"""tracker: a Redis-backed job tracker.

Workers report progress and lifecycle (TRACK SET, start, success, fail); clients
read tracks (TRACK GET), list jobs and count them. State lives in expiring Redis
hashes and every change is one Lua script.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .client import AsyncTracker, Tracker
from .context import aprogress, progress
from .errors import (
    Conflict,
    InvalidInput,
    JobCancelled,
    JobSuperseded,
    NotFound,
    SettingsError,
    StoreUnavailable,
    TrackerError,
)
from .model import State, Track, TrackUpdate
from .records import Page, Registered, Stats
from .settings import Settings

try:
    __version__ = version("tracker")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "AsyncTracker",
    "Conflict",
    "InvalidInput",
    "JobCancelled",
    "JobSuperseded",
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
