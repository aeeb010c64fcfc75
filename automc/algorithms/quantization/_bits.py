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


#: ``export.runtime`` -> the bit-widths below float that runtime executes with integer kernels
#: (measured here, README "Deployment route": MindSpore Lite 2.0 FULL_QUANT takes ``bit_num`` 8
#: only and refuses weight-quantized models; ONNX Runtime's x86 kernels are 8-bit, its 4/16-bit
#: QDQ dequantizes to float). fp16 runs fp32 kernels in both on x86, so it is not a choice.
RUNTIME_BITS: dict[str, tuple[int, ...]] = {"lite": (8,), "onnxruntime": (8,)}
#: ``export.runtime`` -> the export format that runtime runs (``.ms``: MindSpore Lite FULL_QUANT;
#: ``.onnx``: ONNX QDQ in ONNX Runtime)
RUNTIME_FORMATS: dict[str, str] = {"lite": "ms", "onnxruntime": "onnx"}
RUNTIMES = ("any", *RUNTIME_BITS)
#: below this, a bit-width narrows only the stored weights: no runtime here computes in fewer bits
INTEGER_KERNEL_BITS = 8


def runtime_bits(choices, runtime: str, *, where: str) -> tuple[int, ...]:
    """The bit-width ``choices`` that ``runtime`` executes (its integer widths and float), or
    ConfigError naming ``where`` when none below float is left. ``"any"`` keeps every choice."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"export.runtime {runtime!r} is unknown; use one of {', '.join(RUNTIMES)}")
    choices = tuple(int(b) for b in choices)
    if runtime == "any":
        return choices
    allowed = RUNTIME_BITS[runtime]
    kept = tuple(b for b in choices if b in allowed or b == FLOAT_BITS)
    if not any(b < FLOAT_BITS for b in kept):
        raise ConfigError(f"{where} {list(choices)} has no bit-width {runtime} runs with integer kernels; add "
                          f"{' or '.join(map(str, allowed))}, or set export.runtime: any")
    return kept


def weight_only(bits: int) -> bool:
    """Whether a weight bit-width only narrows storage (computed in 8 bits or float everywhere here)."""
    return bits < INTEGER_KERNEL_BITS
