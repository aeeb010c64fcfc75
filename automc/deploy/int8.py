"""A quantized network in a runtime that executes int8 kernels, checked and timed there.

Two runtimes run integer layers on this kind of machine (measured, see README "Deployment route"):

- ``lite``: MindSpore Lite 2.0, a FULL_QUANT ``.ms`` (int8 weights and activations; ranges
  calibrated by Lite's converter on training images; float layers in ``skip_quant_node``);
- ``onnxruntime``: ONNX Runtime, an ONNX QDQ model carrying the scales the search learned
  (``deploy.qdq``), fused into ``QLinearConv`` / ``QGemm``.

``export_int8`` writes the runtime's file, runs the test split through it, and compares it with the
quantized network: top-1 agreement and test accuracy (:data:`MIN_AGREEMENT`, :data:`MAX_ACCURACY_GAP`),
and its latency against the same network in float in the same runtime, timed interleaved.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from automc.algorithms import quantization  # a lazy package: MindSpore loads on the first call
from automc.algorithms.quantization import RUNTIME_FORMATS
from automc.deploy._parity import as_batch, network_outputs, run_in_batches
from automc.deploy.lite import bench_ms, convert_to_ms, convert_to_ms_int8, ms_weight_bits, run_ms
from automc.deploy.mindir import export_mindir
from automc.deploy.onnx import export_onnx, onnx_outputs, onnx_session
from automc.deploy.qdq import INT8_KERNELS, export_onnx_qdq, onnx_kernels, qdq_layers
from automc.errors import DeployError

#: parity of an int8 file with the quantized network it came from (issue 36's bar)
MIN_AGREEMENT = 0.99
MAX_ACCURACY_GAP = 0.5  # points of test accuracy


def int8_layers(dnet) -> list[str]:
    """Layers whose weights and inputs are both quantized to <= 8 bits: what int8 kernels run."""
    return [n for n, p in quantization.quant_params(dnet).items() if p["w_bits"] <= 8 and p["a_bits"] <= 8]


@dataclass(frozen=True)
class Int8Outcome:
    """A quantized network as one runtime executes it."""

    runtime: str
    path: Path
    int8_layer_count: int  # layers written for int8 kernels
    int8_kernel_count: int  # integer kernels in the graph the runtime runs
    agreement: float  # top-1 agreement with the quantized network, in [0, 1]
    accuracy: float  # test accuracy in the runtime, percent
    network_accuracy: float  # the quantized network's, percent
    n_samples: int
    latency_ms: float  # batch 1, 1 thread, median
    float_latency_ms: float  # the same network with float layers, same runtime, interleaved
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.agreement >= MIN_AGREEMENT and abs(self.accuracy - self.network_accuracy) <= MAX_ACCURACY_GAP

    def line(self) -> str:
        speed = self.float_latency_ms / self.latency_ms
        return (f"{RUNTIME_FORMATS[self.runtime]} int8 in {self.runtime}: {self.path.name}: top-1 agreement "
                f"{100 * self.agreement:.2f}% over {self.n_samples}, accuracy {self.accuracy:.2f}% (network "
                f"{self.network_accuracy:.2f}%), {self.int8_kernel_count} int8 kernels for {self.int8_layer_count} int8 layers, "
                f"{self.latency_ms:.3f} ms vs {self.float_latency_ms:.3f} ms float ({speed:.2f}x)"
                + (f"; {self.note}" if self.note else "") + ("" if self.ok else " -- PARITY MISSED"))

    def fields(self) -> dict:
        """Flat, JSON-ready fields for ``summary.json`` (prefixed by the caller)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("runtime", "path")}
        return {**out, "path": str(self.path), "parity_ok": self.ok}


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return 100.0 * float(np.mean(logits.reshape(len(y), -1).argmax(axis=1) == y))


def time_onnx(paths: list[Path], sample: np.ndarray, *, rounds: int = 20, calls: int = 20) -> np.ndarray:
    """Median batch-1 latency (ms, 1 thread) of each ONNX model, timed interleaved: each round runs
    every model ``calls`` times and keeps the fastest call."""
    sessions = [onnx_session(p) for p in paths]
    feeds = [{s.get_inputs()[0].name: sample} for s in sessions]
    for s, f in zip(sessions, feeds):
        s.run(None, f)  # warm-up
    table = np.empty((rounds, len(paths)))
    for r in range(rounds):
        for i, (s, f) in enumerate(zip(sessions, feeds)):
            best = np.inf
            for _ in range(calls):
                t0 = time.perf_counter()
                s.run(None, f)
                best = min(best, time.perf_counter() - t0)
            table[r, i] = 1e3 * best
    return np.median(table, axis=0)


def export_int8(dnet, runtime: str, path: str | Path, *, calibration: np.ndarray, test_x: np.ndarray,
                test_y: np.ndarray, log: Callable[[str], None] = print) -> Int8Outcome:
    """Write the deployment-form network ``dnet`` for ``runtime``'s int8 kernels at ``path``, run
    ``test_x`` through it, compare with ``dnet`` and time it against ``dnet``'s float twin."""
    if runtime not in RUNTIME_FORMATS:
        raise DeployError(f"unknown int8 runtime {runtime!r}; valid: {', '.join(RUNTIME_FORMATS)}")
    layers = int8_layers(dnet)
    if not layers:
        raise DeployError("no layer is quantized to <= 8 bits on both weights and inputs: nothing runs in int8")
    x, y = as_batch(test_x, what="test_x"), np.asarray(test_y)
    sample = x[:1]
    reference = run_in_batches(lambda chunk: network_outputs(dnet, chunk), x, 256)
    twin = quantization.to_float_form(dnet)
    with tempfile.TemporaryDirectory(prefix="automc-int8-") as tmp:
        tmp = Path(tmp)
        if runtime == "lite":
            mindir = export_mindir(twin, sample, tmp / "twin")
            out_path = convert_to_ms_int8(mindir, path, calibration=calibration, int8_layers=layers)
            float_path = convert_to_ms(mindir, tmp / "twin.ms")
            got = run_in_batches(lambda chunk: run_ms(out_path, chunk, repeats=1, warmup=0)[0], x, 500)
            float_ms, int8_ms = np.median(bench_ms([float_path, out_path], rounds=10, calls=5), axis=0)
            kernels = sum(1 for bits in ms_weight_bits(out_path).values() if bits == 8)
            note = "activation ranges from Lite's converter, calibrated on training images"
        else:
            out_path = export_onnx_qdq(dnet, sample, path)
            float_path = export_onnx(twin, sample, tmp / "twin.onnx")
            got = onnx_outputs(onnx_session(out_path), x)
            float_ms, int8_ms = time_onnx([float_path, out_path], sample)
            ran = onnx_kernels(out_path)
            kernels = sum(ran[k] for k in INT8_KERNELS)
            storage = sorted({w.weight_storage for w in qdq_layers(out_path)})
            note = f"learned scales; weights stored as {'/'.join(storage)}"
    got = np.asarray(got).reshape(reference.shape)
    outcome = Int8Outcome(
        runtime=runtime, path=Path(out_path), int8_layer_count=len(layers), int8_kernel_count=int(kernels),
        agreement=float(np.mean(got.reshape(len(x), -1).argmax(1) == reference.reshape(len(x), -1).argmax(1))),
        accuracy=_accuracy(got, y), network_accuracy=_accuracy(reference, y), n_samples=len(x),
        latency_ms=float(int8_ms), float_latency_ms=float(float_ms), note=note)
    log(outcome.line())
    return outcome
