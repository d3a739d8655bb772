"""The HTTP API of SPEC section 6, its event streams, metrics and the dashboard.

Each endpoint reads its input, makes one call on :class:`~tracker.client.AsyncTracker`
and renders the result; errors are raised and rendered by the handlers of
problems.py. The table :data:`ENDPOINTS` is both the routing and the source of
``/openapi.json`` (see openapi.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..client import AsyncTracker, connect_async
from ..embedded import EmbeddedValkey, Keeper
from ..errors import InvalidInput, NotFound
from ..graph import MAX_WORKFLOW_JOBS, WORKFLOW_JOBS
from ..model import (
    MAX_LIST_LIMIT,
    State,
    Track,
    check_name,
    check_state,
    parse_int,
    parse_label,
)
from ..settings import Settings
from ..upkeep import AsyncMaintenance
from . import schema
from .auth import TokenAuth
from .guard import RequestGuard
from .metrics import CONTENT_TYPE, Metrics
from .openapi import Endpoint, document
from .problems import HANDLERS, EncodedSlashGuard
from .schema import read_body
from .sse import KEEPALIVE, EventHub, EventStreamResponse, parse_id

STATIC = resources.files("tracker") / "web" / "static"
_LIST_PARAMS = frozenset({"state", "queue", "label", "parent", "limit", "cursor", "token"})
_EVENT_PARAMS = frozenset({"state", "queue", "label", "token"})
_TOKEN_ONLY = frozenset({"token"})
_LIMIT_ONLY = frozenset({"limit", "token"})


def _tracker(request: Request) -> AsyncTracker:
    return request.app.state.tracker  # type: ignore[no-any-return]


def _track(track: Track, status: int = 200) -> JSONResponse:
    return JSONResponse(track.to_dict(), status_code=status)


def _jid(request: Request) -> str:
    return check_name("jid", request.path_params["jid"])


# --- jobs --------------------------------------------------------------------


async def register(request: Request) -> Response:
    body = await read_body(request, schema.REGISTER)
    registered = await _tracker(request).register(_jid(request), **body)
    return _track(registered.track, 201 if registered.created else 200)


async def track_get(request: Request) -> Response:
    _query(request, _TOKEN_ONLY)
    track = await _tracker(request).track_get(_jid(request))
    if track.state is State.UNKNOWN:
        raise NotFound(track.jid)
    return _track(track)


async def track_set(request: Request) -> Response:
    jid = _jid(request)
    body = await read_body(request, schema.TRACK_SET)
    if body.pop("jid", jid) != jid:
        raise InvalidInput("jid", "the jid in the body is not the jid of the path")
    return _track(await _tracker(request).track_set_returning(jid, **body))


async def start(request: Request) -> Response:
    body = await read_body(request, schema.START)
    return _track(await _tracker(request).start(_jid(request), **body))


async def success(request: Request) -> Response:
    body = await read_body(request, schema.SUCCESS)
    return _track(await _tracker(request).success(_jid(request), **body))


async def fail(request: Request) -> Response:
    body = await read_body(request, schema.FAIL)
    tracker = _tracker(request)
    track = await tracker.fail(
        _jid(request),
        body["error"],
        retry=body.get("retry", True),
        error_type=body.get("type"),
        attempt=body.get("attempt"),
        traceback=body.get("traceback"),
    )
    return _track(track)


async def retry(request: Request) -> Response:
    body = await read_body(request, schema.RETRY)
    track = await _tracker(request).retry(_jid(request), dependents=body.get("dependents", False))
    return _track(track)


async def delete(request: Request) -> Response:
    await read_body(request, schema.EMPTY)
    await _tracker(request).delete(_jid(request))
    return Response(status_code=204)


def _transition(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        await read_body(request, schema.EMPTY)
        method = getattr(_tracker(request), name)
        return _track(await method(_jid(request)))

    endpoint.__name__ = name
    return endpoint


def _query(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    params = request.query_params
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidInput("query", f"unknown parameters {unknown}")
    for name in params:
        if len(params.getlist(name)) > 1:
            raise InvalidInput(name, "given more than once")
    return {name: value for name, value in params.items() if name != "token"}


async def list_jobs(request: Request) -> Response:
    query: dict[str, Any] = _query(request, _LIST_PARAMS)
    if "limit" in query:
        query["limit"] = parse_int("limit", query["limit"], 1, MAX_LIST_LIMIT)
    page = await _tracker(request).list(**query)
    return JSONResponse({"jobs": [t.to_dict() for t in page.jobs], "next": page.next})


async def related(request: Request) -> Response:
    _query(request, _TOKEN_ONLY)
    found = await _tracker(request).related(_jid(request))
    return JSONResponse(
        {
            name: [{"jid": j, "state": s.value} for j, s in getattr(found, name)]
            for name in ("prerequisites", "dependents", "children")
        }
    )


async def workflow(request: Request) -> Response:
    params = _query(request, _LIMIT_ONLY)
    limit = WORKFLOW_JOBS
    if "limit" in params:
        limit = parse_int("limit", params["limit"], 1, MAX_WORKFLOW_JOBS)
    found = await _tracker(request).workflow(_jid(request), limit)
    return JSONResponse(
        {
            "jobs": [{"jid": j, "state": s.value} for j, s in found.jobs],
            "edges": [list(edge) for edge in found.edges],
            "more": found.more,
        }
    )


async def stats(request: Request) -> Response:
    _query(request, _TOKEN_ONLY)
    counts = await _tracker(request).stats()
    return JSONResponse({"states": counts.states, "queues": counts.queues})


async def workers(request: Request) -> Response:
    _query(request, _TOKEN_ONLY)
    found = await _tracker(request).workers()
    return JSONResponse({"workers": [worker.to_dict() for worker in found]})


# --- events ------------------------------------------------------------------


def _last_event_id(request: Request) -> str | None:
    value = request.headers.get("last-event-id", "").strip()
    if not value:
        return None
    parse_id(value)  # refused here, before the stream starts
    return value


def _ahead(last: str, newest: str) -> bool:
    """Whether ``last`` is ahead of the newest event: the store's event stream began
    again since the client read it (it was emptied, or a new store took its place), so
    all the stream holds is news to the client. Left as it is, it would hold back every
    event until the stream caught up with it."""
    return parse_id(last) > parse_id(newest)


def _terminal(track: dict[str, Any]) -> bool:
    return State(track["state"]).terminal


async def job_events(request: Request) -> Response:
    _query(request, _TOKEN_ONLY)
    jid = _jid(request)
    hub: EventHub = request.app.state.hub
    last = _last_event_id(request)
    newest, track = await _tracker(request).snapshot(jid)
    if track.state is State.UNKNOWN:
        raise NotFound(jid)
    if last is not None and _ahead(last, newest):
        last = None  # the track now is whole: it is all the client missed
    stream = hub.stream(
        jid=jid,
        last_event_id=last,
        first=(newest, track) if last is None else None,
        ends=_terminal,
        # a client reconnecting to a finished job gets what it missed, then the end
        finished=last is not None and track.state.terminal,
    )
    return EventStreamResponse(stream)


async def all_events(request: Request) -> Response:
    query = _query(request, _EVENT_PARAMS)
    queue = query.get("queue")
    if queue is not None:
        check_name("queue", queue)
    state = query.get("state")
    if state is not None:
        check_state(state)
    label = parse_label(query["label"]) if "label" in query else None

    def accepts(track: dict[str, Any]) -> bool:
        return (
            (queue is None or track.get("queue") == queue)
            and (state is None or track["state"] == state)
            and (label is None or track.get("labels", {}).get(label[0]) == label[1])
        )

    hub: EventHub = request.app.state.hub
    last = _last_event_id(request)
    if last is not None and _ahead(last, await _tracker(request).newest_event()):
        last = "0-0"  # all the stream holds, from its start
    stream = hub.stream(accepts, last_event_id=last)
    return EventStreamResponse(stream)


# --- operations ----------------------------------------------------------------


async def livez(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    await _tracker(request).ready()
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    body = await request.app.state.metrics.render(_tracker(request))
    return Response(body, media_type=CONTENT_TYPE)


async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


async def dashboard(request: Request) -> Response:
    return FileResponse(str(STATIC / "index.html"), media_type="text/html")


# --- the table ---------------------------------------------------------------


_WRITE = (400, 401, 413, 503)
_JOB_WRITE = (*_WRITE, 404, 409)
_READ = (400, 401, 503)
_LIMIT = {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT, "default": 50}
_WORKFLOW_LIMIT = {
    "type": "integer", "minimum": 1, "maximum": MAX_WORKFLOW_JOBS, "default": WORKFLOW_JOBS,
}  # fmt: skip
_STATE_QUERY = ("state", schema.STORED_STATE, "Only jobs in this state.")
_QUEUE_QUERY = ("queue", schema.NAME, "Only jobs of this queue.")
_LABEL_QUERY = (
    "label",
    schema.LABEL_FILTER,
    "Only jobs with this label, as `KEY=VALUE` (the first `=` splits: a value may hold "
    "one, a key may not). `KEY:VALUE` is read too when there is no `=`.",
)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("PUT", "/jobs/{jid}", register, "Register a job", schema.REGISTER, ok=(201, 200),
             errors=(*_WRITE, 409)),
    Endpoint("GET", "/jobs/{jid}", track_get, "TRACK GET", errors=(*_READ, 404)),
    Endpoint("POST", "/jobs/{jid}/track", track_set, "TRACK SET", schema.TRACK_SET,
             errors=_JOB_WRITE),
    Endpoint("POST", "/jobs/{jid}/start", start, "A worker starts the job", schema.START,
             errors=_JOB_WRITE),
    Endpoint("POST", "/jobs/{jid}/success", success, "The job succeeded", schema.SUCCESS,
             errors=_JOB_WRITE),
    Endpoint("POST", "/jobs/{jid}/fail", fail, "An attempt failed", schema.FAIL,
             errors=_JOB_WRITE),
    Endpoint("POST", "/jobs/{jid}/cancel", _transition("cancel"), "Cancel the job",
             schema.EMPTY, errors=_JOB_WRITE),
    Endpoint("POST", "/jobs/{jid}/pause", _transition("pause"), "Hold the job back",
             schema.EMPTY, errors=_JOB_WRITE),
    Endpoint("POST", "/jobs/{jid}/resume", _transition("resume"), "Let a paused job go on",
             schema.EMPTY, errors=_JOB_WRITE),
    Endpoint("POST", "/jobs/{jid}/seal", _transition("seal"), "A batch takes no more children",
             schema.EMPTY, errors=_JOB_WRITE),
    Endpoint("GET", "/jobs", list_jobs, "List jobs, newest updated_at first",
             query=(_STATE_QUERY, _QUEUE_QUERY,
                    _LABEL_QUERY,
                    ("parent", schema.NAME, "Only children of this batch."),
                    ("limit", _LIMIT, "At most this many jobs."),
                    ("cursor", schema.CURSOR,
                     "The `next` of the previous page; empty: the first page.")),
             result="Page", errors=_READ),
    Endpoint("GET", "/jobs/{jid}/related", related,
             "The job's prerequisites, dependents and children, with their states",
             result="Related", errors=(*_READ, 404)),
    Endpoint("GET", "/jobs/{jid}/workflow", workflow,
             "Every job linked to this one by dependencies, at any distance",
             query=(("limit", _WORKFLOW_LIMIT, "Jobs shown at most."),), result="Workflow",
             errors=(*_READ, 404)),
    Endpoint("GET", "/jobs/{jid}/events", job_events,
             "Server-Sent Events of one job: its track now, then one per change, "
             "closing after a terminal state", result="text/event-stream",
             errors=(*_READ, 404)),
    Endpoint("GET", "/events", all_events, "Server-Sent Events of every change",
             query=(_STATE_QUERY, _QUEUE_QUERY, _LABEL_QUERY), result="text/event-stream",
             errors=_READ),
    Endpoint("GET", "/stats", stats, "Counts by state, overall and per queue", result="Stats",
             errors=_READ),
    Endpoint("GET", "/workers", workers, "The workers that beat lately", result="Workers",
             errors=_READ),
    Endpoint("GET", "/livez", livez, "The process is up (touches no Redis)", result="Health"),
    Endpoint("GET", "/heartbeat", livez, "The same as /livez", result="Health", name="heartbeat"),
    Endpoint("GET", "/readyz", readyz, "Redis answers and holds the scripts", result="Health",
             errors=(503,)),
    Endpoint("GET", "/metrics", metrics, "Prometheus metrics",
             result="text/plain", errors=(401, 403, 503)),
    Endpoint("GET", "/openapi.json", openapi, "This document", result="application/json",
             errors=(401, 403)),
    Endpoint("GET", "/", dashboard, "The dashboard", result="text/html", errors=(401, 403)),
    Endpoint("POST", "/jobs/{jid}/retry", retry,
             "Put a dead, failed or cancelled job with a payload back to its queue",
             schema.RETRY, errors=_JOB_WRITE),
    Endpoint("DELETE", "/jobs/{jid}", delete, "Forget a finished job", schema.EMPTY, ok=(204,),
             result="", errors=_JOB_WRITE),
)  # fmt: skip


# --- the app -----------------------------------------------------------------


def _route(endpoints: list[Endpoint]) -> Route:
    """One route for every method of a path: a method it lacks is then a 405 naming all
    it has (one route per method would name its own only), as OPTIONS does."""
    handlers = {e.method: e.handler for e in endpoints}
    if "GET" in handlers:
        handlers["HEAD"] = handlers["GET"]
    allow = ", ".join(sorted({*handlers, "OPTIONS"}))

    async def dispatch(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": allow})
        return await handlers[request.method](request)

    path = endpoints[0].path
    return Route(path, dispatch, methods=[*handlers, "OPTIONS"], name=path)


def create_app(
    settings: Settings,
    *,
    url: str | None = None,
    maintenance: bool = True,
    keepalive: float = KEEPALIVE,
) -> Starlette:
    """The API on ``url``, else ``settings.redis_url``, else this directory's embedded
    Valkey (started if it is not running; it outlives the app).

    With ``maintenance`` the app also runs the reaper, the delay schedule and the
    index pruner (see upkeep.py) while it serves, on its own event loop.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        target, keeper = url or settings.redis_url, None
        if target is None:
            store = EmbeddedValkey()
            target = await asyncio.to_thread(store.start)
            keeper = Keeper(store)  # a killed store comes back on its data
            keeper.start()
        tracker = AsyncTracker(connect_async(target, settings.redis_cluster), settings)
        upkeep = AsyncMaintenance(tracker) if maintenance else None
        app.state.tracker = tracker
        app.state.metrics = Metrics()
        # the hub blocks on XREAD: on the same connection pool, but never in a pipeline
        reader = AsyncTracker(tracker.client, settings, pipelining=False)
        app.state.hub = EventHub(reader, app.state.metrics, keepalive)
        await app.state.hub.start()
        if upkeep is not None:
            upkeep.start()
        try:
            yield
        finally:
            await app.state.hub.stop()
            if upkeep is not None:
                await upkeep.stop()
            with contextlib.suppress(TimeoutError):  # a shutdown must end
                async with asyncio.timeout(5):
                    await tracker.close()
            if keeper is not None:
                await asyncio.to_thread(keeper.stop)

    paths = dict.fromkeys(e.path for e in ENDPOINTS)
    routes: list[BaseRoute] = [_route([e for e in ENDPOINTS if e.path == p]) for p in paths]
    routes.append(Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"))
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(
                RequestGuard,
                allowed_hosts=settings.allowed_hosts,
                serves_anyone=bool(settings.api_token) or settings.insecure,
                read_timeout=settings.http_read_timeout,
            ),
            Middleware(TokenAuth, settings.api_token, settings.read_token),
            Middleware(EncodedSlashGuard),
        ],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    app.state.openapi = document(ENDPOINTS)
    return app
