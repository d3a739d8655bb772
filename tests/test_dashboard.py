"""The dashboard in headless Chromium: it loads cleanly, follows the event stream in
place, its state chips filter the table, and a row opens the job's detail and graph.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
it reads commands on fd 3 and writes replies and events on fd 4, one JSON message
each, ended by a NUL byte), so the suite needs no websocket client and no
chromedriver. The app runs under uvicorn in a thread, on the suite's Valkey in a
namespace of its own. The screenshot is kept as tests/artifacts/dashboard.png.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
import uvicorn
from conftest import FakeClock, cleanup, wait_until

from tracker import Settings, Tracker
from tracker.web import create_app

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--window-size=1440,900",
    "--remote-debugging-pipe",
)
REPLY_TIMEOUT = 15.0
UPDATE_TIMEOUT = 10.0

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)"
)


# --- the DevTools protocol on a pipe -------------------------------------------------


class ProtocolError(Exception):
    pass


def _above_stdio(fd: int) -> int:
    """``fd`` moved to 10 or above, so the child's redirections to 3 and 4 cannot clash."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class Browser:
    """Headless Chromium: commands, their replies, and the events it sends meanwhile."""

    def __init__(self, profile: Path) -> None:
        assert CHROMIUM is not None
        commands_in, self._commands = os.pipe()
        self._replies, replies_out = os.pipe()
        commands_in, replies_out = _above_stdio(commands_in), _above_stdio(replies_out)
        # bash puts the pipe ends on fds 3 and 4, where Chromium looks for them
        # (dash, Debian's sh, takes only one-digit fds)
        moves = f"3<&{commands_in} 4>&{replies_out} {commands_in}<&- {replies_out}>&-"
        command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"]
        with (profile / "chromium.log").open("wb") as log:
            self.process = subprocess.Popen(
                ["bash", "-c", f'exec "$0" "$@" {moves}', *command],
                pass_fds=(commands_in, replies_out),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        os.close(commands_in)
        os.close(replies_out)
        self._last_id = 0
        self._partial = b""
        self._inbox: deque[dict[str, Any]] = deque()
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Run one command and return its result."""
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._commands, data) :]
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            while not self._inbox:
                self._receive(deadline)
            reply = self._inbox.popleft()
            if "method" in reply:
                self.events.append(reply)
            elif reply.get("id") == self._last_id:
                if "error" in reply:
                    raise ProtocolError(f"{method}: {reply['error']}")
                return reply.get("result", {})  # type: ignore[no-any-return]

    def _receive(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([self._replies], [], [], left)[0]:
            raise ProtocolError(f"no reply from Chromium within {REPLY_TIMEOUT} s")
        chunk = os.read(self._replies, 1 << 20)
        if not chunk:
            raise ProtocolError(f"Chromium exited with {self.process.wait()}")
        *messages, self._partial = (self._partial + chunk).split(b"\0")
        self._inbox.extend(json.loads(m) for m in messages)

    def close(self) -> None:
        with contextlib.suppress(ProtocolError, OSError):
            self.send("Browser.close")
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


class Page:
    """One tab, on a protocol session of its own."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        attached = browser.send("Target.attachToTarget", targetId=self.target, flatten=True)
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        return self.browser.send(method, self.session, **params)

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` (a DOM node comes back as ``{}``)."""
        reply = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in reply:
            raise ProtocolError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def wait_for(self, expression: str, timeout: float = UPDATE_TIMEOUT) -> Any:
        """The value of ``expression`` once it is truthy in the page. While the tab moves
        to another page (a redirect, a form sent) there is no page to ask: not yet."""
        last: list[ProtocolError] = []

        def value() -> Any:
            try:
                return self.evaluate(expression)
            except ProtocolError as exc:
                last[:] = [exc]
                return None

        try:
            return wait_until(value, timeout=timeout, interval=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the page last said: {last}") from None

    def attribute(self, selector: str, name: str) -> Any:
        return self.evaluate(f"{_query(selector)}?.getAttribute({json.dumps(name)})")

    def text(self, selector: str) -> Any:
        return self.evaluate(f"{_query(selector)}?.textContent")

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element."""
        x, y = self.evaluate(
            f"(() => {{ const e = {_query(selector)}; e.scrollIntoView({{block: 'center'}});"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];"
            " })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot")["data"]))

    def errors(self) -> list[str]:
        """What the page reported as an error: console.error, an uncaught exception, a
        failed load."""
        self.evaluate("0")  # so every event sent before now has been read
        found = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            method, params = event["method"], event["params"]
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(details.get("exception", {}).get("description") or details["text"])
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(" ".join(str(arg.get("value", arg)) for arg in params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"{params['entry']['text']} ({params['entry'].get('url', '')})")
        return found

    def close(self) -> None:
        self.browser.send("Target.closeTarget", targetId=self.target)


def _query(selector: str) -> str:
    return f"document.querySelector({json.dumps(selector)})"


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    chromium = Browser(tmp_path_factory.mktemp("chromium"))
    yield chromium
    chromium.close()


@pytest.fixture
def tracker(valkey_url: str) -> Iterator[Tracker]:
    """A tracker in a namespace of this test's own, deleted after it."""
    settings = Settings(namespace="t-" + uuid.uuid4().hex[:12])
    with Tracker.from_url(valkey_url, settings) as made:
        yield made
    client = redis.Redis.from_url(valkey_url)
    cleanup(client, settings.namespace)
    client.close()


@contextlib.contextmanager
def _served(app: Any) -> Iterator[str]:
    """``app`` listening on a loopback port; the page's URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive())
    assert server.started, "the app did not start"
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    server.should_exit = True
    thread.join(10)
    listener.close()


@pytest.fixture
def dashboard(tracker: Tracker, valkey_url: str) -> Iterator[str]:
    """The app on ``tracker``'s namespace; the page's URL."""
    with _served(create_app(tracker.settings, url=valkey_url, maintenance=False)) as url:
        yield url


@pytest.fixture
def page(browser: Browser, dashboard: str) -> Iterator[Page]:
    """The dashboard in a new tab, its event stream open and its first list in. The tab
    closes before the server stops, which would otherwise wait for its stream."""
    tab = Page(browser)
    tab.open(dashboard)
    tab.wait_for(
        "document.querySelector('#connection').dataset.status === 'live'"
        " && !document.body.classList.contains('loading')"
    )
    yield tab
    tab.close()


@pytest.fixture
def jobs(tracker: Tracker) -> Tracker:
    """One job working at 10 %, one enqueued, and one waiting for the first."""
    tracker.register("report-1", queue="reports", labels={"customer": "acme"})
    tracker.start("report-1")
    tracker.track_set("report-1", percent=10, desc="rendering page 10 of 100")
    tracker.register("import-2", queue="imports")
    tracker.register("mail-3", prerequisites=["report-1"])
    return tracker


def row(jid: str) -> str:
    return f"#jobs tr[data-jid={json.dumps(jid)}]"


SHOWN = "[...document.querySelectorAll('#jobs tr[data-jid]')].map(tr => tr.dataset.jid).join()"


# --- the behaviours --------------------------------------------------------------------


def test_the_page_loads_with_no_console_error(jobs: Tracker, page: Page) -> None:
    assert sorted(page.wait_for(SHOWN).split(",")) == ["import-2", "mail-3", "report-1"]
    assert page.errors() == []


def test_a_progress_bar_moves_in_place_when_the_worker_reports(jobs: Tracker, page: Page) -> None:
    bar = row("report-1") + " [role=progressbar]"
    assert page.wait_for(f"{_query(bar)}?.getAttribute('aria-valuenow')") == "10"
    page.evaluate(f"{_query(row('report-1'))}.dataset.before = 'yes'")

    jobs.track_set("report-1", percent=63, desc="rendering page 63 of 100")

    page.wait_for(f"{_query(bar)}.getAttribute('aria-valuenow') === '63'")
    assert page.text(row("report-1") + " .c-desc") == "rendering page 63 of 100"
    # the same element: updated from the event, not rebuilt by fetching the list again
    assert page.attribute(row("report-1"), "data-before") == "yes"
    assert page.errors() == []


def test_a_report_later_in_the_same_second_still_moves_the_bar(
    tracker: Tracker, page: Page, valkey_url: str
) -> None:
    # a whole second renders without milliseconds ("...:40Z"), which sorts after
    # "...:40.250Z" as text: the page must compare times, not strings
    clock = FakeClock(1_900_000_000.0)
    with Tracker(redis.Redis.from_url(valkey_url), tracker.settings, clock=clock) as timed:
        timed.register("report-1")
        timed.start("report-1")
        timed.track_set("report-1", percent=10)
        bar = row("report-1") + " [role=progressbar]"
        assert page.wait_for(f"{_query(bar)}?.getAttribute('aria-valuenow')") == "10"
        clock.advance(0.25)

        timed.track_set("report-1", percent=20)

        page.wait_for(f"{_query(bar)}.getAttribute('aria-valuenow') === '20'")


def test_clicking_a_state_chip_filters_the_table(jobs: Tracker, page: Page) -> None:
    page.wait_for(f"{SHOWN}.split(',').length === 3")
    assert page.text(".chip[data-state=working] .count") == "1"

    page.click(".chip[data-state=working]")

    page.wait_for(f"{SHOWN} === 'report-1'")
    assert page.attribute(".chip[data-state=working]", "aria-pressed") == "true"
    assert page.evaluate("location.hash") == "#state=working"
    assert page.errors() == []


def test_a_row_opens_the_job_detail_with_its_errors_and_graph(jobs: Tracker, page: Page) -> None:
    jobs.fail("report-1", "the printer is on fire")
    jobs.start("report-1")
    jobs.track_set("report-1", percent=42, desc="rendering page 42 of 100")
    page.wait_for(f"{_query(row('report-1'))}.dataset.state === 'working'")

    page.click(row("report-1"))

    dependent = "#detail svg.graph .node.s-waiting title"
    assert page.wait_for(f"{_query(dependent)}?.textContent") == "mail-3 (waiting)"
    detail = page.evaluate("document.querySelector('#detail').innerText")
    assert "the printer is on fire" in detail
    assert "customer=acme" in detail
    assert "2/25" in detail  # attempts
    page.screenshot(ARTIFACTS / "dashboard.png")
    assert page.errors() == []


# --- triage ------------------------------------------------------------------------------


def test_failed_and_dead_rows_show_the_error_and_the_attempt(tracker: Tracker, page: Page) -> None:
    tracker.register("flaky-1")
    tracker.start("flaky-1")
    tracker.fail("flaky-1", "the disk is full", error_type="OSError")
    tracker.register("done-2")
    tracker.success("done-2")

    desc = row("flaky-1") + " .c-desc"
    page.wait_for(f"{_query(desc)}?.textContent.includes('OSError: the disk is full')")
    assert "attempt 1/25" in page.text(desc)
    # a success that never reported a percent is drawn complete
    bar = row("done-2") + " [role=progressbar]"
    assert page.wait_for(f"{_query(bar)}?.getAttribute('aria-valuenow')") == "100"
    assert page.errors() == []


@pytest.mark.rq
def test_the_retry_button_brings_a_dead_job_back(tracker: Tracker, page: Page) -> None:
    queue = "q-" + uuid.uuid4().hex[:12]
    try:
        tracker.register(
            "resize-1",
            queue=queue,
            payload={"func": "app.tasks.resize", "args": [42, "x" * 400], "kwargs": {}},
        )
        tracker.start("resize-1")
        tracker.client.delete(f"rq:queue:{queue}")  # as the worker that took it did
        tracker.fail(
            "resize-1",
            "cannot open image",
            error_type="OSError",
            retry=False,
            traceback='Traceback (most recent call last):\n  File "app/tasks.py", line 9\n'
            "OSError: cannot open image",
        )
        page.wait_for(f"{_query(row('resize-1'))}?.dataset.state === 'dead'")
        page.click(row("resize-1"))
        retry = "#detail [data-action=retry]"
        page.wait_for(f"{_query(retry)} !== null")
        detail = page.evaluate("document.querySelector('#detail').innerText")
        assert "app.tasks.resize" in detail and "…" in detail  # the arguments, cut short
        assert page.text("#detail details.traceback pre").endswith("OSError: cannot open image")
        assert page.evaluate(f"{_query('#detail [data-action=pause]')} === null")
        page.click("#detail details.traceback summary")
        page.screenshot(ARTIFACTS / "dashboard-dead-job.png")

        page.click(retry)

        page.wait_for(f"{_query(row('resize-1'))}.dataset.state === 'enqueued'")
        assert tracker.track_get("resize-1").state.value == "enqueued"
        assert tracker.client.lrange(f"rq:queue:{queue}", 0, -1) == [b"resize-1"]
        page.wait_for(
            f"{_query(retry)} === null && {_query('#detail [data-action=cancel]')} !== null"
        )
        assert page.evaluate(f"{_query('#detail details.traceback')}.open")  # drawn again: open
        assert page.errors() == []
    finally:
        tracker.client.delete(f"rq:queue:{queue}", "rq:job:resize-1")
        tracker.client.srem("rq:queues", f"rq:queue:{queue}")


@pytest.mark.rq
def test_the_workers_list_shows_a_live_worker_and_its_job(
    tracker: Tracker, valkey_url: str, page: Page
) -> None:
    import jobs as job_functions  # tests/jobs.py, importable by the worker too

    queue = "q-" + uuid.uuid4().hex[:12]
    jid = tracker.enqueue(job_functions.sleep_then_succeed, (6,), queue=queue)
    env = {
        **os.environ,
        "TRACKER_REDIS_URL": valkey_url,
        "TRACKER_NAMESPACE": tracker.settings.namespace,
        "PYTHONPATH": str(Path(__file__).parent),
    }
    tracker_cli = Path(sys.executable).with_name("tracker")
    worker = subprocess.Popen(
        [str(tracker_cli), "worker", queue], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        busy = "#workers .w-busy"
        page.wait_for(f"{_query(busy)} !== null", timeout=20)
        assert page.text(f"{busy} .job-link") == jid
        assert queue in page.text(f"{busy} .worker-queues")
        page.screenshot(ARTIFACTS / "dashboard-workers.png")
        page.click(f"{busy} .job-link")
        page.wait_for(f"document.querySelector('#detail-title')?.textContent === {json.dumps(jid)}")
        assert page.errors() == []
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        tracker.client.delete(f"rq:queue:{queue}")
        tracker.client.srem("rq:queues", f"rq:queue:{queue}")


def test_a_guarded_dashboard_asks_for_its_token_and_keeps_it_for_the_tab(
    tracker: Tracker, valkey_url: str, browser: Browser
) -> None:
    tracker.register("job-1")
    settings = replace(tracker.settings, read_token="r3ad", api_token="wr1te")
    submit = (
        "document.querySelector('input[name=token]').value = {}; "
        "document.querySelector('form').submit()"
    )
    title = "document.querySelector('#token-title')?.textContent"
    live = "document.querySelector('#connection')?.dataset.status === 'live'"
    with _served(create_app(settings, url=valkey_url, maintenance=False)) as url:
        tab = Page(browser)
        try:
            tab.open(url)
            assert tab.wait_for(title) == "This dashboard needs a token"
            tab.screenshot(ARTIFACTS / "dashboard-token.png")
            tab.evaluate(submit.format(json.dumps("nope")))
            tab.wait_for(f"{title} === 'That token was refused'")
            tab.evaluate(submit.format(json.dumps("r3ad")))
            tab.wait_for(f"{live} && {_query(row('job-1'))} !== null")
            assert tab.evaluate("location.search") == ""  # the token is in no URL
            tab.open(url)  # opened again in this tab: the kept token is sent at once
            tab.wait_for(f"{live} && {_query(row('job-1'))} !== null")
            assert tab.evaluate("location.search") == ""
        finally:
            tab.close()


def test_picked_rows_are_cancelled_at_once_after_a_confirmation(
    tracker: Tracker, page: Page
) -> None:
    for jid in ("a-1", "a-2", "a-3", "b-4"):
        tracker.register(jid)
    tracker.start("b-4")
    tracker.success("b-4")  # finished: its cancel is refused, and listed as such
    page.wait_for(f"{_query(row('b-4'))}?.dataset.state === 'success'")
    for jid in ("a-1", "a-2", "b-4"):
        page.click(row(jid) + " .pick")
    assert page.text("#bulk").startswith("3 jobs selected")
    assert page.evaluate("document.querySelector('#detail').hidden")  # picking opens nothing

    page.click("#bulk [data-bulk=cancel]")
    assert "Cancel 3 jobs?" in page.text("#bulk")
    assert tracker.track_get("a-1").state.value == "enqueued"  # nothing before the yes
    page.click("#bulk .a-confirm")

    report = page.wait_for(f"{_query('#bulk .bulk-report')}?.textContent")
    assert report == "cancel: 2 done, 1 refused"
    assert "b-4" in page.text("#bulk .refused")
    states = {jid: tracker.track_get(jid).state.value for jid in ("a-1", "a-2", "a-3", "b-4")}
    assert states == {"a-1": "cancelled", "a-2": "cancelled", "a-3": "enqueued", "b-4": "success"}
    page.wait_for(f"{_query(row('a-2'))}?.dataset.state === 'cancelled'")
    # the refused one stays picked; the done ones are not
    picked = "[...document.querySelectorAll('#jobs tbody .pick:checked')]"
    assert page.evaluate(f"{picked}.map(box => box.closest('tr').dataset.jid).join()") == "b-4"
    page.screenshot(ARTIFACTS / "dashboard-bulk.png")
    assert [e for e in page.errors() if "409 (Conflict)" not in e] == []  # b-4's answer


def test_a_job_s_timeline_tells_its_life_and_follows_it_live(tracker: Tracker, page: Page) -> None:
    tracker.register("flaky-1")
    tracker.start("flaky-1")
    tracker.fail("flaky-1", "the disk is full", error_type="OSError")
    tracker.register("next-2")
    page.wait_for(f"{_query(row('next-2'))} !== null")
    page.click(row("flaky-1"))
    steps = "[...document.querySelectorAll('#detail .timeline li span')].map(s => s.textContent)"
    assert page.wait_for(f"{steps}.length === 3 && {steps}") == [
        "registered",
        "attempt failed: OSError: the disk is full",
        "failed (last change)",
    ]
    tracker.start("flaky-1")
    tracker.success("flaky-1")
    shown = page.wait_for(f"{steps}.includes('success') && {steps}")
    assert shown[:2] == ["registered", "attempt failed: OSError: the disk is full"]
    assert shown[-1] == "success" and "became working" in shown
    assert page.errors() == []


def test_a_job_s_page_draws_its_whole_workflow(tracker: Tracker, page: Page) -> None:
    tracker.register("extract")
    tracker.register("clean", prerequisites=["extract"])
    tracker.register("transform", prerequisites=["clean"])
    tracker.register("load", prerequisites=["transform"])
    tracker.register("report", prerequisites=["load", "extract"])
    page.wait_for(f"{_query(row('report'))} !== null")
    page.click(row("transform"))
    nodes = "[...document.querySelectorAll('#detail .workflow .node')].map(n => n.dataset.jid)"
    drawn = page.wait_for(f"{nodes}.length === 5 && {nodes}")
    assert sorted(drawn) == ["clean", "extract", "load", "report", "transform"]
    assert page.evaluate("document.querySelectorAll('#detail .workflow .edges path').length") == 5
    page.screenshot(ARTIFACTS / "dashboard-workflow.png")
    page.click("#detail .workflow .node[data-jid=extract]")  # two steps away
    page.wait_for("document.querySelector('#detail-title')?.textContent === 'extract'")
    assert page.errors() == []


def test_a_refused_action_shows_the_problem_detail(tracker: Tracker, page: Page) -> None:
    tracker.register("job-1")
    page.wait_for(f"{_query(row('job-1'))} !== null")
    page.click(row("job-1"))
    pause = "#detail [data-action=pause]"
    page.wait_for(f"{_query(pause)} !== null")
    page.evaluate(f"window.stale = {_query(pause)}")
    tracker.start("job-1")
    page.wait_for(f"{_query(pause)} === null")  # the page heard of the start
    page.evaluate("window.stale.click()")  # a click that was on its way meanwhile

    alert = page.wait_for(f"{_query('#detail .refused')}?.textContent")
    assert "only a waiting or enqueued job can be paused" in alert


def test_the_table_is_usable_420_px_wide(jobs: Tracker, page: Page) -> None:
    long_line = "/var/spool/reports/" + "page-" * 60 + "10.pdf"
    jobs.fail(
        "report-1",
        f"the printer is on fire: {long_line}",
        error_type="RuntimeError",
        traceback=f'Traceback (most recent call last):\n  File "{long_line}", line 1\nRuntimeError',
    )
    page.wait_for(f"{_query(row('report-1'))}?.dataset.state === 'failed'")
    page.send(
        "Emulation.setDeviceMetricsOverride", width=420, height=900, deviceScaleFactor=1,
        mobile=False,
    )  # fmt: skip
    try:
        widths = page.wait_for(
            "innerWidth === 420 && [...document.querySelectorAll('#jobs thead th')]"
            ".map(th => Math.round(th.getBoundingClientRect().width))"
        )
        assert len(widths) == 7 and min(widths) > 40, widths
        scroller = "document.querySelector('.table-wrap')"
        assert page.evaluate(f"{scroller}.scrollWidth > {scroller}.clientWidth")
        assert (
            page.evaluate("document.documentElement.scrollWidth") <= 420
        )  # only the table scrolls
        page.screenshot(ARTIFACTS / "dashboard-420.png")

        page.click(row("report-1") + " td.c-jid")  # the row's middle is off screen
        page.wait_for(f"{_query('#detail details.traceback')} !== null")
        page.click("#detail details.traceback summary")
        body = "document.querySelector('#detail-body')"
        assert page.wait_for(
            f"{body}.clientWidth > 380 && {body}.scrollWidth <= {body}.clientWidth"
        )
        page.screenshot(ARTIFACTS / "dashboard-420-detail.png")
    finally:
        page.send("Emulation.clearDeviceMetricsOverride")


def test_the_table_says_loading_until_the_list_answers(
    tracker: Tracker, browser: Browser, dashboard: str
) -> None:
    tab = Page(browser)
    try:
        tab.send("Fetch.enable", patterns=[{"urlPattern": "*/jobs?*", "requestStage": "Request"}])
        tab.send("Page.navigate", url=dashboard)

        def held() -> str | None:
            tab.evaluate("0")  # reads the events sent meanwhile
            for event in browser.events:
                if (
                    event.get("sessionId") == tab.session
                    and event["method"] == "Fetch.requestPaused"
                ):
                    return str(event["params"]["requestId"])
            return None

        request = wait_until(held)
        assert tab.wait_for("document.querySelector('#jobs tbody')?.textContent") == "Loading jobs…"
        tab.send("Fetch.continueRequest", requestId=request)
        tab.send("Fetch.disable")
        tab.wait_for("document.querySelector('#jobs tbody').textContent === 'No jobs yet.'")
    finally:
        tab.close()
