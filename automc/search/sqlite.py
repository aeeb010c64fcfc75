"""SQLite files for the study and the MLflow store: write-ahead logging, so a trial's many small
transactions do not each wait for the disk.

In the default rollback-journal mode every commit syncs the file several times (0.8 ms each
here, and a trial makes a few dozen); in WAL mode a commit appends to the log (0.02 ms with
``synchronous=NORMAL``). WAL is still safe when a process is killed (only a power cut can lose the
last commits), and several processes on one machine can share the file, as they do when two
searches work on one study. It is not for network file systems: use PostgreSQL there.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL; None for other databases and in-memory SQLite."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix):] in ("", ":memory:"):
        return None
    return Path(url[len(prefix):].split("?", 1)[0])


def use_wal(url: str) -> None:
    """Switch the SQLite file of ``url`` to write-ahead logging (kept in the file; no-op otherwise)."""
    path = sqlite_path(url)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path, timeout=60) as con:
        con.execute("PRAGMA journal_mode=WAL")
    con.close()


def relax_sync(engine) -> None:
    """``synchronous=NORMAL`` on every new connection of a SQLAlchemy engine on SQLite."""
    from sqlalchemy import event

    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    engine.dispose()  # connections opened before the listener get it when reopened
