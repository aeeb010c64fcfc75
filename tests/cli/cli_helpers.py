"""Helpers shared by the CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real ``automc`` entry point in a subprocess (``env`` adds to this process's environment)."""
    env = {**os.environ, "GLOG_v": "3", **(env or {})}
    return subprocess.run([sys.executable, "-c", "from automc.cli import main; main()", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)
