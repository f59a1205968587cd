"""Writing files so that a crash, Ctrl-C, kill -9 or a full disk never leaves half a file where a
good one was: every writer in ganparity goes through atomic_write. And one lock per directory, so
that one run directory has one writer (DirLock).

A failed write (ENOSPC, EACCES, a folder where the file should go) is a one-line GanparityError
naming the file and the reason; the file that was there before is left as it was.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import GanparityError

try:  # POSIX; without it (Windows) DirLock only records the holder and does not exclude
    import fcntl
except ImportError:  # pragma: no cover - not on the machines ganparity runs on
    fcntl = None


def reason(e: OSError) -> str:
    """'No space left on device' rather than '[Errno 28] No space left on device: /x/.y.tmp'."""
    return e.strerror or errno.errorcode.get(e.errno or 0, "") or str(e) or type(e).__name__


def open_stream(fd: int, path: Path) -> BinaryIO:
    """The binary file a stream writer writes to (the temp file of `path`). Tests replace it with
    a writer that fails partway (ENOSPC), to prove that a full disk leaves the last good file intact."""
    return os.fdopen(fd, "wb")


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (a power cut must not bring the old name back); best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable, mode: int = 0o644, *, stream: bool = False,
                 before_replace: Callable[[Path], None] | None = None) -> Path:
    """Write `path` whole or not at all.

    write(tmp_path) (or, with stream=True, write(binary_file)) fills a temp file beside `path`;
    the temp file is flushed to disk, made readable by others (mkstemp makes files 0600),
    before_replace(tmp) is called (the checkpoint keeps its predecessor and records the new hash
    there), and only then is it renamed into place. On any failure the temp file goes, `path` is
    untouched, and an OSError becomes a one-line GanparityError."""
    path = Path(path)
    if path.is_dir():
        raise GanparityError(f"cannot write {str(path)!r}: it is a folder, expected a file name")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise GanparityError(f"cannot write {str(path)!r}: cannot create a file in {str(parent)!r} "
                             f"({reason(e)})") from None
    try:
        if stream:
            with open_stream(fd, path) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
        else:
            os.close(fd)
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if before_replace is not None:
            before_replace(Path(tmp))
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            kept = "the file there is unchanged" if path.exists() else "nothing was written"
            raise GanparityError(f"cannot write {str(path)!r}: {reason(e)}; {kept}") from e
        raise
    _fsync_dir(parent)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()), stream=True)


def write_json(path: str | os.PathLike, obj, **kwargs) -> Path:
    return write_text(path, json.dumps(obj, indent=1, **kwargs))


def write_npy(path: str | os.PathLike, array) -> Path:
    """np.save to exactly `path` (np.save itself would add '.npy' to a name without it)."""
    import numpy as np

    return atomic_write(path, lambda f: np.save(f, array, allow_pickle=False), stream=True)


def keep_copy(src: Path, dst: Path) -> None:
    """Make `dst` the same bytes as `src`, atomically: a hard link (no copy, no extra space) where
    the file system allows one, else a copy. `src` is not changed."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise GanparityError(f"cannot keep {str(src)!r} as {str(dst)!r}: {reason(e)}") from e


class DirLock:
    """One writer per directory: an exclusive fcntl.flock on a lock file inside it.

    The kernel drops a flock when its process ends, kill -9 and crashes included, so a dead run
    never leaves its directory stuck: the next writer takes the lock over. The file holds the
    holder's pid, host and start time, for the message another writer gets."""

    def __init__(self, path: str | os.PathLike, what: str):
        self.path, self.what, self.fd = Path(path), what, None

    def acquire(self) -> DirLock:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise GanparityError(f"cannot lock {self.what}: cannot create {str(self.path)!r} "
                                     f"({reason(e)})") from None
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                    os.close(fd)
                    raise GanparityError(f"{self.what} is in use by {holder}: one run directory has one "
                                         "writer; wait for it to end, or pass another --out") from None
            try:  # the holder may have removed the file between our open and our lock: lock the new one
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # still holding it: no one else can be using this file
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
