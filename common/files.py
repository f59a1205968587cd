"""Writing files so that a crash, Ctrl-C, kill -9 or a full disk never leaves half a file where a
good one was: every writer in ganparity goes through atomic_write. And one lock per directory, so
that one run directory has one writer (DirLock).

A failed write (ENOSPC, EACCES, a folder where the file should go) is a one-line GanparityError
naming the file and the reason; the file that was there before is left as it was.

The output-path rule, the same for every command that writes (the second half of this module):

    check_output_path   before any work: the path resolved; never `.`, the current folder or one
                        above it, the home folder or one above it, the filesystem root; never an
                        existing device, FIFO or socket; a file where a folder goes (or the other
                        way round) refused; the folder that will be written must be writable (a
                        probe file, since root passes every permission check); with a manifest
                        (PORT.md...), a folder that holds anything else is never replaced
    output_lock         one writer per target: a flock on `.NAME.lock` beside it, dropped by the
                        kernel when its holder dies (kill -9 included); a second writer is refused
    temp_file/temp_dir  temporaries beside the target, named `.NAME.<pid>.<random>.tmp`, so that
    clean_stale         the next run removes the ones whose process is gone, and says so
    swap_into_place     a finished temp folder becomes the target: an atomic exchange
                        (renameat2), the old result removed only once the new one is in place
    writing / replacing_folder   all of the above, as one `with` for a command

Each refusal is one GanparityError line naming the path and what to do instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fnmatch
import functools
import json
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
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
    special = _special(path)
    if special:
        raise GanparityError(f"cannot write {str(path)!r}: it is {special}, not a regular file; writing would "
                             "replace it")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        clean_stale(path)
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=_temp_prefix(path), suffix=TEMP_SUFFIX)
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


RUN_DIR_HINT = "one run directory has one writer; wait for it to end, or pass another --out"


class DirLock:
    """One writer per directory: an exclusive fcntl.flock on a lock file inside it.

    The kernel drops a flock when its process ends, kill -9 and crashes included, so a dead run
    never leaves its directory stuck: the next writer takes the lock over. The file holds the
    holder's pid, host and start time, for the message another writer gets: '<what> is in use
    by <holder>: <hint>'."""

    def __init__(self, path: str | os.PathLike, what: str, hint: str = RUN_DIR_HINT):
        self.path, self.what, self.hint, self.fd = Path(path), what, hint, None

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
                    holder = self._holder(fd)
                    os.close(fd)
                    raise GanparityError(f"{self.what} is in use by {holder}: {self.hint}") from None
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

    @staticmethod
    def _holder(fd: int) -> str:
        """The holder's line. It writes it just after it takes the lock, so a writer that comes in
        between reads an empty file: wait for the line a little (0.5 s at most)."""
        for _ in range(50):
            text = os.pread(fd, 200, 0).decode(errors="replace").strip()
            if text:
                return text
            time.sleep(0.01)
        return "another process"

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


# -- the output-path rule: one for every command that writes ------------------------------------------

TEMP_SUFFIX = ".tmp"
_SPECIAL = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
_PROBE = ".ganparity-probe-"
_RENAME_EXCHANGE = 2  # renameat2 flag (Linux 3.15+)
_AT_FDCWD = -100
MAX_NAMED = 3  # entries a refusal names before "and N more"


def _warn(msg: str) -> None:
    print(f"ganparity: {msg}", file=sys.stderr, flush=True)


