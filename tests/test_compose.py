"""docker-compose.yml and the Dockerfile, read as Docker would read them (no Docker here):
Redis, the API server and one worker, wired by TRACKER_REDIS_URL, with health checks."""

from __future__ import annotations

import http.server
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tracker import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
_DEFAULTED = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _interpolated(value: str) -> str:
    """``${NAME:-default}`` as compose reads it from an empty environment."""
    return _DEFAULTED.sub(lambda m: m.group(2) or "", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]  # type: ignore[no-any-return]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: _interpolated(str(value)) for name, value in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _option(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def _health_command(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["sh", "-c", test]
    kind, *rest = test
    return ["sh", "-c", rest[0]] if kind == "CMD-SHELL" else rest


def test_the_file_runs_redis_the_api_server_and_one_worker(services: dict[str, Any]) -> None:
    assert set(services) == {"redis", "api", "worker"}
    assert _command(services["api"])[:2] == ["tracker", "serve"]
    assert _command(services["worker"])[:2] == ["tracker", "worker"]
    assert services["worker"].get("deploy", {}).get("replicas", 1) == 1
    assert "redis" in services["redis"]["image"] or "valkey" in services["redis"]["image"]


def test_the_api_and_the_worker_reach_the_redis_service_through_tracker_redis_url(
    services: dict[str, Any],
) -> None:
    redis_port = _option(_command(services["redis"]), "--port") or "6379"
    for name in ("api", "worker"):
        url = urlsplit(_environment(services[name])["TRACKER_REDIS_URL"])
        assert (url.scheme, url.hostname, str(url.port or 6379)) == ("redis", "redis", redis_port)


def test_the_api_and_the_worker_run_with_the_same_valid_settings(
    services: dict[str, Any],
) -> None:
    api, worker = _environment(services["api"]), _environment(services["worker"])
    assert api == worker
    settings = Settings.from_env(api)  # raises, naming the variable, on a bad value
    assert settings.redis_url is not None


def test_both_wait_for_a_healthy_redis(services: dict[str, Any]) -> None:
    assert _health_command(services["redis"])[:2] == ["redis-cli", "ping"]
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_the_api_listens_on_every_interface_of_its_container_with_a_token(
    services: dict[str, Any],
) -> None:
    api = services["api"]
    command = _command(api)
    assert _option(command, "--host") == "0.0.0.0"
    # tracker serve refuses a public host unless writes need a token (or --insecure)
    assert _environment(api).get("TRACKER_API_TOKEN") or "--insecure" in command
    port = _option(command, "--port") or "8000"
    published = [str(mapping).rsplit(":", 1)[-1] for mapping in api["ports"]]
    assert published == [port]


def test_the_api_health_check_asks_readyz_on_the_port_it_serves(
    services: dict[str, Any],
) -> None:
    check = " ".join(_health_command(services["api"]))
    port = _option(_command(services["api"]), "--port") or "8000"
    assert f"127.0.0.1:{port}/readyz" in check


class _Readyz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def readyz_stub() -> Iterator[type[_Readyz]]:
    """A server answering /readyz on port ``handler.port``, with ``handler.status``."""
    handler = type("Handler", (_Readyz,), {})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    handler.port = server.server_address[1]  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_api_health_check_passes_on_200_and_fails_on_503(
    services: dict[str, Any], readyz_stub: Any, status: int, healthy: bool
) -> None:
    readyz_stub.status = status
    port = _option(_command(services["api"]), "--port") or "8000"
    command = [
        part.replace(f"127.0.0.1:{port}/", f"127.0.0.1:{readyz_stub.port}/")
        for part in _health_command(services["api"])
    ]
    if command[0] == "python":
        command[0] = sys.executable  # the image's python; here, the suite's
    result = subprocess.run(command, capture_output=True, timeout=30)
    assert (result.returncode == 0) is healthy, result.stderr


def test_the_image_is_python_3_11_slim_and_copies_what_pip_install_needs(
    services: dict[str, Any],
) -> None:
    for name in ("api", "worker"):
        build = services[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (ROOT / context / "Dockerfile").resolve() == DOCKERFILE
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    assert "FROM python:3.11-slim" in lines
    # the image installs the versions the suite passed on, as the README's commands do
    assert any(
        re.fullmatch(r"RUN pip install -c constraints\.txt \.( .*)?", line) for line in lines
    )
    copied = {
        source
        for line in lines
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
        if not source.startswith("--")
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"], "constraints.txt"}
    needed |= {package.split(".")[0] for package in project["tool"]["setuptools"]["packages"]}
    assert needed <= copied
    assert all((ROOT / source).exists() for source in copied)
