"""Deployment chain: deployment form (batch-norm folding), MindIR / ONNX / MindSpore Lite exports,
and parity of each artifact with the in-memory network.

    net = fold_batchnorm(net, sample)              # deployment form of a float network
    path = export_mindir(net, sample, "out/model") # -> out/model.mindir
    print(check_mindir_parity(net, path, inputs))  # ParityReport
    ms = convert_to_ms(path, "out/model.ms", weight_bits={"features.0": 8, "classifier": 4})
    print(check_ms_parity(net, ms, inputs))        # runs in the Lite 2.0 runtime, with latency
    run = make_runner("local").run(ms)             # BenchmarkRun: Lite's benchmark, here or on a device
    print(export_int8(qnet_deploy_form, "lite", "out/model.ms", calibration=x_train[:256],
                      test_x=x_test, test_y=y_test).line())  # FULL_QUANT .ms run in Lite (or "onnxruntime": QDQ)

Names load lazily: importing automc.deploy does not import MindSpore.
"""

from __future__ import annotations

from automc._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("ParityReport", "compare_outputs"), "._parity"),
    **dict.fromkeys(("export_mindir", "check_mindir_parity", "load_mindir"), ".mindir"),
    **dict.fromkeys(("export_onnx", "check_onnx_parity"), ".onnx"),
    **dict.fromkeys(("export_onnx_qdq", "qdq_layers", "onnx_kernels"), ".qdq"),
    **dict.fromkeys(("export_int8", "Int8Outcome", "int8_layers"), ".int8"),
    **dict.fromkeys(("fold_batchnorm", "find_conv_bn_pairs"), ".fold"),
    **dict.fromkeys(("OpTime", "BenchmarkRun", "parse_benchmark_output", "benchmark_command"), ".benchmark"),
    **dict.fromkeys(("RUNNERS", "Runner", "RunnerError", "LocalRunner", "SshRunner", "AdbRunner", "make_runner",
                     "runner_scheme"), ".runners"),
    **dict.fromkeys(("LiteToolchain", "ensure_toolchain", "convert_to_ms", "convert_to_ms_int8", "run_ms", "bench_ms",
                     "check_ms_parity",
                     "ms_weight_bits", "read_ms", "downgrade_mindir"), ".lite"),
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
