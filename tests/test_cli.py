"""SPEC section 7: the ``tracker`` command, its output and its exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from click.testing import CliRunner, Result
from conftest import in_aof, own_namespace, wait_until

from tracker import Settings, Tracker
from tracker.cli import main
from tracker.embedded import EmbeddedValkey

Run = Callable[..., Result]
SETTINGS = (
    "TRACKER_REDIS_URL",
    "TRACKER_REDIS_CLUSTER",
    "TRACKER_NAMESPACE",
    "TRACKER_TTL",
    "TRACKER_PENDING_TTL",
    "TRACKER_DONE_TTL",
    "TRACKER_RESERVE_FOR",
    "TRACKER_PROPAGATE_FAILURES",
    "CAF_JOB_TRACKING_PROPAGATE_FAILURES",
    "TRACKER_CANCEL_GRACE",
    "TRACKER_API_TOKEN",
    "TRACKER_READ_TOKEN",
)


@pytest.fixture
def namespace(valkey_url: str) -> Iterator[str]:
    yield from own_namespace(valkey_url, "cli-")


@pytest.fixture
def cli(valkey_url: str, namespace: str) -> Run:
    """Runs ``tracker ARGS...`` in-process against the session's Valkey, in its own namespace."""

    def run(*args: str, **env: str) -> Result:
        environment: dict[str, str | None] = dict.fromkeys(SETTINGS)
        environment |= {"TRACKER_REDIS_URL": valkey_url, "TRACKER_NAMESPACE": namespace, **env}
        return CliRunner().invoke(main, list(args), env=environment)

    return run


@pytest.fixture
def store(valkey_url: str, namespace: str) -> Iterator[Tracker]:
    """A Tracker on the CLI's namespace, to arrange and inspect what the commands see."""
    with Tracker.from_url(valkey_url, Settings(namespace=namespace)) as tracker:
        yield tracker


def shown(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output + result.stderr
    track: dict[str, Any] = json.loads(result.stdout)
    return track


# --- commands ----------------------------------------------------------------------------


def test_register_prints_the_new_track(cli: Run) -> None:
    track = shown(cli("register", "job-1", "--queue", "mail", "--label", "customer=acme"))
    assert (track["jid"], track["state"], track["queue"]) == ("job-1", "enqueued", "mail")
    assert track["labels"] == {"customer": "acme"}


def test_register_takes_reserve_for_and_max_attempts(cli: Run, store: Tracker) -> None:
    cli("register", "job-1", "--reserve-for", "60", "--max-attempts", "3")
    track = store.start("job-1")
    assert track.reserve_until == track.updated_at + 60_000  # type: ignore[operator]
    assert track.max_attempts == 3


def test_get_prints_the_track_as_json(cli: Run, store: Tracker) -> None:
    store.register("job-1")
    store.track_set("job-1", percent=12, desc="Calculating...")
    assert shown(cli("get", "job-1")) == store.track_get("job-1").to_dict()


def test_get_of_an_unknown_jid_prints_state_unknown_and_exits_1(cli: Run) -> None:
    result = cli("get", "ghost")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"jid": "ghost", "state": "unknown"}


def test_set_reports_percent_and_desc(cli: Run, store: Tracker) -> None:
    store.register("job-1")
    track = shown(cli("set", "job-1", "--percent", "40", "--desc", "step 2 of 5"))
    assert (track["percent"], track["desc"]) == (40, "step 2 of 5")
    assert store.track_get("job-1").percent == 40


def test_set_extends_the_reservation(cli: Run, store: Tracker) -> None:
    store.register("job-1")
    store.start("job-1")
    track = shown(cli("set", "job-1", "--reserve-until", "2099-01-01T02:00:00+02:00"))
    assert track["reserve_until"] == "2099-01-01T00:00:00Z"


def test_ls_shows_a_table_with_jid_state_queue_and_percent(cli: Run, store: Tracker) -> None:
    store.register("job-1", queue="mail")
    store.track_set("job-1", percent=40)
    result = cli("ls")
    assert result.exit_code == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split()[:4] == ["JID", "STATE", "QUEUE", "PCT"]
    assert row.split()[:4] == ["job-1", "enqueued", "mail", "40%"]


