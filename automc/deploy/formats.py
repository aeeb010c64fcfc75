"""Export one network to several formats, each checked against the network on its own: a format
whose tool or dependency is missing reports its own failure and never stops the others.

A quantized network (deployment form) with int8 layers is written for the runtimes that execute
them with integer kernels: ``ms`` as a FULL_QUANT ``.ms`` (MindSpore Lite), ``onnx`` as ONNX QDQ
(ONNX Runtime), each run on the test split and timed against its float twin (``deploy.int8``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from automc.algorithms.quantization import RUNTIME_FORMATS
from automc.deploy._parity import ParityReport
from automc.deploy.int8 import Int8Outcome, export_int8, int8_layers
from automc.deploy.lite import check_ms_parity, convert_to_ms
from automc.deploy.mindir import check_mindir_parity, export_mindir
from automc.deploy.onnx import check_onnx_parity, export_onnx
from automc.errors import AutomcError

FORMATS = ("mindir", "onnx", "ms")
#: max |d| / max |y| an exported file may differ from the in-memory network by (with every top-1 agreeing)
PARITY_TOLERANCE = 1e-5


@dataclass(frozen=True)
class FormatOutcome:
    """What exporting one format gave: its file and parity, or why it failed (``error``)."""

    format: str
    path: Path | None = None
    report: ParityReport | None = None
    error: str = ""
    int8: Int8Outcome | None = None  # the file runs int8 kernels: its parity and latency there

    @property
    def ok(self) -> bool:
        return not self.error

    def line(self) -> str:
        if self.error:
            kept = f" ({self.path} written, unchecked)" if self.path is not None and self.path.exists() else ""
            return f"{self.format}: FAILED: {self.error}{kept}"
        return self.int8.line() if self.int8 is not None else str(self.report)


#: format -> (export, parity check) for the formats written from the network itself
_FROM_NETWORK = {"mindir": (export_mindir, check_mindir_parity), "onnx": (export_onnx, check_onnx_parity)}


def export_formats(net, formats: Sequence[str], stem: Path, sample: np.ndarray, check_x: np.ndarray, *,
                   test: tuple[np.ndarray, np.ndarray] | None = None, calibration: np.ndarray | None = None,
                   log: Callable[[str], None] = print) -> dict[str, FormatOutcome]:
    """Export ``net`` (already in its deployment form) to ``stem.<format>`` for each of ``formats``
    (``ms`` converts the MindIR, which is then written too) and check each file's outputs on
    ``check_x``. Returns format -> outcome, in the order mindir, onnx, ms; logs one line each.

    With ``test`` (x, y) and ``calibration`` (training inputs), a network with int8 layers is
    written as int8 for the runtime of each format that has one (module docstring)."""
    wanted = [f for f in FORMATS if f in formats or (f == "mindir" and "ms" in formats)]
    runtime_of = {fmt: rt for rt, fmt in RUNTIME_FORMATS.items()}
    int8 = test is not None and calibration is not None and bool(int8_layers(net))
    out: dict[str, FormatOutcome] = {}
    for fmt in wanted:
        path = stem.with_suffix(f".{fmt}")
        try:
            if int8 and fmt in runtime_of:
                run = export_int8(net, runtime_of[fmt], path, calibration=calibration, test_x=test[0], test_y=test[1],
                                  log=lambda line: None)
                out[fmt] = FormatOutcome(fmt, run.path, int8=run)
                log(out[fmt].line())
                continue
            if fmt in _FROM_NETWORK:
                export, check = _FROM_NETWORK[fmt]
                path = export(net, sample, path)
                report = check(net, path, check_x)
            else:
                if not out["mindir"].ok:
                    raise AutomcError("needs the MindIR export, which failed")
                path = convert_to_ms(out["mindir"].path, path)
                report = check_ms_parity(net, path, check_x)
        except (AutomcError, ImportError) as exc:
            out[fmt] = FormatOutcome(fmt, path, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        else:
            out[fmt] = FormatOutcome(fmt, Path(path), report)
            if not report.ok(PARITY_TOLERANCE):
                log(f"warning: the {fmt} outputs differ from the in-memory network by more than {PARITY_TOLERANCE:g} "
                    "of the largest output, or a top-1 class differs")
        log(out[fmt].line())
    return out
