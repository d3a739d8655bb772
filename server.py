"""The ASGI app, for ``uvicorn server:app`` (``tracker serve`` runs the same app)."""

from __future__ import annotations

from tracker.settings import Settings
from tracker.web import create_app

app = create_app(Settings.from_env())