def test_ls_keeps_a_desc_with_control_characters_on_its_row(cli: Run, store: Tracker) -> None:
    store.register("job-1")
    store.track_set("job-1", desc="line one\nline two\x1b[2J")
    result = cli("ls")
    assert result.exit_code == 0, result.stderr
    _, row = result.stdout.splitlines()
    assert row.endswith("line one\\nline two\\x1b[2J")


def test_ls_filters_by_state(cli: Run, store: Tracker) -> None:
    store.register("job-1")
    store.register("job-2")
    store.start("job-2")
    rows = cli("ls", "--state", "working").stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["job-2"]


def test_ls_filters_by_queue(cli: Run, store: Tracker) -> None:
    store.register("job-1", queue="mail")
    store.register("job-2", queue="pdf")
    rows = cli("ls", "--queue", "pdf").stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["job-2"]


def test_ls_json_prints_one_track_per_line(cli: Run, store: Tracker) -> None:
    store.register("job-1")
    store.register("job-2")
    result = cli("ls", "--json")
    assert result.exit_code == 0, result.stderr
    tracks = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(t["jid"] for t in tracks) == ["job-1", "job-2"]
    assert tracks[0] == store.track_get(tracks[0]["jid"]).to_dict()


def test_ls_of_an_empty_namespace_prints_only_the_header(cli: Run) -> None:
    assert cli("ls").stdout.split() == ["JID", "STATE", "QUEUE", "PCT", "UPDATED", "DESC"]


@pytest.mark.parametrize(
    ("commands", "state"),
    [
        ([["cancel"]], "cancelled"),
        ([["pause"]], "paused"),
        ([["pause"], ["resume"]], "enqueued"),
        ([["start"]], "working"),
        ([["start"], ["success"]], "success"),
        ([["start"], ["fail", "boom"]], "failed"),
        ([["start"], ["fail", "boom", "--no-retry"]], "dead"),
    ],
)
def test_lifecycle_commands_move_the_job(
    cli: Run, store: Tracker, commands: list[list[str]], state: str
) -> None:
    store.register("job-1")
    for command, *rest in commands:
        track = shown(cli(command, "job-1", *rest))
    assert track["state"] == state
    assert store.track_get("job-1").state.value == state


def test_fail_records_the_error_message(cli: Run, store: Tracker) -> None:
    store.register("job-1")
    store.start("job-1")
    assert shown(cli("fail", "job-1", "disk full"))["error"]["message"] == "disk full"


def test_stats_prints_counts_by_state_and_queue(cli: Run, store: Tracker) -> None:
    store.register("job-1", queue="mail")
    store.register("job-2", queue="mail")
    store.start("job-2")
    result = cli("stats")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "states": {"enqueued": 1, "working": 1},
        "queues": {"mail": {"enqueued": 1, "working": 1}},
    }


def test_namespaces_keep_cli_users_apart(cli: Run, store: Tracker) -> None:
    store.register("job-1")
    assert cli("get", "job-1", TRACKER_NAMESPACE=store.settings.namespace + "-x").exit_code == 1


# --- exit codes --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["set", "start", "success", "cancel", "pause", "resume"])
def test_a_write_to_an_unknown_jid_exits_1(cli: Run, command: str) -> None:
    result = cli(command, "ghost")
    assert result.exit_code == 1
    assert "unknown" in result.stderr


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["set", "job-1", "--percent", "101"], "percent"),
        (["set", "job-1", "--reserve-until", "tomorrow"], "reserve_until"),
        (["register", "bad jid"], "jid"),
        (["register", "job-2", "--queue", "a/b"], "queue"),
        (["register", "job-2", "--max-attempts", "0"], "max_attempts"),
        (["get", "{ns}"], "jid"),
        (["ls", "--limit", "0"], "limit"),
    ],
)
def test_invalid_input_exits_2_with_the_reason_on_stderr(
    cli: Run, store: Tracker, args: list[str], field: str
) -> None:
    store.register("job-1")
    before = store.track_get("job-1")
    result = cli(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"tracker: {field}: ")
    assert result.stdout == ""
    assert store.track_get("job-1") == before
    assert store.track_get("job-2").state.value == "unknown"


