"""Bit-width validation (no MindSpore import: used by the numpy-only projection)."""

from __future__ import annotations

import numbers

from automc.errors import ConfigError
from automc.policy import FLOAT_BITS

MIN_BITS = 2
MAX_BITS = 16
VALID_BITS_TEXT = f"integers {MIN_BITS}..{MAX_BITS}, or {FLOAT_BITS} for float"


def check_bits(value: object, *, where: str) -> int:
    """Return ``value`` as an int bit-width, or raise ``ConfigError`` naming ``where``.

    Valid: integers 2..16 (1 bit has no symmetric grid and needs a different quantizer; 16 is the
    widest integer stored by the deployment form) and 32 (leave float). Bools and floats are
    rejected, even 8.0, so that a YAML typo cannot silently round.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{where} = {value!r} is not a valid bit-width; use {VALID_BITS_TEXT}")
    bits = int(value)
    if not (MIN_BITS <= bits <= MAX_BITS or bits == FLOAT_BITS):
        raise ConfigError(f"{where} = {bits} is out of range; use {VALID_BITS_TEXT}")
    return bits
