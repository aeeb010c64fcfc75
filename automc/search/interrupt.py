"""A stop asked for by a signal (Ctrl-C, SIGTERM, SIGHUP), remembered until the search acts on it.

The CLI's handler raises ``KeyboardInterrupt`` wherever the main thread is. When that is inside
MindSpore's graph compiler, which calls back into Python, MindSpore catches the exception and
logs it as a compile error: the trial then fails as an ordinary failure, or even completes, and
the search would go on as if nothing had been asked. The flag makes the stop stick: the runner
checks it whenever a trial returns.
"""

from __future__ import annotations

import threading

_requested = threading.Event()


def request_stop() -> None:
    _requested.set()


def stop_requested() -> bool:
    return _requested.is_set()


def clear() -> None:
    """A new search starts: a stop asked for before it was handled by the search it stopped."""
    _requested.clear()
