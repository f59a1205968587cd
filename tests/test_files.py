"""The output-path rule (common/files.py), on real folders, FIFOs, sockets, devices and processes:
nothing of the user's is replaced or deleted, two writers never overlap, a kill -9 leaves nothing
that the next run does not clean up (and say so).

Tests run as root in CI, where chmod 0o555 does not stop a write: a read-only folder is then
simulated where the probe creates its file (tempfile.mkstemp), so the refusal's code path is the
same one a user meets."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ganparity.common import files
from ganparity.common.errors import GanparityError
from ganparity.common.files import (
    atomic_write,
    check_folder_content,
    check_output_path,
    check_own_files,
    clean_stale,
    json_with,
    output_lock,
    replacing_folder,
    stale_temporaries,
    swap_into_place,
    text_starting,
    write_text,
    writing,
)
from ganparity.common.readers import check_finite, non_finite

ROOT = Path(__file__).resolve().parents[1]
PORT_FILES = ("model.py", "weights.npz", "__pycache__")


def refused(match: str, fn, *args, **kwargs) -> str:
    with pytest.raises(GanparityError) as e:
        fn(*args, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg and match in msg, msg
    return msg


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's project folder as the current folder, with a home folder of its own."""
    home = tmp_path / "home"
    proj = home / "code" / "myproject"
    proj.mkdir(parents=True)
    (proj / "gm.py").write_text("def mlp(): ...\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(proj)
    return proj


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def simulate_read_only(monkeypatch, folder: Path) -> None:
    """Make `folder` refuse new files as a read-only one does, also for root (see the docstring)."""
    folder.chmod(0o555)
    if files.unwritable(folder) is not None:
        return  # not root: the real permission does it
    real = files.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == folder.resolve():
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(files.tempfile, "mkstemp", mkstemp)


# -- the paths that are never an output folder -----------------------------------------------------


@pytest.mark.parametrize("path, why", [(".", "is the current folder"), ("", "expected a folder name"),
                                       ("..", "is a folder above the current one"), ("~", "is the home folder"),
                                       ("../..", "is the home folder"),
                                       ("/", "is the filesystem root"), ("./", "is the current folder"),
                                       ("sub/..", "is the current folder")])
def test_the_current_folder_its_parents_home_and_root_are_refused(project, path, why):
    (project / "sub").mkdir()
    before = sorted(os.listdir(project))
    msg = refused(why, check_output_path, path, kind="dir")
    if path:
        assert msg.startswith(f"--out {path!r}")
    refused(why, check_output_path, path, kind="dir", manifest="PORT.md", force=True)
    assert sorted(os.listdir(project)) == before


def test_the_current_folder_by_its_absolute_name_and_the_port_bug(project):
    """`port --out . --force` once deleted the whole project: the temp folder was made in
    out.parent, which for '.' is the folder itself, then rmtree(out). Now: refused, nothing touched."""
    refused("is the current folder", check_output_path, str(project), kind="dir")
    with pytest.raises(GanparityError, match="is the current folder"):
        with replacing_folder(".", manifest="PORT.md", force=True) as tmp:
            (tmp / "PORT.md").write_text("x")
    assert sorted(os.listdir(project)) == ["gm.py"] and (project / "gm.py").read_text() == "def mlp(): ...\n"


def test_a_folder_below_the_current_one_is_fine(project):
    assert check_output_path("out", kind="dir") == project / "out"
    assert check_output_path("out/a/b", kind="dir") == project / "out" / "a" / "b"
    assert check_output_path("y.npy") == project / "y.npy"
    assert not (project / "out").exists()  # checking creates nothing


# -- what is in the way --------------------------------------------------------------------------


def test_non_regular_files_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkfifo("fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("sock")
    os.symlink("/dev/null", "to_null")
    try:
        refused("'fifo' is a named pipe (FIFO), not a regular file", check_output_path, "fifo")
        refused("is a named pipe (FIFO), expected a folder", check_output_path, "fifo", kind="dir")
        refused("'sock' is a socket", check_output_path, "sock")
        refused("'/dev/null' is a character device", check_output_path, "/dev/null")
        refused("'/dev/full' is a character device", check_output_path, "/dev/full")
        refused("'to_null' is a character device", check_output_path, "to_null")
        # and the writer itself never renames over one, whoever calls it
        refused("is a named pipe (FIFO), not a regular file", write_text, "fifo", "x")
    finally:
        sock.close()
    assert Path("fifo").is_fifo() and Path("to_null").is_symlink() and Path("/dev/null").is_char_device()


def test_files_and_folders_in_the_way(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("afile").write_text("x")
    Path("adir").mkdir()
    refused("'afile' is a file, expected a folder", check_output_path, "afile", kind="dir")
    refused("'adir' is a folder, expected a file name", check_output_path, "adir")
    refused("'afile/run' cannot be created: 'afile' is a file", check_output_path, "afile/run", kind="dir")
    refused("'afile/y.npy' cannot be created: 'afile' is a file", check_output_path, "afile/y.npy")
    assert Path("afile").read_text() == "x"


def test_a_read_only_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    (ro / "old").mkdir(parents=True)
    simulate_read_only(monkeypatch, ro)
    try:
        refused("cannot write in", check_output_path, ro / "y.npy")
        msg = refused("Permission denied", check_output_path, ro / "new" / "deeper", kind="dir")
        assert f"{str(ro)!r}" in msg and "nothing was done" in msg
        refused("Permission denied", check_output_path, ro, kind="dir")  # writing into it
        work = []
        with pytest.raises(GanparityError, match="Permission denied"):
            with writing(ro / "y.npy"):
                work.append("ran")
        assert work == [] and sorted(os.listdir(ro)) == ["old"]
    finally:
        ro.chmod(0o755)


# -- --force replaces only an earlier result ----------------------------------------------------------


def test_force_replaces_only_what_an_earlier_run_wrote(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert check_output_path(out, kind="dir", manifest="PORT.md") == out  # empty: fine
    (out / "notes.txt").write_text("mine")
    refused("holds 'notes.txt' and no PORT.md", check_output_path, out, kind="dir", manifest="PORT.md", force=True)
    (out / "notes.txt").unlink()
    for name in ("PORT.md", "model.py", "weights.npz"):
        (out / name).write_text("earlier")
    (out / "__pycache__").mkdir()
    refused("holds an earlier result (PORT.md): pass --force", check_output_path, out, kind="dir", manifest="PORT.md")
    assert check_output_path(out, kind="dir", manifest="PORT.md", owned=PORT_FILES, force=True) == out
    (out / "my_notes.md").write_text("mine")
    refused("holds 'my_notes.md', which no earlier run wrote", check_output_path, out, kind="dir",
            manifest="PORT.md", owned=PORT_FILES, force=True)
    # update: a command that rewrites its own files in place (finetune train, reorganize)
    (out / "my_notes.md").unlink()
    check_folder_content(out, label="--out 'out'", what="--out", manifest="PORT.md", update=True)


def test_replacing_folder_swaps_a_whole_result_in(tmp_path):
    out = tmp_path / "port"
    with replacing_folder(out, manifest="PORT.md") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f".port.{os.getpid()}.")
        (tmp / "model.py").write_text("one")
        (tmp / "PORT.md").write_text("one")
    assert sorted(os.listdir(out)) == ["PORT.md", "model.py"] and oct(out.stat().st_mode & 0o777) != "0o700"
    with pytest.raises(GanparityError, match="pass --force"):
        with replacing_folder(out, manifest="PORT.md") as tmp:
            (tmp / "PORT.md").write_text("two")
    with pytest.raises(ValueError, match="the work failed"):  # an error inside: the old result stays
        with replacing_folder(out, manifest="PORT.md", owned=PORT_FILES, force=True) as tmp:
            (tmp / "PORT.md").write_text("half")
            raise ValueError("the work failed")
    with pytest.raises(GanparityError, match="no PORT.md was written"):
        with replacing_folder(out, manifest="PORT.md", owned=PORT_FILES, force=True):
            pass
    with replacing_folder(out, manifest="PORT.md", owned=PORT_FILES, force=True) as tmp:
        (tmp / "PORT.md").write_text("two")
    assert sorted(os.listdir(out)) == ["PORT.md"] and (out / "PORT.md").read_text() == "two"
    assert sorted(os.listdir(tmp_path)) == ["port"]  # no temporaries, no lock file left


def test_a_file_dropped_in_during_the_work_is_never_deleted(tmp_path):
    out = tmp_path / "port"
    out.mkdir()
    (out / "PORT.md").write_text("earlier")
    with pytest.raises(GanparityError, match="holds 'added.txt', which no earlier run wrote"):
        with replacing_folder(out, manifest="PORT.md", force=True) as tmp:
            (out / "added.txt").write_text("the user's")
            (tmp / "PORT.md").write_text("new")
    assert sorted(os.listdir(out)) == ["PORT.md", "added.txt"] and (out / "PORT.md").read_text() == "earlier"


def test_the_swap_without_renameat2(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "exchange", lambda a, b: False)
    target, tmp = tmp_path / "out", tmp_path / ".out.1.x.tmp"
    target.mkdir()
    (target / "PORT.md").write_text("old")
    tmp.mkdir()
    (tmp / "PORT.md").write_text("new")
    swap_into_place(tmp, target)
    assert (target / "PORT.md").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["out"]


def test_own_files_of_a_shared_folder(tmp_path):
    (tmp_path / "results.json").write_text('{"metadata": {}, "rows": []}')
    (tmp_path / "results.md").write_text("# Step cost\n")
    owned = {"results.json": json_with("metadata", "rows"), "results.md": text_starting("# Step cost")}
    check_own_files(tmp_path, owned, label="--out 'x'", command="ganparity bench")
    (tmp_path / "results.md").write_text("my own notes\n")
    refused("holds 'results.md', which ganparity bench did not write", check_own_files, tmp_path, owned,
            label="--out 'x'", command="ganparity bench")


# -- one writer per output -------------------------------------------------------------------------


def _script(body: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(body)]


def _env() -> dict:
    return os.environ | {"PYTHONPATH": str(ROOT)}


def _wait_for(proc: subprocess.Popen, text: str) -> str:
    line = proc.stdout.readline()
    assert text in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    return line


def test_a_second_writer_of_the_same_output_is_refused_in_one_line(tmp_path):
    out = tmp_path / "y.npy"
    holder = subprocess.Popen(_script(f"""
        import sys
        from ganparity.common.files import writing
        with writing({str(out)!r}):
            print("holding", flush=True)
            sys.stdin.read()
        """), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        _wait_for(holder, "holding")
        msg = refused(f"is in use by pid {holder.pid}", lambda: writing(out).__enter__())
        assert msg.startswith(f"--out {str(out)!r}") and "one output has one writer" in msg
    finally:
        holder.stdin.close()
        assert holder.wait(30) == 0
        holder.stdout.close()
        holder.stderr.close()
    with writing(out) as target:  # the holder is gone: the next writer goes ahead
        np.save(target, np.zeros(2))
    assert sorted(os.listdir(tmp_path)) == ["y.npy"]


def test_two_concurrent_folder_writers_never_lose_a_result(tmp_path):
    """The two-ports case: both start on an empty --out at once. One writes its result; the other
    is refused in one line (in use, or: holds an earlier result), and writes nothing."""
    out = tmp_path / "port"
    body = """
        import sys, time
        from ganparity.common.files import replacing_folder
        from ganparity.common.errors import GanparityError
        try:
            with replacing_folder({out!r}, manifest="PORT.md") as tmp:
                time.sleep(1.0)
                (tmp / "PORT.md").write_text({who!r})
        except GanparityError as e:
            print("refused:", e)
            sys.exit(2)
        print("wrote")
        """
    procs = [subprocess.Popen(_script(body.format(out=str(out), who=who)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env()) for who in ("a", "b")]
    results = [(p.wait(60), p.communicate()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    winner = "ab"[[code for code, _ in results].index(0)]
    loser_out = next(out_err[0] for code, out_err in results if code == 2)
    assert loser_out.count("\n") == 1 and ("is in use by pid" in loser_out or "holds an earlier result" in loser_out)
    assert (out / "PORT.md").read_text() == winner and sorted(os.listdir(tmp_path)) == ["port"]


def test_a_writer_that_comes_between_the_lock_and_the_holder_line_still_names_the_holder(tmp_path):
    """The race CI met: the holder has the flock but has not yet written its pid line; the refused
    writer read an empty file and said 'in use by another process'. It now waits for the line."""
    import fcntl
    import threading

    path = tmp_path / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # locked, the holder line not written yet
    later = threading.Timer(0.1, lambda: os.write(fd, b"pid 4242 on host since 12:00:00\n"))
    later.start()
    try:
        with pytest.raises(GanparityError, match="is in use by pid 4242 on host"):
            files.DirLock(path, "--out 'x'").acquire()
    finally:
        later.join()
        os.close(fd)


# -- kill -9: the next run cleans up, and says so ---------------------------------------------------------


def test_kill_9_mid_write_leaves_the_output_untouched_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "port"
    out.mkdir()
    (out / "PORT.md").write_text("the earlier result")
    proc = subprocess.Popen(_script(f"""
        import time
        from ganparity.common.files import replacing_folder
        with replacing_folder({str(out)!r}, manifest="PORT.md", force=True) as tmp:
            (tmp / "model.py").write_text("half")
            print(tmp, flush=True)
            time.sleep(600)
        """), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        tmp = Path(proc.stdout.readline().strip())
        assert tmp.name.startswith(f".port.{proc.pid}.") and (tmp / "model.py").is_file()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert (out / "PORT.md").read_text() == "the earlier result" and tmp.is_dir()
    assert stale_temporaries(out) == [(tmp, proc.pid)]
    said = []
    with replacing_folder(out, manifest="PORT.md", force=True, log=said.append) as new:
        (new / "PORT.md").write_text("the new result")
    assert len(said) == 1 and f"removed {str(tmp)!r}" in said[0] and f"left by process {proc.pid}" in said[0]
    assert "no longer runs" in said[0]
    assert not tmp.exists() and (out / "PORT.md").read_text() == "the new result"
    assert sorted(os.listdir(tmp_path)) == ["port"]  # the lock the dead process held is not stuck either


def test_a_live_writers_temporaries_are_never_taken_for_stale(tmp_path):
    target = tmp_path / "y.npy"
    mine = tmp_path / f".y.npy.{os.getpid()}.abc.tmp"
    mine.write_text("being written")
    parent = tmp_path / f".y.npy.{os.getppid()}.abc.tmp"  # pytest's parent process: alive
    parent.write_text("being written")
    dead = tmp_path / f".y.npy.{dead_pid()}.q1w2e3.tmp"
    dead.write_text("half")
    other = tmp_path / f".z.npy.{dead_pid()}.abc.tmp"  # another target's
    other.write_text("half")
    said = []
    assert clean_stale(target, said.append) == [dead]
    assert mine.exists() and parent.exists() and other.exists() and not dead.exists() and len(said) == 1


def test_atomic_write_cleans_the_half_file_of_a_killed_writer(tmp_path, capsys):
    dead = tmp_path / f".y.npy.{dead_pid()}.k3j4h5.tmp"
    dead.write_bytes(b"\x93NUMPY half")
    atomic_write(tmp_path / "y.npy", lambda f: np.save(f, np.ones(3)), stream=True)
    assert sorted(os.listdir(tmp_path)) == ["y.npy"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ganparity: removed") and "a half-written temporary file" in err[0]


def test_the_lock_of_a_killed_writer_is_not_stuck(tmp_path):
    out = tmp_path / "y.npy"
    proc = subprocess.Popen(_script(f"""
        import time
        from ganparity.common.files import output_lock
        with output_lock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(600)
        """), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        _wait_for(proc, "locked")
        refused(f"in use by pid {proc.pid}", output_lock(out).acquire)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    with output_lock(out):
        pass
    assert not list(tmp_path.iterdir())


# -- non-finite numbers --------------------------------------------------------------------------------


def test_non_finite_arrays_are_named():
    w = np.zeros((2, 3), np.float32)
    w[1, 2] = np.nan
    b = np.array([np.inf, 1.0, -np.inf, np.nan], np.float32)
    assert non_finite(np.arange(4)) is None and non_finite(np.ones(3)) is None
    assert non_finite(w) == "1 NaN of 6 values (the first at index (1, 2))"
    assert non_finite(b) == "1 NaN and 2 inf of 4 values (the first at index (0,))"
    msg = refused("weights 'w.npz' hold non-finite values, refused: G.0.weight has 1 NaN", check_finite,
                  {"G.0.weight": w, "G.0.bias": np.zeros(2), "D.0.bias": b}, "weights 'w.npz'")
    assert "D.0.bias has 1 NaN and 2 inf" in msg and "G.0.bias" not in msg
    refused("--input 'x.npy' holds non-finite values, refused: 1 NaN", check_finite, w, "--input 'x.npy'")


def test_writing_removes_the_folders_it_made_when_nothing_was_written(tmp_path):
    with pytest.raises(RuntimeError):
        with writing(tmp_path / "a" / "b" / "y.npy"):
            raise RuntimeError("bad input found during the work")
    with pytest.raises(RuntimeError):
        with writing(tmp_path / "c" / "run", kind="dir", manifest="run.json"):
            raise RuntimeError("bad input found during the work")
    assert not list(tmp_path.iterdir())
    started = time.monotonic()
    with writing(tmp_path / "d" / "y.npy") as target:
        np.save(target, np.zeros(1))
    assert (tmp_path / "d" / "y.npy").is_file() and time.monotonic() - started < 10
