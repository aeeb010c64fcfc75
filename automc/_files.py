"""Files that several processes share (one output folder, one study): written aside and renamed
into place, so no reader sees a partial or missing file; a lock for work done once; and the
machine's cache folder (what automc keeps between experiments)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Iterator


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to a private temporary file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(text)
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