def test_a_label_without_equals_sign_exits_2(cli: Run, store: Tracker) -> None:
    result = cli("register", "job-1", "--label", "customer")
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.stderr
    assert store.track_get("job-1").state.value == "unknown"


def test_labels_are_key_equals_value_on_register_and_ls(cli: Run, store: Tracker) -> None:
    shown(cli("register", "colon-key", "--label", "a:b=c"))  # the first "=" splits
    shown(cli("register", "colon-value", "--label", "a:b:c"))  # KEY:VALUE without "="
    assert store.track_get("colon-key").labels == {"a:b": "c"}
    assert store.track_get("colon-value").labels == {"a": "b:c"}
    for label, jid in [("a:b=c", "colon-key"), ("a=b:c", "colon-value"), ("a:b:c", "colon-value")]:
        listed = cli("ls", "--json", "--label", label)
        assert listed.exit_code == 0, listed.stderr
        assert [json.loads(line)["jid"] for line in listed.stdout.splitlines()] == [jid], label


def test_a_usage_error_exits_2(cli: Run) -> None:
    assert cli("set", "job-1", "--percent", "many").exit_code == 2


@pytest.mark.parametrize(
    ("commands", "state"),
    [
        ([["pause"], ["start"]], "paused"),
        ([["start"], ["start"]], "working"),
        ([["resume"]], "enqueued"),
        ([["success"], ["cancel"]], "success"),
        ([["cancel"], ["set", "--percent", "5"]], "cancelled"),
    ],
)
def test_a_refused_transition_exits_3_naming_the_state(
    cli: Run, store: Tracker, commands: list[list[str]], state: str
) -> None:
    store.register("job-1")
    *setup, (command, *rest) = commands
    for step, *more in setup:
        assert cli(step, "job-1", *more).exit_code == 0
    before = store.track_get("job-1")
    result = cli(command, "job-1", *rest)
    assert result.exit_code == 3
    assert f"is {state}" in result.stderr
    assert store.track_get("job-1") == before


@pytest.mark.parametrize("command", [["get", "job-1"], ["register", "job-1"], ["ls"], ["stats"]])
def test_an_unreachable_redis_exits_4(cli: Run, command: list[str]) -> None:
    result = cli(*command, TRACKER_REDIS_URL="redis://127.0.0.1:1")
    assert result.exit_code == 4
    assert "Redis did not answer" in result.stderr


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("TRACKER_TTL", "abc"),
        ("TRACKER_REDIS_URL", "http://127.0.0.1:6379"),
        ("TRACKER_NAMESPACE", "a b"),
        ("TRACKER_PROPAGATE_FAILURES", "maybe"),
        ("TRACKER_REDIS_CLUSTER", "1"),
    ],
)
def test_a_bad_setting_exits_4_naming_the_variable(cli: Run, variable: str, raw: str) -> None:
    result = cli("get", "job-1", **{variable: raw})
    assert result.exit_code == 4
    assert variable in result.stderr


def test_a_redis_url_with_a_malformed_port_exits_4_naming_the_variable(cli: Run) -> None:
    result = cli("get", "job-1", TRACKER_REDIS_URL="redis://127.0.0.1:abc")
    assert result.exit_code == 4
    assert "TRACKER_REDIS_URL" in result.stderr


# --- the console script on the embedded server ---------------------------------------------


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Path]:
    """A directory of the test's own; its embedded store is stopped after the test."""
    yield tmp_path
    EmbeddedValkey(tmp_path / ".tracker").stop()


def _console(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    script = Path(sys.executable).with_name("tracker")
    return subprocess.run(
        [str(script), *args], cwd=directory, env=env, capture_output=True, text=True, timeout=30
    )


def test_the_console_script_without_a_url_keeps_data_in_the_embedded_server(
    directory: Path,
) -> None:
    registered = _console(directory, "register", "x")
    assert registered.returncode == 0, registered.stderr
    assert (directory / ".tracker").is_dir()
    assert _console(directory, "store", "stop").returncode == 0  # the next read is from the AOF
    read = _console(directory, "get", "x")
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout)["state"] == "enqueued"


