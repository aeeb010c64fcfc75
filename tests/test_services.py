"""A missing service (PostgreSQL, Chromium) skips its tests locally and fails them under ``CI=true``:
checked on the real fixtures, with the service hidden by its location variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _pytest(target: str, hide: dict[str, str], ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(hide, **({"CI": "true"} if ci else {}))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *target.split()],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("target, hide", [
    ("tests/search/test_search_e2e.py -k postgresql", {"AUTOMC_TEST_PG_BIN": "/nonexistent"}),
    ("tests/ui/test_mlflow_ui.py", {"AUTOMC_TEST_CHROMIUM": "/nonexistent/chromium"}),
], ids=["postgresql", "chromium"])
def test_a_missing_service_skips_locally_and_fails_in_ci(target, hide):
    local = _pytest(target, hide, ci=False)
    assert local.returncode == 0 and "skipped" in local.stdout and "failed" not in local.stdout, local.stdout[-1500:]
    ci = _pytest(target, hide, ci=True)
    assert ci.returncode == 1 and ("failed" in ci.stdout or "error" in ci.stdout), ci.stdout[-1500:]
    assert "CI=true: a missing service fails the run" in ci.stdout
