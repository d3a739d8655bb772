"""The embedded Valkey server: one per directory, reused while running, data kept in its AOF."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tracker import Settings, State, Tracker
from tracker.embedded import EmbeddedValkey


@pytest.fixture
def servers() -> Iterator[list[EmbeddedValkey]]:
    """EmbeddedValkey objects a test made; whichever still owns a server stops it."""
    made: list[EmbeddedValkey] = []
    yield made
    for server in made:
        server.stop()


def _server(servers: list[EmbeddedValkey], directory: Path) -> EmbeddedValkey:
    server = EmbeddedValkey(directory)
    servers.append(server)
    return server


def _answers(url: str) -> bool:
    with redis.Redis.from_url(url) as client:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False


def test_start_returns_a_unix_url_that_answers(
    servers: list[EmbeddedValkey], tmp_path: Path
) -> None:
    server = _server(servers, tmp_path)
    url = server.start()
    assert url.startswith("unix://")
    assert _answers(url)
    assert server.owned


def test_stop_stops_the_server_it_started(servers: list[EmbeddedValkey], tmp_path: Path) -> None:
    server = _server(servers, tmp_path)
    url = server.start()
    server.stop()
    assert not server.owned
    assert not _answers(url)


def test_a_second_server_on_the_same_directory_reuses_the_running_one(
    servers: list[EmbeddedValkey], tmp_path: Path
) -> None:
    first = _server(servers, tmp_path)
    second = _server(servers, tmp_path)
    url = first.start()
    assert second.start() == url
    assert first.owned
    assert not second.owned


def test_stopping_a_reused_server_leaves_it_running(
    servers: list[EmbeddedValkey], tmp_path: Path
) -> None:
    first = _server(servers, tmp_path)
    url = first.start()
    second = _server(servers, tmp_path)
    second.start()
    second.stop()
    assert _answers(url)


def test_a_registered_job_survives_a_stop_and_a_start(
    servers: list[EmbeddedValkey], tmp_path: Path
) -> None:
    settings = Settings(namespace="embedded")
    with Tracker.from_url(_server(servers, tmp_path).start(), settings) as tracker:
        tracker.register("job-1", queue="mail")
        tracker.track_set("job-1", percent=30)
        before = tracker.track_get("job-1")
    servers[0].stop()
    with Tracker.from_url(_server(servers, tmp_path).start(), settings) as tracker:
        assert tracker.track_get("job-1") == before
        assert before.state is State.ENQUEUED


def test_a_directory_whose_socket_path_would_be_too_long_still_works(
    servers: list[EmbeddedValkey], tmp_path: Path
) -> None:
    directory = tmp_path / ("d" * 60) / ("e" * 60)
    server = _server(servers, directory)
    assert len(str(directory / "valkey.sock")) > 108
    url = server.start()
    assert _answers(url)
    assert len(str(server.socket_path)) <= 100
    assert directory.is_dir()


def test_two_long_directories_get_sockets_of_their_own(
    servers: list[EmbeddedValkey], tmp_path: Path
) -> None:
    first = _server(servers, tmp_path / "a" / ("d" * 120))
    second = _server(servers, tmp_path / "b" / ("d" * 120))
    assert first.start() != second.start()
    assert first.owned and second.owned
