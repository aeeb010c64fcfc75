"""Mixed-precision quantization as a search compressor: per-layer weight and activation bits."""

from __future__ import annotations

from typing import Sequence

from automc.algorithms._base import Compressor, Decision
from automc.algorithms.quantization._bits import check_bits, runtime_bits, weight_only
from automc.analysis.layer_table import LayerTable
from automc.policy import FLOAT_BITS, Policy


class MixedPrecisionQuantization(Compressor):
    """HAQ's action space: each weighted layer picks its ``w_bits`` and ``a_bits`` from the YAML
    choices. ``mode="ptq"`` calibrates ranges only (no fine-tune); ``"qat"`` fine-tunes."""

    name = "quantization"
    section = "w_bits"

    def __init__(self, *, w_bits: Sequence[int] = (4, 8, 32), a_bits: Sequence[int] = (8, 32), mode: str = "qat",
                 symmetric: bool = True, calib_batches: int = 4):
        self.w_choices = tuple(check_bits(b, where="compress.quantization.w_bits entry") for b in w_bits)
        self.a_choices = tuple(check_bits(b, where="compress.quantization.a_bits entry") for b in a_bits)
        self.mode, self.symmetric, self.calib_batches = mode, symmetric, calib_batches
        self.runtime = "any"

    @property
    def needs_finetune(self) -> bool:
        return self.mode == "qat"

    def for_runtime(self, runtime: str) -> "MixedPrecisionQuantization":
        """What ``runtime`` (``export.runtime``) executes: each layer int8 (weights and inputs) or
        float, one choice per layer; ``"any"`` keeps the separate weight and input bit-widths."""
        self.w_choices = runtime_bits(self.w_choices, runtime, where="compress.quantization.w_bits")
        self.a_choices = runtime_bits(self.a_choices, runtime, where="compress.quantization.a_bits")
        self.runtime = runtime
        return self

    def decisions(self, table: LayerTable) -> list[Decision]:
        if self.runtime != "any":
            both = tuple(b for b in self.w_choices if b in self.a_choices)
            note = f"per layer int8 (weights and inputs) or float: what {self.runtime} runs with its kernels"
            return [Decision("w_bits", name, "categorical", choices=both, default=FLOAT_BITS, note=note,
                             mirrors=("a_bits",)) for name in table.compressible]
        narrow = [b for b in self.w_choices if weight_only(b)]
        note = (f"{', '.join(map(str, narrow))}: weight-only size choice{'s' if len(narrow) > 1 else ''} (no runtime "
                "here computes below 8 bits; export.runtime lite or onnxruntime keeps 8 and 32)") if narrow else ""
        out = []
        for name in table.compressible:
            out.append(Decision("w_bits", name, "categorical", choices=self.w_choices, default=FLOAT_BITS, note=note))
            out.append(Decision("a_bits", name, "categorical", choices=self.a_choices, default=FLOAT_BITS))
        return out

    def apply(self, network, table: LayerTable, policy: Policy, *, calib_x=None):
        from automc.algorithms.quantization.apply import quantize  # defers MindSpore

        if not any(b < FLOAT_BITS for b in (*policy.w_bits.values(), *policy.a_bits.values())):
            return network
        return quantize(network, policy, symmetric=self.symmetric, calib_x=calib_x, calib_batches=self.calib_batches)

    def to_deploy_form(self, network):
        from automc.algorithms.quantization.apply import to_deploy_form  # defers MindSpore

        if not any(type(c).__name__.startswith("Quant") for _, c in network.cells_and_names()):
            return network
        return to_deploy_form(network)
