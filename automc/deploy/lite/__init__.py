"""MindSpore Lite deployment: MindIR -> .ms with the real Lite 2.0 converter, per-layer weight bits,
runs of .ms models in the Lite runtime through automc's small C++ runner.

Heavy pieces (MindSpore, the toolchain download/build) load only when used.
"""

from __future__ import annotations

from automc._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("LiteToolchain", "ensure_toolchain", "LITE_VERSION"), "._toolchain"),
    "cache_root": "automc._files",
    **dict.fromkeys(("convert_to_ms", "convert_to_ms_int8", "run_ms", "bench_ms", "check_ms_parity", "ms_weight_bits",
                     "ConverterLite"),
                    "._convert"),
    **dict.fromkeys(("DOWNGRADE_TABLE", "InputToAttr", "DowngradeReport", "downgrade_mindir"), "._compat"),
    **dict.fromkeys(("read_ms", "MsModel", "MsTensor"), "._msfile"),
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