def test_store_status_and_stop(directory: Path) -> None:
    down = _console(directory, "store", "status")
    assert down.returncode == 1
    assert json.loads(down.stdout) | {"socket": None} == {
        "running": False,
        "pid": None,
        "socket": None,
        "since": None,
    }
    assert _console(directory, "register", "x").returncode == 0
    up = _console(directory, "store", "status")
    assert up.returncode == 0
    status = json.loads(up.stdout)
    assert status["running"] is True and status["pid"] > 0 and status["since"].endswith("Z")
    stopped = _console(directory, "store", "stop")
    assert (stopped.returncode, stopped.stdout) == (0, "tracker: the embedded Valkey stopped\n")
    again = _console(directory, "store", "stop")
    assert (again.returncode, again.stdout) == (0, "tracker: it was not running\n")
    assert _console(directory, "store", "status").returncode == 1


def test_a_killed_store_comes_back_with_its_data_at_the_next_command(directory: Path) -> None:
    assert _console(directory, "register", "x").returncode == 0
    wait_until(lambda: in_aof(directory / ".tracker", "x"))  # AOF everysec may lag 2 s
    pid = json.loads(_console(directory, "store", "status").stdout)["pid"]
    os.kill(pid, signal.SIGKILL)
    read = _console(directory, "get", "x")
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout)["state"] == "enqueued"
    assert json.loads(_console(directory, "store", "status").stdout)["pid"] != pid