def _special(path: str | os.PathLike) -> str | None:
    """What an existing path that is neither a regular file nor a folder is ('a named pipe (FIFO)',
    'a character device', ...); None for anything else, a missing path included."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return next((what for test, what in _SPECIAL if test(mode)), None)


def _label(what: str, text: str) -> str:
    return f"{what} {text!r}" if what else repr(text)


def _shown_path(path: Path) -> str:
    """A path as the user would write it: relative to the current folder when it is inside it."""
    try:
        rel = os.path.relpath(path)
    except (OSError, ValueError):
        return str(path)
    return rel if not rel.startswith("..") else str(path)


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


def resolve_output(path: str | os.PathLike) -> Path:
    """The absolute path an output will have: '~' expanded, '..' and symbolic links resolved."""
    try:
        return Path(os.path.expanduser(os.fspath(path))).resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise GanparityError(f"{str(path)!r} cannot be resolved ({e})") from None


def protected(target: Path) -> str | None:
    """Why a folder may never be an output folder, or None: the filesystem root, the current folder
    or one above it, the home folder or one above it. (A command that replaces its output folder,
    or fills it, must never be pointed at a folder that holds the user's work.)"""
    target = Path(target)
    if target == Path(target.anchor):
        return "the filesystem root"
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the current folder was deleted
        cwd = None
    try:
        home: Path | None = Path.home().resolve()
    except (OSError, RuntimeError, KeyError):
        home = None
    if cwd is not None and target == cwd:
        return "the current folder"
    if home is not None and target == home:
        return "the home folder"
    if cwd is not None and target in cwd.parents:
        return "a folder above the current one"
    if home is not None and target in home.parents:
        return "a folder above the home folder"
    return None


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def unwritable(folder: Path) -> str | None:
    """Why no file can be created in `folder` ('Permission denied', 'Read-only file system'), or
    None. A real probe file, created and removed: os.access says yes to root on a chmod 0o555
    folder and knows nothing of a read-only mount."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=_PROBE)
    except OSError as e:
        return reason(e)
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return None


def _more(names: list[str]) -> str:
    return f" (and {len(names) - 1} more)" if len(names) > 1 else ""


def _ours(name: str) -> bool:
    """ganparity's own short-lived entries: temporaries, locks, probes (never the user's work)."""
    return (name.startswith(_PROBE) or (name.startswith(".") and name.endswith(".lock"))
            or re.fullmatch(r"\..+\.\d+\.[A-Za-z0-9_]+\.(tmp|link)", name) is not None)


def folder_entries(folder: Path) -> list[str]:
    """The names in a folder, sorted, without ganparity's own temporaries and lock files."""
    return sorted(n for n in os.listdir(folder) if not _ours(n))


def check_folder_content(folder: Path, *, label: str, what: str, manifest: str, owned: Iterable[str] = (),
                         force: bool = False, update: bool = False) -> None:
    """The --force rule for an existing output folder: an empty one is fine; one that holds
    anything without `manifest` (the file a previous run of the same command always writes:
    PORT.md, run.json...) is never touched. With the manifest: update=True lets the command
    rewrite its own files in place; else it is replaced only with force=True, and only if every
    entry is the manifest or matches a pattern of `owned` (fnmatch: 'model.py', '*.png',
    '__pycache__'), so that a file the user added there is never deleted."""
    names = folder_entries(folder)
    if not names:
        return
    if manifest not in names or not (folder / manifest).is_file():
        raise GanparityError(f"{label} holds {names[0]!r}{_more(names)} and no {manifest}, so it is not the output "
                             f"of an earlier run, and ganparity replaces nothing else: give a new or empty folder")
    if update:
        return
    if not force:
        raise GanparityError(f"{label} holds an earlier result ({manifest}): pass --force to replace it, or give "
                             f"another {what or 'folder'}")
    patterns = (manifest, *owned)
    foreign = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if foreign:
        raise GanparityError(f"{label} holds {foreign[0]!r}{_more(foreign)}, which no earlier run wrote: --force "
                             f"replaces only an earlier result ({', '.join(patterns)}); move it away, or give "
                             f"another {what or 'folder'}")


def json_with(*keys: str) -> Callable[[Path], bool]:
    """A test for check_own_files: a JSON object holding `keys` (or, given none, any JSON list)."""

    def test(path: Path) -> bool:
        try:
            obj = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        return all(k in obj for k in keys) if keys and isinstance(obj, dict) else (not keys and isinstance(obj, list))

    return test


def text_starting(prefix: str) -> Callable[[Path], bool]:
    """A test for check_own_files: a text file whose first bytes are `prefix` ('# Step cost')."""

    def test(path: Path) -> bool:
        try:
            with open(path, "rb") as f:
                return f.read(len(prefix.encode())) == prefix.encode()
        except OSError:
            return False

    return test


