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

from automc._lazy import lazy_exports

_EXPORTS = {
    "MixedPrecisionQuantization": ".compressor",
    **dict.fromkeys(("quantize", "calibrate", "to_deploy_form", "to_float_form", "quant_params", "find_bn_pairs",
                     "compressible_layers", "validate_policy"), ".apply"),
    **dict.fromkeys(("QuantConv2d", "QuantDense", "DeployConv2d", "DeployDense", "fold_batchnorm"), ".layers"),
    **dict.fromkeys(("fake_quant", "weight_qparams", "act_qparams"), ".quantizer"),
    **dict.fromkeys(("check_bits", "runtime_bits", "weight_only", "RUNTIMES", "RUNTIME_BITS",
                     "RUNTIME_FORMATS"), "._bits"),
    **dict.fromkeys(("project_bits", "uniform_policy", "weight_size_bytes"), ".projection"),
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
