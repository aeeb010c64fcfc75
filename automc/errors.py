"""One exception root for automc. Every message says what is wrong and how to fix it."""

from __future__ import annotations


class AutomcError(Exception):
    """Base class of every error automc raises on purpose."""


class ConfigError(AutomcError):
    """The experiment YAML (or a config object) is invalid; the message names the field."""


class CompressionError(AutomcError):
    """A policy cannot be applied to a network (e.g. an unsupported layer in a coupled group)."""


class TrialFailed(AutomcError):
    """A candidate could not be evaluated (exception, NaN loss, time limit); the search goes on."""


class DeployError(AutomcError):
    """Export or a parity check of a deployment artifact failed."""
