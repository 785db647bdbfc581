"""One writer per run folder: ``RUN/.lock`` names the process training into it.

The lock is an exclusive ``flock`` on that file, so the kernel drops it when its process
ends, however it ends (SIGKILL included): a lock left by a dead writer is never mistaken
for a live one and is taken over at once, with a notice. The JSON inside (pid, host,
command, start) only serves to name the live writer in the error a second writer gets.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from facemtl.errors import FacemtlError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not locked
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


def _me() -> dict[str, Any]:
    """What a lock records about its writer."""
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    command = " ".join(argv)
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command if len(command) <= 120 else command[:117] + "...",
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _describe(holder: dict[str, Any]) -> str:
    """``pid 1234 on host (facemtl train ..., started ...)`` from a lock's JSON."""
    where = f" on {holder['host']}" if holder.get("host") and holder["host"] != socket.gethostname() else ""
    extra = ", ".join(str(holder[k]) if k == "command" else f"started {holder[k]}"
                      for k in ("command", "started") if holder.get(k))
    return f"pid {holder.get('pid', '?')}{where}" + (f" ({extra})" if extra else "")


def _read(handle: IO[str]) -> dict[str, Any]:
    """The lock's JSON, or {} for an empty or garbled file (a writer killed mid-write)."""
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _try_flock(handle: IO[str]) -> bool:
    """Take the exclusive lock without waiting; False when another process holds it.

    A filesystem without locks (some network mounts) answers ENOLCK or EOPNOTSUPP: the run
    goes ahead unlocked rather than not at all.
    """
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            return True
        raise
    return True


def _busy(folder: Path, handle: IO[str]) -> FacemtlError:
    return FacemtlError(f"{folder} is being written by {_describe(_read(handle))}; "
                        "wait for it or choose another --out")


def _open_locked(path: Path) -> IO[str]:
    """Open and lock ``path``, or raise naming the live holder.

    A holder that released meanwhile also removed the file: a lock on that removed file
    protects nothing, so it is retried on the new one.
    """
    while True:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115  (held open while the lock lives)
        if not _try_flock(handle):
            error = _busy(path.parent, handle)
            handle.close()
            raise error
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                return handle
        handle.close()


class RunLock:
    """The exclusive writer lock of a run folder, from :meth:`acquire` to :meth:`release`.

    Example:
        >>> with RunLock("runs/x"):  # raises FacemtlError if another live process writes runs/x
        ...     train()
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, taking over (with a notice) one whose process is gone.

        Raises:
            FacemtlError: naming the writer, when a live process holds it.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = _open_locked(self.path)
        stale = _read(handle)
        if stale and stale.get("pid") != os.getpid():
            print(f"facemtl: note: {self.folder}: taking over the lock of {_describe(stale)}, "
                  "which ended without releasing it", file=sys.stderr, flush=True)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(_me()) + "\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Remove the lock file, then let go (in that order: see :func:`_open_locked`)."""
        if self._handle is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._handle.close()  # closing drops the flock
        self._handle = None

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()


def check_free(folder: str | Path) -> None:
    """Raise at once if a live process writes ``folder``; takes nothing.

    Lets a second ``facemtl train`` fail before it spends minutes loading data.
    """
    try:  # r+: never creates the file; writable, as NFS's emulated flock wants
        handle = open(Path(folder) / LOCK_NAME, "r+", encoding="utf-8")  # noqa: SIM115
    except (FileNotFoundError, NotADirectoryError):
        return
    with handle:
        if not _try_flock(handle):
            raise _busy(Path(folder), handle)


@contextlib.contextmanager
def hold(folder: str | Path, enabled: bool = True) -> Iterator[None]:
    """:class:`RunLock` on ``folder`` for the ``with`` block; ``enabled=False`` (ranks > 0) takes none."""
    if not enabled:
        yield
        return
    with RunLock(folder):
        yield
