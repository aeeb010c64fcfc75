"""Services the tests use beside Python (PostgreSQL, headless Chromium, data packages, mounts).

Locally a missing service skips its tests, with the reason and the fix; in CI (``CI=true``)
it fails them: ``.ci/run`` installs every service, so a missing one is a broken CI, not a skip.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
from pathlib import Path
from typing import Iterator, NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(reason: str) -> NoReturn:
    """Skip the test (locally) or fail it (``CI=true``) because a service is missing."""
    if in_ci():
        pytest.fail(f"{reason} [CI=true: a missing service fails the run]", pytrace=False)
    pytest.skip(reason)


def require_module(name: str, reason: str):
    """The module, or :func:`missing` with ``reason``."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(reason)


@contextlib.contextmanager
def mounted(*commands: list[str], target: Path) -> Iterator[Path]:
    """Run ``mount`` ``commands`` (as root, here and in CI) and unmount ``target`` afterwards; where
    mounting is not allowed, :func:`missing` says so."""
    target.mkdir(parents=True, exist_ok=True)
    for command in commands:
        proc = subprocess.run(["mount", *command], capture_output=True, text=True)
        if proc.returncode != 0:
            if commands.index(command) > 0:
                subprocess.run(["umount", str(target)], capture_output=True)
            missing(f"cannot mount here ({' '.join(['mount', *command])}: {proc.stderr.strip()}); the test needs root")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def tmpfs(target: Path, size: str):
    """A small tmpfs at ``target`` (``size`` as mount's ``-o size=``, e.g. ``4m``)."""
    return mounted(["-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], target=target)


def read_only(source: Path, target: Path):
    """``source`` seen read-only at ``target`` (a read-only bind mount)."""
    return mounted(["--bind", str(source), str(target)], ["-o", "remount,ro,bind", str(target)], target=target)
