"""The docs are true: every code block of the README runs, the curl walkthrough gets
the answers it shows, and the reference pages name every command, endpoint, field
and setting the code has."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from conftest import wait_until

from tracker import Settings
from tracker.cli import main
from tracker.embedded import EmbeddedValkey
from tracker.web import create_app

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent
DOC_URL = "localhost:8000"


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a markdown file, in order."""
    found, language, lines, start = [], None, [], 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            if language is None:
                language, lines, start = line[3:].strip(), [], number
            else:
                found.append(Block(language, "\n".join(lines), start))
                language = None
        elif language is not None:
            lines.append(line)
    assert language is None, f"{path.name}: a block opened at line {start} never closes"
    return found


def commands(block: Block) -> list[tuple[str, str]]:
    """A shell block's commands (continuations joined), each with its trailing comment."""
    joined = re.sub(r"\\\n\s*", "", block.text)
    out = []
    for line in joined.splitlines():
        command, comment = _split_comment(line)
        if command.strip():
            out.append((command.strip(), comment.strip()))
    return out


def _split_comment(line: str) -> tuple[str, str]:
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index], line[index + 1 :]
    return line, ""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "CAF_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Path]:
    """A directory of the test's own; its embedded store is stopped after the test."""
    yield tmp_path
    EmbeddedValkey(tmp_path / ".tracker").stop()


