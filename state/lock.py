"""One daemon per state database: an advisory lock the kernel releases when the process dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from core.errors import SyncError

__all__ = ["InstanceLockedError", "StateLock"]


class InstanceLockedError(SyncError):
    """Another process holds the state database (exit status 4)."""


class StateLock:
    """An exclusive `flock` on the state database file itself: keyed by the file's identity (its
    inode), not by the path it was named by, so a symlinked or hard-linked `--state` meets the same
    lock, and there is no separate lock file whose deletion could let a second instance in (issue
    #13: three daemons shared one database). No stale lock survives a kill -9.

    SQLite takes POSIX `fcntl` locks on the same file; on Linux the two kinds never interfere (on
    NFS, where `flock` is emulated with `fcntl`, keep the state on a local disk, as SQLite advises).
    The descriptor is closed only on `release`, after the caller closed its database: closing a
    descriptor of a file drops every POSIX lock the process holds on it.

    `<state>.lock` beside the database's real path names the holder's pid, for the message a
    second instance prints; it is informational only.
    """

    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path
        real = Path(os.path.realpath(state_path))
        self.path = real.with_name(real.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InstanceLockedError(
                f"another crm-sync instance (pid {self._holder()}) holds the state database {self.state_path}"
            ) from None
        self._fd = fd
        with contextlib.suppress(OSError):  # the pid is for people; the lock is the flock above
            pid = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(pid, str(os.getpid()).encode())
            finally:
                os.close(pid)

    def _holder(self) -> str:
        try:
            return self.path.read_text(errors="replace").strip()[:20] or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
