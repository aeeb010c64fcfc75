"""Deployment chain: deployment form (batch-norm folding), MindIR / ONNX / MindSpore Lite exports,
and parity of each artifact with the in-memory network.

    net = fold_batchnorm(net, sample)              # deployment form of a float network
    path = export_mindir(net, sample, "out/model") # -> out/model.mindir
    print(check_mindir_parity(net, path, inputs))  # ParityReport
    ms = convert_to_ms(path, "out/model.ms", weight_bits={"features.0": 8, "classifier": 4})
    print(check_ms_parity(net, ms, inputs))        # runs in the Lite 2.0 runtime, with latency

Names load lazily: importing automc.deploy does not import MindSpore.
"""

from __future__ import annotations

from automc._lazy import lazy_exports

_EXPORTS = {
    "ParityReport": "automc.deploy._parity",
    "compare_outputs": "automc.deploy._parity",
    "export_mindir": "automc.deploy.mindir",
    "check_mindir_parity": "automc.deploy.mindir",
    "load_mindir": "automc.deploy.mindir",
    "export_onnx": "automc.deploy.onnx",
    "check_onnx_parity": "automc.deploy.onnx",
    "fold_batchnorm": "automc.deploy.fold",
    "find_conv_bn_pairs": "automc.deploy.fold",
    "LiteToolchain": "automc.deploy.lite",
    "ensure_toolchain": "automc.deploy.lite",
    "convert_to_ms": "automc.deploy.lite",
    "run_ms": "automc.deploy.lite",
    "bench_ms": "automc.deploy.lite",
    "check_ms_parity": "automc.deploy.lite",
    "ms_weight_bits": "automc.deploy.lite",
    "read_ms": "automc.deploy.lite",
    "downgrade_mindir": "automc.deploy.lite",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