@pytest.fixture
def server(directory: Path) -> Iterator[str]:
    """``tracker serve`` on the directory's embedded store; its ``host:port``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [str(BIN / "tracker"), "serve", "--port", str(port)],
        cwd=directory,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, "tracker serve exited"
        try:
            return httpx.get(f"http://{address}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, timeout=30)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)


# --- the README ----------------------------------------------------------------


def _install_blocks() -> list[Block]:
    return [b for b in blocks(README) if b.text.startswith("python3 -m venv")]


def test_the_readme_python_blocks_run_in_order(directory: Path) -> None:
    url = EmbeddedValkey(directory / ".tracker").start()
    python = [b for b in blocks(README) if b.language == "python"]
    assert python and 'Tracker.from_url("redis://localhost:6379/0")' in python[0].text
    namespace: dict[str, Any] = {"__name__": "readme"}
    for block in python:
        source = block.text.replace("redis://localhost:6379/0", url)
        exec(compile(source, f"README.md:{block.line}", "exec"), namespace)
    tracker = namespace["tracker"]
    assert tracker.track_get("resize-42").state.value == "success"
    assert tracker.track_get("nightly").batch["total"] == 2
    assert tracker.track_get(namespace["jid"]).queue == "images"


def test_the_readme_shell_blocks_run(directory: Path) -> None:
    shell = [
        b
        for b in blocks(README)
        if b.language == "sh" and b not in _install_blocks() and "curl" not in b.text
    ]
    assert shell
    for block in shell:
        for command, _ in commands(block):
            done = subprocess.run(
                command, shell=True, cwd=directory, env=_env(), capture_output=True, text=True
            )
            assert done.returncode == 0, f"README.md:{block.line}: {command}: {done.stderr}"


def test_the_readme_install_commands_are_the_ones_ci_runs() -> None:
    """The two set-up commands install from constraints.txt, as CI does, and the test
    command is CI's (the demo command's `tracker demo` is run by test_demo.py)."""
    ci = (ROOT / ".ci" / "run").read_text()
    run, test = _install_blocks()
    assert run.text.endswith("&& .venv/bin/tracker demo")
    assert test.text.endswith("&& .venv/bin/pytest")
    assert "\n.venv/bin/pytest\n" in ci
    for block in (run, test):
        assert "pip install -c constraints.txt -e " in block.text
    assert "pip install --quiet -c constraints.txt -e '.[dev]'" in ci


def test_the_readme_curl_block_gets_the_answers_it_names(server: str) -> None:
    (block,) = [b for b in blocks(README) if b.language == "sh" and "curl" in b.text]
    _run_curls(block, None, server, "README.md")


# --- the walkthrough -------------------------------------------------------------


def test_the_any_language_walkthrough_gets_the_answers_it_shows(server: str) -> None:
    path = DOCS / "any-language-worker.md"
    found = blocks(path)
    ran = 0
    for index, block in enumerate(found):
        if block.language != "sh":
            continue
        shown = found[index + 1] if index + 1 < len(found) else None
        _run_curls(block, shown if shown and shown.language == "json" else None, server, path.name)
        ran += 1
    assert ran >= 8


def _run_curls(block: Block, shown: Block | None, server: str, name: str) -> None:
    answer: Any = None
    for command, comment in commands(block):
        argv = [arg.replace(DOC_URL, server) for arg in shlex.split(command)]
        assert argv[0] == "curl", f"{name}:{block.line}: {command}"
        argv[1:1] = ["-s", "--max-time", "10", "-w", "\n%{http_code}"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        body, _, status = done.stdout.rpartition("\n")
        expected = re.match(r"(\d{3})\b", comment)
        assert expected, f"{name}:{block.line}: {command} names no status"
        assert status == expected.group(1), f"{name}:{block.line}: {command}: {status} {body}"
        if body.startswith("{"):
            answer = json.loads(body)
    if shown is not None:
        _matches(json.loads(shown.text), answer, f"{name}:{shown.line}")


def _matches(shown: Any, actual: Any, where: str) -> None:
    """``actual`` is what the docs show, ``"..."`` standing for any value."""
    if shown == "...":
        return
    if isinstance(shown, dict):
        assert isinstance(actual, dict) and set(shown) == set(actual), (where, shown, actual)
        for key, value in shown.items():
            _matches(value, actual[key], f"{where} {key}")
    elif isinstance(shown, list):
        assert isinstance(actual, list) and len(shown) == len(actual), (where, shown, actual)
        for mine, theirs in zip(shown, actual, strict=True):
            _matches(mine, theirs, where)
    else:
        assert shown == actual, (where, shown, actual)


# --- the reference pages -----------------------------------------------------------


def _sections(path: Path) -> dict[str, str]:
    """Each ``### `heading` `` of a page with the text under it."""
    parts = re.split(r"^### `([^`]+)`\n", path.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _commands(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", command


def test_the_cli_page_describes_every_command_and_option() -> None:
    sections = _sections(DOCS / "cli.md")
    named = dict(_commands(main, "tracker"))
    assert set(sections) == set(named)
    for path, command in named.items():
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                flag = max(param.opts, key=len)
                assert flag in sections[path], f"docs/cli.md: {path} does not name {flag}"


def test_the_http_page_describes_every_endpoint_and_field() -> None:
    sections = _sections(DOCS / "http-api.md")
    document = create_app(Settings(), maintenance=False).state.openapi
    schemas = document["components"]["schemas"]
    named = set()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            heading = f"{method.upper()} {path}"
            named.add(heading)
            assert heading in sections, f"docs/http-api.md has no section for {heading}"
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    assert f"`{parameter['name']}" in sections[heading], (heading, parameter)
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                reference = body["schema"]["$ref"].rsplit("/", 1)[-1]
                for field in schemas[reference]["properties"]:
                    assert f"`{field}`" in sections[heading], f"{heading} does not name {field}"
    assert set(sections) == named


def test_the_configuration_page_lists_every_setting() -> None:
    code = "".join(p.read_text() for p in (ROOT / "tracker").rglob("*.py"))
    read = set(re.findall(r'"((?:TRACKER|CAF)_[A-Z_]+)"', code))
    page = (DOCS / "configuration.md").read_text()
    listed = set(re.findall(r"^\| `((?:TRACKER|CAF)_[A-Z_]+)`", page, flags=re.MULTILINE))
    listed |= set(re.findall(r"`, `((?:TRACKER|CAF)_[A-Z_]+)`", page))
    listed |= set(re.findall(r"(CAF_[A-Z_]+)", page))
    assert read == listed


def test_every_json_block_of_the_docs_is_json() -> None:
    for path in [README, *DOCS.glob("*.md")]:
        for block in blocks(path):
            if block.language == "json":
                json.loads(block.text)


def test_the_docs_stand_alone() -> None:
    for path in [README, *DOCS.glob("*.md")]:
        text = path.read_text()
        assert "SPEC" not in text and "shared folder" not in text, path.name
        for target in re.findall(r"\]\(([^)#:]+)\)", text):
            assert (path.parent / target).exists(), f"{path.name} links to {target}"
