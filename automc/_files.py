"""Files that several processes share (one output folder, one study): written aside and renamed
into place, so no reader sees a partial or missing file; a lock for work done once; the
machine's cache folder (what automc keeps between experiments); and the machine's refusals (disk
full, read-only, permission denied, a vanished file) told apart from automc's own bugs."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, TypeVar

from automc.errors import StorageError, first_line

T = TypeVar("T")


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to a private temporary file next to ``path``, then rename it over ``path``."""
    return _write_atomic(path, text)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """``write_text_atomic`` for bytes."""
    return _write_atomic(path, data)


def _write_atomic(path: str | Path, content: str | bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with (os.fdopen(fd, "wb") if isinstance(content, bytes) else os.fdopen(fd, "w", newline="")) as fh:
            fh.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (``.lock`` inside it) among processes of this machine."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cache_root() -> Path:
    """The machine's automc cache: ``$AUTOMC_CACHE_DIR``, else ``$XDG_CACHE_HOME/automc``, else
    ``~/.cache/automc``."""
    if os.environ.get("AUTOMC_CACHE_DIR"):
        return Path(os.environ["AUTOMC_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "automc"


#: what the machine says when it refuses a write, and how automc says it (errno, then the text
#: SQLite and the libraries above it put in their own exceptions)
_FAULTS = (
    (errno.ENOSPC, "No space left on device", "no space left on the device", "free space there"),
    (errno.EDQUOT, "Disk quota exceeded", "the disk quota is exceeded", "free space there"),
    (None, "database or disk is full", "no space left on the device", "free space there"),
    (errno.EROFS, "Read-only file system", "the file system is read-only", "make it writable"),
    (None, "attempt to write a readonly database", "the file system is read-only", "make it writable"),
    (errno.EACCES, "Permission denied", "permission denied", "fix its permissions"),
    (errno.EPERM, "Operation not permitted", "permission denied", "fix its permissions"),
    (None, "unable to open database file", "the database file cannot be opened", "check the folder and its permissions"),
    (errno.ENOENT, None, "a file or folder vanished", "check that nothing else removes it"),
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and what libraries wrap (SQLAlchemy's ``orig``, Ray's ``cause``)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__, getattr(e, "orig", None), getattr(e, "cause", None)]


class Fault(NamedTuple):
    said: str  # what the machine refused, in words
    path: str  # the file, when the error names it
    fix: str   # what the user does about it


def storage_fault(exc: BaseException) -> Fault | None:
    """What the machine refused when ``exc`` is a refused file or database operation anywhere in
    its chain, else None (a bug or a user error: not the machine's)."""
    for e in _chain(exc):
        code = getattr(e, "errno", None) if isinstance(e, OSError) else None
        text = str(e)
        for fault_errno, phrase, said, fix in _FAULTS:
            if (code is not None and code == fault_errno) or (phrase is not None and phrase in text):
                return Fault(said, str(getattr(e, "filename", "") or ""), fix)
    return None


def check_writable(folder: str | Path, name: str) -> None:
    """Create ``folder`` and write a few bytes in it, or raise ``StorageError`` (exit code 2: found
    before any work) naming the setting ``name`` and the fix."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".automc-write-check-") as fh:
            fh.write(b"automc" * 512)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        fault = storage_fault(exc) or Fault(exc.strerror or str(exc), "", "fix it")
        raise StorageError(f"{name} {str(folder)!r}: {fault.said}; {fault.fix}, or choose another {name}",
                           exit_code=2) from None


def set_aside(path: str | Path) -> Path:
    """Move an unreadable file out of the way (``<name>.unreadable-<time>``), keeping it to look at."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    return aside


def read_or_set_aside(path: str | Path, read: Callable[[Path], T], what: str,
                      log: Callable[[str], None], then: str = "rebuilding it") -> T | None:
    """``read(path)``, or None when ``path`` is missing or cannot be read (truncated, corrupted):
    then it is set aside with a one-line notice, so the caller rebuilds it like any cache miss."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return read(path)
    except FileNotFoundError:  # another process set it aside meanwhile
        return None
    except Exception as exc:  # a truncated file raises whatever its reader raises: ValueError, EOFError, ...
        if storage_fault(exc) is not None:  # the machine refused (permission denied): not the file's fault
            raise
        aside = set_aside(path)
        log(f"{what}: {path} cannot be read ({first_line(exc)}); moved aside to {aside.name}; {then}")
        return None
