"""MindSpore Lite deployment: MindIR -> .ms with the real Lite 2.0 converter, per-layer weight bits,
runs of .ms models in the Lite runtime through automc's small C++ runner.

Heavy pieces (MindSpore, the toolchain download/build) load only when used.
"""

from __future__ import annotations

from automc._lazy import lazy_exports

_EXPORTS = {
    "LiteToolchain": "automc.deploy.lite._toolchain",
    "ensure_toolchain": "automc.deploy.lite._toolchain",
    "cache_root": "automc._files",
    "LITE_VERSION": "automc.deploy.lite._toolchain",
    "convert_to_ms": "automc.deploy.lite._convert",
    "run_ms": "automc.deploy.lite._convert",
    "bench_ms": "automc.deploy.lite._convert",
    "check_ms_parity": "automc.deploy.lite._convert",
    "ms_weight_bits": "automc.deploy.lite._convert",
    "ConverterLite": "automc.deploy.lite._convert",
    "DOWNGRADE_TABLE": "automc.deploy.lite._compat",
    "InputToAttr": "automc.deploy.lite._compat",
    "DowngradeReport": "automc.deploy.lite._compat",
    "downgrade_mindir": "automc.deploy.lite._compat",
    "read_ms": "automc.deploy.lite._msfile",
    "MsModel": "automc.deploy.lite._msfile",
    "MsTensor": "automc.deploy.lite._msfile",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