def check_own_files(folder: str | os.PathLike, files: dict[str, Callable[[Path], bool]], *, label: str,
                    command: str, instead: str = "give another --out") -> None:
    """For a command that writes a few named files into a folder that may hold other things (bench's
    STEM.json, report's report.md): each of `files` already there must pass its test (a file this
    command wrote earlier, which it rewrites); anything else of that name is the user's, and is
    never overwritten: one line names it."""
    folder = Path(folder)
    for name, ours in files.items():
        path = folder / name
        if os.path.lexists(path) and not (path.is_file() and ours(path)):
            raise GanparityError(f"{label} holds {name!r}, which {command} did not write, and a command never "
                                 f"overwrites what it did not write: {instead}")


def check_output_path(path: str | os.PathLike | None, *, what: str = "--out", kind: str = "file",
                      manifest: str | None = None, owned: Iterable[str] = (), force: bool = False,
                      update: bool = False) -> Path:
    """The output-path rule, before any work starts. Returns the resolved path, or raises one
    GanparityError line that names the path (as `what 'path'`, e.g. "--out 'x'") and what to do.

    kind='file': a file that the command writes whole (atomic_write: a temp file beside it, then
    a rename). Refused: an existing folder; an existing device, FIFO or socket (a rename would
    replace /dev/null or the pipe a reader waits on).
    kind='dir': a folder the command writes into, or replaces. Refused: the filesystem root, the
    current folder or one above it, the home folder or one above it, an existing file; and, given
    a manifest, an existing folder that fails check_folder_content (force, update, owned).
    Both: a file among the folders above it ('x' cannot be created: 'a' is a file), and a folder
    where nothing can be created: the target folder if it exists, else the nearest existing folder
    above it (and, for a folder replaced whole, the one that holds it), tested with a probe file.
    Nothing is created; the probe file is removed."""
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    text = "" if path is None else os.fspath(path)
    if not str(text).strip():
        raise GanparityError(f"{what + ': ' if what else ''}expected a {'file' if kind == 'file' else 'folder'} "
                             "name, got ''")
    label = _label(what, str(text))
    target = resolve_output(text)
    try:
        st: os.stat_result | None = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as e:
        raise GanparityError(f"{label} cannot be examined ({reason(e)})") from None
    special = next((w for test, w in _SPECIAL if test(st.st_mode)), None) if st is not None else None
    if kind == "dir":
        why = protected(target)
        if why:
            raise GanparityError(f"{label} is {why} ({target}): a command's output goes into a folder of its own; "
                                 f"give a new or empty folder, e.g. {what or '--out'} {os.path.join(text, 'out')}")
        if st is not None and not stat.S_ISDIR(st.st_mode):
            if special:
                raise GanparityError(f"{label} is {special}, expected a folder")
            raise GanparityError(f"{label} is a file, expected a folder (created if missing)")
    else:
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise GanparityError(f"{label} is a folder, expected a file name")
        if special:
            raise GanparityError(f"{label} is {special}, not a regular file: writing would replace it; give the "
                                 "name of a file")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise GanparityError(f"{label} cannot be created: {_shown_path(parent)!r} is a file")
            break
    if kind == "dir" and st is not None:
        probes = [target] + ([target.parent] if manifest is not None and not update else [])
    else:
        probes = [_nearest_existing(target.parent)]
    for folder in probes:
        why = unwritable(folder)
        if why:
            raise GanparityError(f"{label}: cannot write in {str(folder)!r} ({why}); nothing was done")
    if kind == "dir" and st is not None and manifest is not None:
        check_folder_content(target, label=label, what=what, manifest=manifest, owned=owned, force=force,
                             update=update)
    return target


def output_lock(path: str | os.PathLike, *, what: str = "--out") -> DirLock:
    """The lock of one output (a file or a folder): an flock on `.NAME.lock` in the folder that holds
    it (beside the target, so that a folder replaced whole keeps its lock). Acquire it (or use it
    as a context manager) once that folder exists; a second writer of the same target gets one line:
    "--out 'x' is in use by pid N on HOST since HH:MM:SS: one output has one writer ..."."""
    target = resolve_output(path)
    return DirLock(target.parent / f".{target.name}.lock", _label(what, os.fspath(path)),
                   hint=f"one output has one writer at a time; wait for it to end, or give another {what or 'path'}")


