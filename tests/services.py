"""Services the tests use beside Python (PostgreSQL, headless Chromium, data packages).

Locally a missing service skips its tests, with the reason and the fix; in CI (``CI=true``)
it fails them: ``.ci/run`` installs every service, so a missing one is a broken CI, not a skip.
"""

from __future__ import annotations

import importlib
import os
from typing import NoReturn

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
