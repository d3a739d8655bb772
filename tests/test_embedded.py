"""The embedded Valkey server: one process per directory, shared by every command,
outliving whoever started it, its data kept in its AOF."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import in_aof, wait_until

from tracker import Settings, State, Tracker
from tracker.embedded import EmbeddedValkey, Keeper


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    """The embedded store of a directory of the test's own, stopped after the test."""
    server = EmbeddedValkey(tmp_path / ".tracker")
    yield server
    server.stop()


def _answers(url: str) -> bool:
    with redis.Redis.from_url(url) as client:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False


def _start_elsewhere(directory: Path) -> subprocess.Popen[str]:
    """Another process that starts the directory's store, prints its URL and exits."""
    code = (
        "import sys; from tracker.embedded import EmbeddedValkey; "
        "print(EmbeddedValkey(sys.argv[1]).start())"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(directory)], stdout=subprocess.PIPE, text=True
    )


def _kill(store: EmbeddedValkey) -> None:
    pid = store.status().pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: store.died())


def test_start_returns_a_unix_url_that_answers(store: EmbeddedValkey) -> None:
    url = store.start()
    assert url.startswith("unix://")
    assert _answers(url)
    status = store.status()
    assert status.running and status.pid and status.since
    assert status.socket == str(store.socket_path)


def test_the_store_outlives_the_process_that_started_it(store: EmbeddedValkey) -> None:
    starter = _start_elsewhere(store.directory)
    url, _ = starter.communicate(timeout=30)
    assert starter.returncode == 0
    assert url.strip() == store.url
    assert _answers(store.url)


def test_a_second_start_reuses_the_running_server(store: EmbeddedValkey) -> None:
    url = store.start()
    pid = store.status().pid
    assert EmbeddedValkey(store.directory).start() == url
    assert store.status().pid == pid


def test_commands_starting_at_the_same_instant_start_one_server(store: EmbeddedValkey) -> None:
    starters = [_start_elsewhere(store.directory) for _ in range(6)]
    urls = {starter.communicate(timeout=30)[0].strip() for starter in starters}
    assert urls == {store.url}
    assert all(starter.returncode == 0 for starter in starters)
    running = subprocess.run(
        ["pgrep", "-f", f"valkey-server unixsocket:{store.socket_path}"],
        capture_output=True,
        text=True,
    )
    assert len(running.stdout.split()) == 1


def test_stop_ends_the_server_and_says_whether_it_ran(store: EmbeddedValkey) -> None:
    url = store.start()
    assert store.stop() is True
    assert not _answers(url)
    assert not store.status().running
    assert store.status().pid is None
    assert store.stop() is False


def test_a_registered_job_survives_a_stop_and_a_start(store: EmbeddedValkey) -> None:
    settings = Settings(namespace="embedded")
    with Tracker.from_url(store.start(), settings) as tracker:
        tracker.register("job-1", queue="mail")
        tracker.track_set("job-1", percent=30)
        before = tracker.track_get("job-1")
    store.stop()
    with Tracker.from_url(store.start(), settings) as tracker:
        assert tracker.track_get("job-1") == before
        assert before.state is State.ENQUEUED


def test_a_killed_server_is_started_again_on_its_data(store: EmbeddedValkey) -> None:
    settings = Settings(namespace="embedded")
    with Tracker.from_url(store.start(), settings) as tracker:
        tracker.register("job-1")
    wait_until(lambda: in_aof(store.directory, "job-1"))
    _kill(store)
    assert store.socket_path.exists() or store.pid_path.exists()  # what it left behind
    with Tracker.from_url(store.start(), settings) as tracker:
        assert tracker.state("job-1") is State.ENQUEUED


def test_a_pid_file_naming_another_process_is_stale(store: EmbeddedValkey) -> None:
    store.directory.mkdir(parents=True)
    store.pid_path.write_text(f"{os.getpid()}\n")  # alive, but not a Valkey server
    assert _answers(store.start())
    assert store.status().pid != os.getpid()


def test_the_keeper_restarts_a_killed_server_but_not_a_stopped_one(
    store: EmbeddedValkey,
) -> None:
    store.start()
    keeper = Keeper(store, interval=0.05)
    keeper.start()
    try:
        _kill(store)
        wait_until(lambda: store.status().running)
        store.stop()
        assert not store.died()
        with pytest.raises(AssertionError):
            wait_until(lambda: store.status().running, timeout=0.5)
    finally:
        keeper.stop()


def test_a_directory_whose_socket_path_would_be_too_long_still_works(tmp_path: Path) -> None:
    directory = tmp_path / ("d" * 60) / ("e" * 60)
    server = EmbeddedValkey(directory)
    assert len(str(directory / "valkey.sock")) > 108
    try:
        assert _answers(server.start())
        assert len(str(server.socket_path)) <= 100
        assert directory.is_dir()
    finally:
        server.stop()


def test_two_long_directories_get_sockets_of_their_own(tmp_path: Path) -> None:
    first = EmbeddedValkey(tmp_path / "a" / ("d" * 120))
    second = EmbeddedValkey(tmp_path / "b" / ("d" * 120))
    try:
        assert first.start() != second.start()
        assert first.status().pid != second.status().pid
    finally:
        first.stop()
        second.stop()
