"""Parity of a deployment artifact with the in-memory network: one frozen record, one comparison."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from automc.errors import DeployError


@dataclass(frozen=True)
class ParityReport:
    """How closely an exported model reproduces the network's outputs on the same inputs."""

    max_abs_diff: float
    mean_abs_diff: float
    argmax_agreement: float  # fraction of samples whose top-1 class agrees, in [0, 1]
    n_samples: int
    format: str  # "mindir", "onnx", "ms", "folded"
    path: Path | None = None
    latency_ms: float | None = None  # median latency of one batch in the artifact's runtime, when measured
    max_abs_output: float = 1.0  # max |y| of the network's outputs: the scale differences are relative to

    @property
    def relative_diff(self) -> float:
        """max |d| / max |y|: float32 rounding grows with the outputs (an untrained DenseNet's
        logits reach 1e3, and differ by 1e-3 for a relative 1e-6)."""
        return self.max_abs_diff / max(self.max_abs_output, 1e-12)

    def ok(self, tol: float = 1e-5) -> bool:
        """True when every output element is within ``tol`` of the largest output (relative) and
        all top-1 predictions agree."""
        return bool(np.isfinite(self.max_abs_diff)) and self.relative_diff <= tol and self.argmax_agreement >= 1.0

    def __str__(self) -> str:
        where = f" {self.path}" if self.path is not None else ""
        lat = f", {self.latency_ms:.3f} ms/batch" if self.latency_ms is not None else ""
        return (
            f"{self.format} parity{where}: max|d|={self.max_abs_diff:.3g} (relative {self.relative_diff:.2g}) "
            f"mean|d|={self.mean_abs_diff:.3g} argmax {100 * self.argmax_agreement:.1f}% over {self.n_samples} "
            f"samples{lat}"
        )


def as_batch(inputs: np.ndarray, *, what: str = "inputs") -> np.ndarray:
    """``inputs`` as a float32 NCHW batch; a single CHW sample gets a batch axis."""
    arr = np.asarray(inputs)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise DeployError(f"{what} must be a non-empty batch (N, C, H, W); got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def first_output(out) -> np.ndarray:
    """The first tensor of a network output (a tensor, or a tuple/list of them) as numpy."""
    while isinstance(out, (tuple, list)):
        if not out:
            raise DeployError("the network returned an empty tuple")
        out = out[0]
    return out.asnumpy() if hasattr(out, "asnumpy") else np.asarray(out)


def run_in_batches(fn: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, batch: int) -> np.ndarray:
    """Apply a fixed-batch model ``fn`` to all ``inputs``: chunks of ``batch``, the last one padded."""
    outs = []
    for start in range(0, len(inputs), batch):
        chunk = inputs[start : start + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        outs.append(np.asarray(fn(chunk))[:n])
    return np.concatenate(outs)


def network_outputs(net, inputs: np.ndarray) -> np.ndarray:
    """Eval-mode outputs of ``net`` on ``inputs`` (first output if the network returns several)."""
    from mindspore import Tensor

    net.set_train(False)
    return first_output(net(Tensor(inputs)))


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    fmt: str,
    path: Path | None = None,
    latency_ms: float | None = None,
) -> ParityReport:
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    if ref.shape != got.shape:
        if ref.size == got.size:
            got = got.reshape(ref.shape)
        else:
            raise DeployError(f"{fmt} output shape {got.shape} differs from the network's {ref.shape}")
    diff = np.abs(ref - got)
    n = ref.shape[0] if ref.ndim else 1
    if ref.ndim >= 2:
        flat_ref, flat_got = ref.reshape(n, -1), got.reshape(n, -1)
        agree = float(np.mean(flat_ref.argmax(axis=1) == flat_got.argmax(axis=1)))
    else:
        agree = 1.0
    return ParityReport(
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        argmax_agreement=agree,
        n_samples=int(n),
        format=fmt,
        path=Path(path) if path is not None else None,
        latency_ms=latency_ms,
        max_abs_output=float(np.abs(ref).max()) if ref.size else 1.0,
    )


compare_outputs = compare  # public name: parity of any two output arrays
