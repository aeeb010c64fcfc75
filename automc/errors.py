"""One exception root for automc. Every message says what is wrong and how to fix it."""

from __future__ import annotations

import re


class AutomcError(Exception):
    """Base class of every error automc raises on purpose. The command line prints it as one line
    and exits with ``exit_code``: 2 for a problem found before any work (bad input), 1 after."""

    exit_code = 2


def first_line(exc: BaseException, limit: int = 160) -> str:
    """An exception's first line of text (at most ``limit`` characters), or its type's name: how
    a caught third-party error is quoted inside one of automc's one-line messages."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


class ConfigError(AutomcError, ValueError):
    """The experiment YAML (or a config object) is invalid; the message names the field. A
    ``ValueError`` too, so the schema's validators report it with the field it belongs to."""


class CompressionError(AutomcError):
    """A policy cannot be applied to a network (e.g. an unsupported layer in a coupled group)."""


class TrialFailed(AutomcError):
    """A candidate could not be evaluated (exception, NaN loss, time limit); the search goes on."""


class DeployError(AutomcError):
    """Export or a parity check of a deployment artifact failed."""


class StorageError(AutomcError):
    """The machine refused a file or database write (disk full, read-only, permission denied, a
    file vanished). The message names the path, what is kept and how to continue."""

    def __init__(self, message: str, *, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


_SECRET = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@")


def mask_secrets(text: str) -> str:
    """Hide passwords in URLs (``postgresql://user:***@host/db``) wherever automc prints or logs."""
    return _SECRET.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
