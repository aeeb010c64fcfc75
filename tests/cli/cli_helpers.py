"""Helpers shared by the CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real ``automc`` entry point in a subprocess."""
    env = {**os.environ, "GLOG_v": "3"}
    return subprocess.run([sys.executable, "-c", "from automc.cli import main; main()", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)
