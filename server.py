"""The ASGI app, for ``uvicorn server:app`` (``tracker serve`` runs the same app).

``uvicorn server:app --http server:http`` also runs the protocol ``tracker serve``
does: a deadline on a request's headers (uvicorn has none of its own), refusals of
malformed requests in problem+json, and event streams ended at once on shutdown.
"""

from __future__ import annotations

from tracker.settings import Settings
from tracker.web import create_app
from tracker.web.protocol import protocol

settings = Settings.from_env()
app = create_app(settings)
http = protocol(settings.http_read_timeout)