def pid_alive(pid: int) -> bool:
    """Whether a process of this id runs here (a zombie, killed and not yet reaped, does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, and belongs to another user
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stale_temporaries(target: str | os.PathLike) -> list[tuple[Path, int]]:
    """The temporaries of `target` whose process is gone: `.NAME.<pid>.<random>.tmp` files and
    folders beside it (atomic_write, temp_dir, swap_into_place name them so), with their pid.
    A pid reused by an unrelated live process keeps its temporary a while longer: never the
    other way round, so nothing a live writer on this machine is writing is ever taken for stale.
    (A writer in another PID namespace or on another host sharing the folder is not seen here;
    the target's lock, held by every ganparity writer while it writes, is what keeps those apart.)"""
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(\d+)\.[A-Za-z0-9_]+\.(?:tmp|link)")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    out = []
    for name in sorted(names):
        m = pattern.fullmatch(name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            out.append((target.parent / name, int(m.group(1))))
    return out


def clean_stale(target: str | os.PathLike, log: Callable[[str], None] | None = None) -> list[Path]:
    """Remove the stale temporaries of `target` (stale_temporaries) and say so, one line each
    (`log`, default: 'ganparity: removed ...' on stderr). Returns what was removed."""
    log = _warn if log is None else log
    removed = []
    for path, pid in stale_temporaries(target):
        folder = path.is_dir() and not path.is_symlink()
        try:
            if folder:
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:  # another run cleaned it first
            continue
        except OSError as e:
            log(f"warning: cannot remove {str(path)!r}, a temporary {'folder' if folder else 'file'} left by "
                f"process {pid} ({reason(e)})")
            continue
        log(f"removed {str(path)!r}, a half-written temporary {'folder' if folder else 'file'} left by process "
            f"{pid}, which no longer runs")
        removed.append(path)
    return removed


def temp_dir(target: str | os.PathLike) -> Path:
    """A new empty folder beside `target` (never inside it), `.NAME.<pid>.<random>.tmp`, with the
    permissions a plain mkdir gives (mkdtemp's 0700 would end up on the result)."""
    target = Path(target)
    for _ in range(100):
        path = target.parent / f"{_temp_prefix(target)}{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            os.mkdir(path, 0o777)
        except FileExistsError:
            continue
        except OSError as e:
            raise GanparityError(f"cannot create a temporary folder in {str(target.parent)!r} ({reason(e)})") from None
        return path
    raise GanparityError(f"cannot create a temporary folder in {str(target.parent)!r}")


def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc before 2.28, musl
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux renameat2 RENAME_EXCHANGE). False where
    the kernel, the C library or the file system has no such call: the caller renames twice."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_into_place(tmp: Path, target: Path) -> None:
    """Make the finished folder `tmp` (beside `target`) the target. A target already there is
    exchanged with it atomically and removed only then; at no moment is the target half old, half
    new. A kill between the exchange and the removal leaves the old result as a stale temporary,
    which the next run removes (clean_stale)."""
    tmp, target = Path(tmp), Path(target)
    try:
        if not os.path.lexists(target):
            os.rename(tmp, target)
            _fsync_dir(target.parent)
            return
        if exchange(tmp, target):
            old = tmp
        else:
            old = target.parent / f"{_temp_prefix(target)}{secrets.token_hex(4)}{TEMP_SUFFIX}"
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except OSError:
                os.rename(old, target)
                raise
    except OSError as e:
        raise GanparityError(f"cannot move the result into {str(target)!r} ({reason(e)}); what was there is "
                             "unchanged") from None
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def _make_folders(folder: Path, label: str) -> list[Path]:
    """Create `folder` and the folders above it; return the ones created, deepest first."""
    made = []
    p = folder
    while not os.path.lexists(p) and p != p.parent:
        made.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GanparityError(f"{label}: cannot create {str(folder)!r} ({reason(e)}); nothing was done") from None
    return made


def _remove_if_empty(folders: list[Path]) -> None:
    for f in folders:
        try:
            f.rmdir()
        except OSError:
            return


@contextmanager
def writing(path: str | os.PathLike, *, what: str = "--out", kind: str = "file", manifest: str | None = None,
            owned: Iterable[str] = (), force: bool = False, update: bool = True,
            log: Callable[[str], None] | None = None) -> Iterator[Path]:
    """For a command that writes `path` in place: a file through atomic_write (kind='file'), or its
    own files into a folder (kind='dir'; with a manifest, update=True by default: an earlier
    result of the same command is rewritten, a folder of anything else refused).

        with writing(a.out, what="--out") as out:     # checked, locked, stale temporaries gone
            ...the work...
            write_npy(out, y)

    check_output_path first; then the folders above the target (and a kind='dir' target itself)
    are created, the target's lock is taken, stale temporaries of killed runs are removed (one
    line each) and the path is checked again under the lock. On the way out the lock is released,
    and folders this call created are removed again if nothing was written into them."""
    shown = os.fspath(path)
    target = check_output_path(shown, what=what, kind=kind, manifest=manifest, owned=owned, force=force,
                               update=update)
    label = _label(what, shown)
    made = _make_folders(target if kind == "dir" else target.parent, label)
    try:
        with output_lock(shown, what=what):
            clean_stale(target, log)
            check_output_path(shown, what=what, kind=kind, manifest=manifest, owned=owned, force=force,
                              update=update)
            yield target
    finally:
        _remove_if_empty(made)


@contextmanager
def replacing_folder(path: str | os.PathLike, *, what: str = "--out", manifest: str, owned: Iterable[str] = (),
                     force: bool = False, log: Callable[[str], None] | None = None) -> Iterator[Path]:
    """For a command whose output is a whole folder, written at once (`port --out`):

        with replacing_folder(a.out, manifest="PORT.md", owned=PORT_FILES, force=a.force) as tmp:
            ...write every file into tmp, PORT.md last...

    check_output_path (kind='dir', the manifest and --force rule) before any work; the target's
    lock held throughout (a second writer is refused in one line); stale temporaries of killed
    runs removed, saying so; a fresh temp folder beside the target (never inside it), yielded.
    When the block ends without an error, the folder must hold the manifest; the target is checked
    again (a file the user dropped there meanwhile is never deleted) and swapped in atomically
    (swap_into_place). On an error the temp folder goes and the target is untouched."""
    shown = os.fspath(path)
    target = check_output_path(shown, what=what, kind="dir", manifest=manifest, owned=owned, force=force)
    label = _label(what, shown)
    made = _make_folders(target.parent, label)
    tmp = None
    try:
        with output_lock(shown, what=what):
            clean_stale(target, log)
            check_output_path(shown, what=what, kind="dir", manifest=manifest, owned=owned, force=force)
            tmp = temp_dir(target)
            yield tmp
            if not (tmp / manifest).is_file():
                raise GanparityError(f"{label}: the result is incomplete (no {manifest} was written); nothing was "
                                     "replaced")
            if os.path.isdir(target):
                check_folder_content(target, label=label, what=what, manifest=manifest, owned=owned, force=force)
            swap_into_place(tmp, target)
            tmp = None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        _remove_if_empty(made)


TRIM_ABOVE = 2**30  # bytes resident (torch and MXNet loaded: ~600 MiB): below it, nothing worth handing back
COLLECT_ABOVE = 2 * 2**30  # and above this, a full garbage collection first (~0.15 s with both frameworks loaded)


_FROZEN: list[bool] = []


def release_memory() -> None:
    """Hand freed memory back to the system after a phase that held a large model's every layer:
    glibc keeps freed heap pages (its mmap threshold rises with large frees), so a process's peak
    would otherwise be the sum of its phases'. Only where the process holds more than TRIM_ABOVE,
    and a full garbage collection only above COLLECT_ABOVE: with torch and MXNet loaded one costs
    ~0.15 s, which a small model's proof, calling this between its ~30 phases, would mostly spend
    here. A no-op where there is no glibc."""
    import gc

    rss = _resident_bytes()
    if rss < TRIM_ABOVE:
        return
    if rss >= COLLECT_ABOVE:
        gc.collect()
        if not _FROZEN:  # what is alive at the first collection (both frameworks' modules, the models)
            gc.freeze()  # stays: later collections skip it (0.2 s each on resnet50's proof, 4 s in all)
            _FROZEN.append(True)
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _resident_bytes() -> int:
    """This process's resident set now (Linux /proc; elsewhere assumed large, so memory is released)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return COLLECT_ABOVE


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return libc if hasattr(libc, "malloc_trim") else None
    except (OSError, AttributeError, TypeError):
        return None
