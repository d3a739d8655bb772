"""The HTTP API, its event streams, metrics and the dashboard (``create_app``)."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
