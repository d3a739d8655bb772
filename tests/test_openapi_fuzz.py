"""A property-based run of schemathesis against /openapi.json on a live ``tracker serve``:
no 5xx, every response matching the schema.

The server is the console script in a subprocess, on the suite's Valkey in a namespace
of its own. Schemathesis (its ``st`` command, as users run it) reads the document the
server serves and, per operation, sends the boundary cases of its coverage phase, then
random valid and invalid requests, and runs every check it has on each answer: not a
5xx, a documented status code, media type and body, every invalid request refused and
every valid one accepted, a 405 and OPTIONS naming the methods of the path. Half the
valid path jids are swapped for jobs made first, one per state, so writes reach real
jobs (200 and 409), not only unknown ones (404). The event streams are read up to their
first event or a second of silence, so that they end.

This module is also the hooks module of the ``st`` process (``hooks`` in its config):
:func:`map_case` runs there, not in pytest.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from conftest import serving
from schemathesis.core.parameters import ParameterLocation

RUN_TIMEOUT = 200.0  # within this test's own pytest timeout, below
#: The jobs half the valid path jids are swapped for, made by :func:`_made_jobs`.
KNOWN_JIDS = ("fuzz-enqueued", "fuzz-working", "fuzz-waiting", "fuzz-batch", "fuzz-done")
CONFIG = f"""
hooks = "{Path(__file__).stem}"
request-timeout = 10
max-stream-events = 1
# One worker: describing a filter, hypothesis calls compile(), which CPython 3.11.7 cannot
# run in two threads at once ("SystemError: AST constructor recursion depth mismatch").
workers = 1

[generation]
max-examples = 25
mode = "all"
database = "none"

[phases.examples]
enabled = false

[phases.stateful]
enabled = false

[checks]
enabled = true

[checks.negative_data_rejection]
# A body over 64 KiB is refused with 413 before it is parsed: a refusal like the others.
expected-statuses = [400, 401, 403, 404, 405, 409, 413, 415, 422]

[[operations]]
include-path-regex = "events$"
# A stream is read up to its first event, or until it has been silent for a second
# (/events, with nothing else going on, stays silent): fewer random cases, then.
request-timeout = 1.0
generation.max-examples = 10
# Before Open API 3.2, schemathesis reads the schema of an event stream as the schema of
# one event ({{event, id, data}}), while the document's describes the stream's text as a
# string, as Open API 3.0 has it: a mismatch of conventions, not of the API.
checks.response_schema_conformance.enabled = false
"""


# --- the hook of the st process ----------------------------------------------------


def _valid_name(text: str) -> bool:
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:@")
    return 1 <= len(text) <= 128 and set(text) <= allowed


@schemathesis.hook
def map_case(context: Any, case: schemathesis.Case) -> schemathesis.Case:
    """Half the valid path jids become one of KNOWN_JIDS (picked by the jid's hash, so
    the coverage phase stays deterministic), and a valid body's ``jid`` becomes the
    path's (TRACK SET refuses any other). What a negative case made invalid stays."""
    meta = case.meta
    jid = (case.path_parameters or {}).get("jid")
    if not isinstance(jid, str) or meta is None or meta.is_negative_at(ParameterLocation.PATH):
        return case
    # new dicts, not edits: the coverage phase shares them between cases
    if _valid_name(jid):
        pick = zlib.crc32(jid.encode()) % (2 * len(KNOWN_JIDS))
        if pick < len(KNOWN_JIDS):
            jid = KNOWN_JIDS[pick]
            case.path_parameters = {**case.path_parameters, "jid": jid}
    body = case.body
    valid_body = not meta.is_negative_at(ParameterLocation.BODY)
    if isinstance(body, dict) and valid_body and body.get("payload") is not None:
        # RQ runs it under the jid: the payload's description narrows it to RQ's job id
        # characters, which a schema cannot make a path parameter depend on
        rq_jid = re.sub(r"[^A-Za-z0-9_-]", "_", jid)
        if rq_jid != jid:
            jid = rq_jid
            case.path_parameters = {**case.path_parameters, "jid": jid}
    if isinstance(body, dict) and body.get("jid") and valid_body:
        case.body = {**body, "jid": jid}
    return case


# --- the live server -----------------------------------------------------------------


@pytest.fixture
def live_api(valkey_url: str, tmp_path: Path) -> Iterator[str]:
    """``tracker serve`` on a free loopback port, on the suite's Valkey; its base URL."""
    command = [str(Path(sys.executable).with_name("tracker")), "serve", "--port", "{port}"]
    with serving(command, valkey_url, tmp_path / "serve.log", cwd=tmp_path) as base:
        yield base


def _made_jobs(base: str) -> None:
    """One job in each state of KNOWN_JIDS's names."""
    with httpx.Client(base_url=base, timeout=5.0) as client:
        bodies: dict[str, dict[str, Any]] = {
            "fuzz-enqueued": {},
            "fuzz-working": {},
            "fuzz-waiting": {"prerequisites": ["fuzz-never-registered"]},
            "fuzz-batch": {"batch": True},
            "fuzz-done": {},
        }
        for jid, body in bodies.items():
            client.put(f"/jobs/{jid}", json=body).raise_for_status()
        client.post("/jobs/fuzz-working/start").raise_for_status()
        client.post("/jobs/fuzz-done/success").raise_for_status()


# --- the test ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT + 20)  # every operation fuzzed: the suite's longest test
def test_no_request_makes_a_5xx_and_every_answer_is_as_documented(
    live_api: str, tmp_path: Path
) -> None:
    _made_jobs(live_api)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")}
    paths = [str(Path(__file__).parent), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [str(st), "--config-file", str(config), "--no-color", "run", f"{live_api}/openapi.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout[-20_000:] + result.stderr[-4000:]
    assert re.search(r"\b(\d+) generated, \1 passed\b", result.stdout), result.stdout[-4000:]