def test_serve_refuses_to_listen_beyond_loopback_without_a_token(cli: Run) -> None:
    result = cli("serve", "--host", "0.0.0.0", "--port", "1")
    assert result.exit_code == 2
    assert "TRACKER_API_TOKEN" in result.stderr
    assert "--insecure" in result.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(directory: Path, port: int, *options: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    script = Path(sys.executable).with_name("tracker")
    return subprocess.Popen(
        [str(script), "serve", "--port", str(port), *options],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _ready(base: str, server: subprocess.Popen[str]) -> bool:
    try:
        return httpx.get(base + "/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        assert server.poll() is None, server.stdout.read()  # type: ignore[union-attr]
        return False


def test_serve_runs_the_api_on_the_embedded_server_and_leaves_it_running_on_sigterm(
    directory: Path,
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve(directory, port)
    try:
        wait_until(lambda: _ready(base, server), timeout=30)
        assert httpx.put(base + "/jobs/web-1", json={}).status_code == 201
        assert httpx.get(base + "/jobs/web-1").json()["state"] == "enqueued"
        with httpx.stream("GET", base + "/events", timeout=30) as events:
            next(events.iter_lines())  # a client still listening does not hold the shutdown
            server.send_signal(signal.SIGTERM)
            output, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    # uvicorn shuts down cleanly, then re-raises the signal it caught
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    with redis.Redis.from_url(EmbeddedValkey(directory / ".tracker").url) as store:
        assert store.ping()  # the store is everyone's: it outlives the server


def test_stopping_the_command_that_started_the_store_leaves_it_to_the_others(
    directory: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    script = Path(sys.executable).with_name("tracker")
    worker = subprocess.Popen([str(script), "worker"], cwd=directory, env=env)
    wait_until(lambda: EmbeddedValkey(directory / ".tracker").status().running, timeout=30)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve(directory, port)
    try:
        wait_until(lambda: _ready(base, server), timeout=30)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 0
        assert httpx.get(base + "/readyz", timeout=5).status_code == 200
        assert httpx.put(base + "/jobs/after", json={}).status_code == 201
    finally:
        for process in (worker, server):
            if process.poll() is None:
                process.kill()
            process.communicate()


def test_serve_on_a_port_in_use_exits_4_in_one_line(directory: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = _console(directory, "serve", "--port", str(taken.getsockname()[1]))
    assert result.returncode == 4
    assert result.stderr.count("\n") == 1 and "port is in use" in result.stderr


def test_serve_on_an_unknown_host_exits_4_in_one_line(directory: Path) -> None:
    result = _console(directory, "serve", "--host", "no-such-host.invalid")
    assert result.returncode == 4
    assert result.stderr.count("\n") == 1 and "no-such-host.invalid" in result.stderr


# --- the register contract, retry, delete and seal ------------------------------------------


def test_register_takes_prerequisites_parent_and_delay(cli: Run, store: Tracker) -> None:
    assert shown(cli("register", "nightly", "--batch"))["batch"]["total"] == 0
    track = shown(
        cli("register", "job-1", "--after", "a", "--after", "b", "--parent", "nightly",
            "--delay", "5")
    )  # fmt: skip
    assert (track["state"], track["parent"]) == ("waiting", "nightly")
    assert track["prerequisites"] == {"total": 2, "pending": 2}
    store.register("a")
    store.success("a")
    store.register("b")
    store.success("b")
    assert store.track_get("job-1").eligible_at is not None


@pytest.mark.rq
def test_register_takes_a_payload_with_json_arguments(cli: Run, store: Tracker) -> None:
    queue = "q-cli-" + os.urandom(4).hex()
    try:
        track = shown(
            cli("register", "job-1", "--queue", queue, "--payload", "app.tasks.resize",
                "--arg", "42", "--arg", '"big"', "--kwarg", 'size={"w": 640}')
        )  # fmt: skip
        assert track["payload"] == {
            "func": "app.tasks.resize",
            "args": [42, "big"],
            "kwargs": {"size": {"w": 640}},
        }
        assert store.client.lrange(f"rq:queue:{queue}", 0, -1) == [b"job-1"]
        hidden = shown(cli("register", "job-2", "--payload", "m.f", "--arg", "1", "--hide-args"))
        assert hidden["payload"]["args"] == "hidden"
    finally:
        store.client.delete(f"rq:queue:{queue}", "rq:job:job-1", "rq:job:job-2")
        store.client.srem("rq:queues", f"rq:queue:{queue}", "rq:queue:default")
        store.client.lrem("rq:queue:default", 0, "job-2")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--payload", "m.f", "--arg", "not json"), "--arg"),
        (("--payload", "m.f", "--kwarg", "novalue"), "--kwarg"),
        (("--arg", "1"), "--payload"),
    ],
)
def test_register_refuses_arguments_it_cannot_read(
    cli: Run, store: Tracker, args: tuple[str, ...], named: str
) -> None:
    result = cli("register", "job-1", *args)
    assert result.exit_code == 2
    assert named in result.stderr
    assert store.track_get("job-1").state.value == "unknown"


def test_set_with_nothing_to_change_says_so_and_exits_2(cli: Run, store: Tracker) -> None:
    store.register("job-1")
    result = cli("set", "job-1")
    assert result.exit_code == 2
    assert "nothing to change" in result.stderr
    assert store.track_get("job-1").updated_at == store.track_get("job-1").created_at


def test_ls_lists_the_children_of_a_batch(cli: Run, store: Tracker) -> None:
    store.register("nightly", batch=True)
    store.register("child-1", parent="nightly")
    store.register("other")
    result = cli("ls", "--parent", "nightly", "--json")
    assert [json.loads(line)["jid"] for line in result.stdout.splitlines()] == ["child-1"]


def test_seal_seals_a_batch(cli: Run, store: Tracker) -> None:
    store.register("nightly", batch=True)
    assert shown(cli("seal", "nightly"))["state"] == "success"


@pytest.mark.rq
def test_retry_puts_a_dead_job_back(cli: Run, store: Tracker) -> None:
    queue = "q-cli-" + os.urandom(4).hex()
    try:
        store.register("job-1", queue=queue, payload={"func": "m.f"}, max_attempts=1)
        store.start("job-1")
        store.fail("job-1", "boom")
        track = shown(cli("retry", "job-1", "--dependents"))
        assert (track["state"], track["max_attempts"]) == ("enqueued", 2)
    finally:
        store.client.delete(f"rq:queue:{queue}", "rq:job:job-1")
        store.client.srem("rq:queues", f"rq:queue:{queue}")


def test_retry_of_a_job_that_is_not_dead_exits_3(cli: Run, store: Tracker) -> None:
    store.register("job-1")
    result = cli("retry", "job-1")
    assert result.exit_code == 3
    assert "enqueued" in result.stderr


def test_delete_forgets_a_finished_job(cli: Run, store: Tracker) -> None:
    store.register("job-1")
    store.success("job-1")
    result = cli("delete", "job-1")
    assert result.exit_code == 0, result.stderr
    assert "it was success" in result.stdout
    assert store.track_get("job-1").state.value == "unknown"
    assert cli("delete", "job-1").exit_code == 1
    store.register("job-2")
    assert cli("delete", "job-2").exit_code == 3


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.add(int(stat.parent.name))
    return found


def test_serve_with_workers_runs_that_many_processes_and_replaces_one_that_dies(
    directory: Path,
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve(directory, port, "--workers", "2")
    try:
        wait_until(lambda: _ready(base, server), timeout=30)
        serving = wait_until(lambda: len(_children(server.pid)) == 2 and _children(server.pid))
        assert httpx.put(base + "/jobs/web-1", json={}).status_code == 201
        # every process reads the same store
        assert {httpx.get(base + "/jobs/web-1").json()["state"] for _ in range(8)} == {"enqueued"}
        dead = min(serving)
        os.kill(dead, signal.SIGKILL)
        again = wait_until(
            lambda: len(now := _children(server.pid)) == 2 and dead not in now and now, timeout=15
        )
        assert dead not in again
        wait_until(lambda: _ready(base, server))
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
        assert server.returncode == 0, output
        assert "2 processes" in output
        assert not any(Path(f"/proc/{pid}").exists() for pid in again)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def _follow(valkey_url: str, namespace: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env.update(TRACKER_REDIS_URL=valkey_url, TRACKER_NAMESPACE=namespace)
    script = Path(sys.executable).with_name("tracker")
    return subprocess.Popen(
        [str(script), "events", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_events_of_a_job_follow_it_until_it_ends(
    valkey_url: str, namespace: str, store: Tracker
) -> None:
    store.register("job-1")
    follower = _follow(valkey_url, namespace, "job-1")
    try:
        assert follower.stdout is not None
        assert json.loads(follower.stdout.readline())["state"] == "enqueued"  # its track now
        store.start("job-1")
        store.track_set("job-1", percent=40)
        store.success("job-1")
        output, _ = follower.communicate(timeout=20)
        assert follower.returncode == 0
        shown = [json.loads(line) for line in output.splitlines()]
        assert [t["state"] for t in shown] == ["working", "working", "success"]
        assert shown[1]["percent"] == 40
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    unknown = _follow(valkey_url, namespace, "nobody")
    output, _ = unknown.communicate(timeout=20)
    assert unknown.returncode == 1 and json.loads(output)["state"] == "unknown"


def test_events_of_every_job_take_the_list_s_filters(
    valkey_url: str, namespace: str, store: Tracker
) -> None:
    follower = _follow(valkey_url, namespace, "--state", "working", "--queue", "mail")
    try:
        assert follower.stdout is not None and follower.stderr is not None
        assert "following the changes after event" in follower.stderr.readline()
        store.register("other", queue="mail")
        store.register("m-1", queue="mail")
        store.register("p-1", queue="print")
        store.start("p-1")
        store.start("m-1")
        assert json.loads(follower.stdout.readline())["jid"] == "m-1"
    finally:
        follower.terminate()
        follower.communicate(timeout=20)


def test_serve_s_socket_says_it_is_tcp_so_small_answers_are_not_held_back() -> None:
    """asyncio turns Nagle's algorithm off only on sockets whose proto is IPPROTO_TCP;
    left 0, every small response waited for the client's delayed ACK."""
    from tracker.cli import _address, _listen

    listener = _listen("127.0.0.1", 0, _address("127.0.0.1", 0))
    try:
        assert listener.proto == socket.IPPROTO_TCP
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        with socket.create_connection(listener.getsockname()[:2]):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.proto == socket.IPPROTO_TCP
    finally:
        listener.close()
