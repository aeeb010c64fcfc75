"""HAQ-style per-layer mixed-precision quantization (PTQ and QAT) for MindSpore networks.

- ``quantize(net, policy, ...)``: quantization-aware copy (per-layer ``w_bits``/``a_bits``,
  per-channel weight scales, observed per-tensor input ranges, batch-norm folded); calibrated
  when ``calib_x`` is given (PTQ). QAT = ``automc.training.train(qnet, ...)`` afterwards.
- ``to_deploy_form(qnet)``: integer weights + scales, explicit input quantize-dequantize; exports
  to MindIR. ``quant_params(net)``: the per-layer scales for a converter.
- ``project_bits(table, policy, ...)``: lower bits until a budget is met (pure numpy).

Bit-widths: integers 2..16, or 32 for float. MindSpore modules are imported on first use, so the
numpy-only projection loads without MindSpore.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MixedPrecisionQuantization": "compressor",
    "quantize": "apply",
    "calibrate": "apply",
    "to_deploy_form": "apply",
    "quant_params": "apply",
    "find_bn_pairs": "apply",
    "compressible_layers": "apply",
    "validate_policy": "apply",
    "QuantConv2d": "layers",
    "QuantDense": "layers",
    "DeployConv2d": "layers",
    "DeployDense": "layers",
    "fold_batchnorm": "layers",
    "fake_quant": "quantizer",
    "weight_qparams": "quantizer",
    "act_qparams": "quantizer",
    "check_bits": "_bits",
    "project_bits": "projection",
    "uniform_policy": "projection",
    "weight_size_bytes": "projection",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
