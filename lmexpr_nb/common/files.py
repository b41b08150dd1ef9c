"""Small file helpers: every cache, checkpoint, table and report is written atomically.

`atomic_path(path)` yields a temporary file beside `path` and renames it onto `path` only when
the block succeeds, so a crash, Ctrl-C or `kill -9` leaves the old file (or none), never a torn
one. Details a user would otherwise trip over:

- Temporary names are `.<name>.<pid>-<host>.<random>.tmp`. Before each write, temporaries of
  the same target that a dead writer left behind (kill -9, power cut) are removed: those whose
  pid no longer runs on this host, and those of another host or of the older naming (no pid)
  untouched for STALE_SECONDS. A live writer's temporary is never touched.
- The file gets the permissions a plain `open(path, "w")` would give it: an existing target
  keeps its mode, a new one gets 0o666 minus the umask (mkstemp's 0o600 is not kept).

`writable_dir` checks an output folder before any work starts; `exclusive_lock` keeps a
second writer out of a folder (fcntl, released when the process ends, however it ends);
`not_regular` says why a path is no file to read (a FIFO would block its reader forever).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import socket
import stat
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

try:
    import fcntl
except ImportError:                         # not POSIX (Windows): exclusive_lock does nothing
    fcntl = None

STALE_SECONDS = 3600
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_UMASK_LOCK = threading.Lock()


class OutputError(ValueError):
    """An output folder that cannot be written; the message is one line naming it."""


class BusyError(ValueError):
    """Another process is writing into the same folder."""


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    A crash or Ctrl-C mid-write leaves the old file (or none) in place, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-{_HOST}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _new_file_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        pass
    with _UMASK_LOCK:                       # the only way to read the umask is to set it
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                 # someone else's live process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of `path` that dead writers left beside it; returns what went."""
    path = Path(path)
    prefix = f".{path.name}."
    own = re.compile(r"^(\d+)-([0-9a-f]{6})\.[A-Za-z0-9_]+$")
    old = re.compile(r"^[A-Za-z0-9_]+$")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        if not (e.name.startswith(prefix) and e.name.endswith(".tmp")):
            continue
        middle = e.name[len(prefix):-len(".tmp")]
        m = own.match(middle)
        try:
            if m and m.group(2) == _HOST:
                stale = not _pid_alive(int(m.group(1)))
            elif m or old.match(middle):
                stale = now - e.stat(follow_symlinks=False).st_mtime > STALE_SECONDS
            else:
                continue
            if stale and e.is_file(follow_symlinks=False):
                os.unlink(e.path)
                removed.append(Path(e.path))
        except OSError:
            continue
    return removed


def write_json(path: str | os.PathLike, obj) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --------------------------------------------------------------------------------------
# Output folders

def _why_not_writable(p: Path, e: OSError) -> str:
    if isinstance(e, (NotADirectoryError, FileExistsError)) or e.errno in (errno.ENOTDIR, errno.EEXIST):
        for q in [p, *p.parents]:
            if q.exists() and not q.is_dir():
                return f"{q} is a file"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if e.errno == errno.EROFS:
        return "read-only file system"
    if e.errno == errno.ENOSPC:
        return "no space left on the device"
    return e.strerror or type(e).__name__


def writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create `path` (with its parents) and check that a file can be written there, before any
    work starts. OutputError (a ValueError) with one line naming the folder otherwise."""
    p = Path(path).expanduser()
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{what} {p} is not a writable folder: {_why_not_writable(p, e)}") from None
    return p


@contextmanager
def exclusive_lock(path: str | os.PathLike, what: str = "writer", on_busy=None):
    """Hold an exclusive fcntl lock on `path` for the block. If another process holds it, raise
    BusyError at once (one line naming the folder and the holder's pid); with `on_busy`, call
    on_busy(holder's pid) once and wait for the holder instead. The lock goes with the process,
    however it ends, so a killed writer never leaves the folder locked."""
    if fcntl is None:                       # not POSIX: no lock
        yield
        return
    path = Path(path)
    f = open(path, "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            if on_busy is None:
                raise BusyError(f"another {what} (pid {holder}) is writing into {path.parent}: wait for it to "
                                f"finish, or choose another --out") from None
            on_busy(holder)
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    finally:
        f.close()


def not_regular(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be read as a file, in a few words (None: a regular file, or a link to
    one). Opening a FIFO would wait forever for a writer, so readers ask this first."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken link" if os.path.islink(path) else "file not found"
    except OSError as e:
        return "a link loop" if e.errno == errno.ELOOP else f"cannot be read ({e.strerror})"
    if stat.S_ISDIR(mode):
        return "a folder where a file was expected"
    return None if stat.S_ISREG(mode) else "not a regular file (a FIFO, socket or device): not read"
