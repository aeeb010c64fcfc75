"""Scale a device's cost model to a few latencies measured on the user's own device.

``calibration.calibrate`` fits a device's terms from its datasheet and needs many networks. A user
who measured one to five networks has a good model already (a shipped device close to theirs) and
a runtime that differs from it in speed first, and in the op classes' relative speeds second
(Winograd 3x3 kernels, a GPU's device-time-only figures, a thread count). So this fit moves the
base device's terms by factors, in log space, around one overall scale:

    time = sum over layers of  max(compute * e^(g + d_class + b_precision), memory * e^(g + d_mem))
                               + overheads * e^(g + d_over) + INT8 conversions * e^(g + d_conv)
                               + repacks * e^g   (+ the network overhead * e^(g + d_over))

``g`` is free; the deviations ``d`` and ``b`` cost ``ridge * d^2`` each (a pull towards "the
runtime is the base runtime, only faster or slower"), so one row moves ``g`` alone and reproduces
the row exactly, two or three networks of different shapes move the classes they differ in, and a
class no row exercises keeps the base's place relative to the others. Each class can get at most
``max_efficiency`` of the (scaled) peak, the memory system at most ``max_memory_efficiency`` of its
(scaled) bandwidth, as in the shipped fits: ``g`` is the device's speed (a clock, a thread count),
the caps bound what the rows can buy beyond it. Per-class measured times (``ClassTime``, e.g. from
a ``benchmark --timeProfiling`` table) are extra targets: the predicted time of those classes
against the measured one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np

from automc.analysis.layer_table import LayerTable
from automc.errors import ConfigError
from automc.hw_cost.model import DeviceParams, estimate, layer_terms
from automc.hw_cost.specs import COST_CLASSES, PRECISION_BITS, DeviceSpec, precision_factor
from automc.policy import Policy

#: the pull of each deviation from the overall scale, per squared log-factor, chosen on the published
#: set by benchmarks/hw_cost_calibrate.py (2026-12-07, 20 draws): held-out rows after 3 measured
#: networks within 25 % / 10 %, CPUs within 10 %: 0.1 71 / 43 / 48; 0.3 70 / 43 / 48; 0.03 71 / 41 / 45;
#: 1 69 / 40 / 46; the scale alone 65 / 36 / 40. Noiseless rows are then reproduced within a few per cent.
RIDGE = 0.1
#: the deviations from the overall scale a fit may move: per-class compute, memory, fixed costs,
#: INT8 conversions, per-precision compute
TERMS = ("classes", "memory", "overhead", "conversion", "precision")
#: no deviation moves a term by more than this factor either way
MAX_FACTOR = 10.0
_C = len(COST_CLASSES)
_ADD = COST_CLASSES.index("add")
#: positions in the parameter vector: g, d per class, d_mem, d_over, d_conv, then b per precision
_G, _D, _MEM, _OVER, _CONV, _B = 0, 1, 1 + _C, 2 + _C, 3 + _C, 4 + _C


@dataclass(frozen=True)
class Measured:
    """One measured network: its table and policy (e.g. every layer at INT8), the latency in ms."""

    table: LayerTable
    latency_ms: float
    policy: Policy = field(default_factory=Policy)


@dataclass(frozen=True)
class ClassTime:
    """Measured time of some cost classes of one measured network (``sample`` indexes the
    ``Measured`` list): e.g. every convolution class together, from a per-operator profile."""

    sample: int
    classes: tuple[str, ...]
    ms: float


@dataclass(frozen=True)
class ScaleFit:
    """Factors on the base device's time terms: ``scale`` on every one, then per class on compute
    time (``compute``), on memory time, on fixed costs (per op and per inference), on INT8
    conversions, and per precision on compute time at that precision. 1 = as the base."""

    base: str  # the device name the factors apply to
    scale: float  # on every time term: the runtime's overall speed against the base's
    compute: Mapping[str, float]  # cost class -> factor on its compute time
    memory: float  # on memory time
    overhead: float  # on fixed costs, per op and per inference
    conversion: float  # on INT8 layers' per-element conversions
    precision: Mapping[str, float]  # precision -> factor on compute time at that precision

    def apply(self, spec: DeviceSpec, *, name: str | None = None) -> DeviceSpec:
        """``spec`` (the base) with its terms scaled: efficiencies, overheads and rates, so the
        spec predicts what the fit predicts (peaks and bandwidths stay the datasheet's)."""
        s = self.scale
        precision = {p: {c: precision_factor(spec.precision_efficiency, p, c) / self.precision[p] for c in COST_CLASSES}
                     for p in self.precision}
        return replace(
            spec,
            name=name or spec.name,
            efficiency={c: spec.efficiency_of(c) / (s * self.compute[c]) for c in COST_CLASSES},
            memory_efficiency=spec.memory_efficiency / (s * self.memory),
            op_overhead_us={c: spec.overhead_us_of(c) * s * self.overhead for c in COST_CLASSES},
            network_overhead_us=spec.network_overhead_us * s * self.overhead,
            repack_gbps=spec.repack_gbps / s if spec.repack_gbps else None,
            quantize_gelems=spec.quantize_gelems / (s * self.conversion) if spec.quantize_gelems else None,
            precision_efficiency={**spec.precision_efficiency, **precision},
            lut=None,
        )

    def to_dict(self) -> dict:
        return {"base": self.base, "scale": float(self.scale), "compute": {c: float(v) for c, v in self.compute.items()},
                "memory": float(self.memory), "overhead": float(self.overhead), "conversion": float(self.conversion),
                "precision": {p: float(v) for p, v in self.precision.items()}}

    def describe(self) -> str:
        """One line: the overall factor and every other factor that moved by more than 1 %."""
        moved = [f"{c} compute x{v:.2f}" for c, v in self.compute.items() if abs(v - 1) > 0.01]
        moved += [f"{what} x{v:.2f}" for what, v in (("memory", self.memory), ("fixed costs", self.overhead),
                                                      ("INT8 conversions", self.conversion)) if abs(v - 1) > 0.01]
        moved += [f"{p} compute x{v:.2f}" for p, v in self.precision.items() if abs(v - 1) > 0.01]
        return (f"every time term x{self.scale:.3f} of {self.base}'s" + ("; then " + ", ".join(moved) if moved
                                                                         else "; nothing else moved"))


class _Problem:
    """The measured networks' layer terms under the base device, as flat arrays per network, and
    their time (and its derivatives in the log-factors) for a parameter vector."""

    def __init__(self, spec: DeviceSpec, samples: Sequence[Measured]):
        params = DeviceParams.of(spec)
        self.parts = []
        bits = set()
        for s in samples:
            t = layer_terms(s.table, s.table.resolve([s.policy]), spec)
            present = np.asarray(t.present[0])
            cls = t.cost_class

            def row(a: np.ndarray) -> np.ndarray:  # the one policy's row, zero where the layer is absent
                return np.where(present, np.asarray(a, dtype=np.float64)[0], 0.0)

            exec_bits = np.broadcast_to(t.exec_bits, t.present.shape)[0]
            bits |= set(exec_bits[present & (row(t.compute_s) > 0)].tolist())
            self.parts.append(dict(
                cls=cls, bits=exec_bits,
                compute=row(t.compute_s) * params.inv_efficiency[cls],
                memory=row(t.memory_s) * params.inv_memory_efficiency,
                fixed=np.where(present, params.overhead_s[cls], 0.0) + row(t.unfused_ops) * params.overhead_s[_ADD],
                unfused=row(t.unfused_memory_s) * params.inv_memory_efficiency,
                repack=row(t.repack_bytes) * params.repack_s_per_byte,
                conversion=row(t.quantized_elems) * params.quantize_s_per_elem,
            ))
        self.network_s = params.network_overhead_s
        by_bits = {b: p for p, b in PRECISION_BITS.items()}
        widest_first = [by_bits[b] for b in sorted(bits, reverse=True) if b in by_bits]
        #: precisions with a factor of their own: every one the rows run at but the widest
        self.precisions = widest_first[1:]
        self.n_params = _B + len(self.precisions)
        for part in self.parts:  # each layer's column of its precision's factor (-1: the widest, none)
            part["precision"] = np.full(part["cls"].shape, -1)
            for j, prec in enumerate(self.precisions):
                part["precision"][part["bits"] == PRECISION_BITS[prec]] = _B + j

    def layers(self, theta: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Seconds per layer ``(L,)`` and their derivatives in ``theta`` ``(L, n_params)``."""
        p = self.parts[i]
        g = theta[_G]
        with_b = p["precision"] >= 0
        compute_log = g + theta[_D + p["cls"]] + np.where(with_b, theta[np.maximum(p["precision"], 0)], 0.0)
        compute = p["compute"] * np.exp(compute_log)
        memory = p["memory"] * np.exp(g + theta[_MEM])
        bound = compute >= memory
        fixed = p["fixed"] * np.exp(g + theta[_OVER])
        unfused = p["unfused"] * np.exp(g + theta[_MEM])
        conversion = p["conversion"] * np.exp(g + theta[_CONV])
        seconds = np.where(bound, compute, memory) + fixed + unfused + p["repack"] * np.exp(g) + conversion
        d = np.zeros((seconds.size, self.n_params))
        d[:, _G] = seconds
        rows = np.arange(seconds.size)
        on_compute = np.where(bound, compute, 0.0)
        d[rows, _D + p["cls"]] = on_compute
        d[rows[with_b], p["precision"][with_b]] += on_compute[with_b]
        d[:, _MEM] = np.where(bound, 0.0, memory) + unfused
        d[:, _OVER] = fixed
        d[:, _CONV] = conversion
        return seconds, d

    def total(self, theta: np.ndarray, i: int, mask: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Seconds of network ``i`` (of its layers in ``mask``, without the network overhead, when
        given) and the derivatives in ``theta``."""
        seconds, d = self.layers(theta, i)
        if mask is not None:
            return float(seconds[mask].sum()), d[mask].sum(axis=0)
        net = self.network_s * np.exp(theta[_G] + theta[_OVER])
        grad = d.sum(axis=0)
        grad[_G] += net
        grad[_OVER] += net
        return float(seconds.sum() + net), grad

    def seconds(self, theta: np.ndarray, i: int) -> float:
        return self.total(theta, i)[0]

    def class_mask(self, i: int, classes: Sequence[str]) -> np.ndarray:
        return np.isin(self.parts[i]["cls"], [COST_CLASSES.index(c) for c in classes])


def fit_scales(
    spec: DeviceSpec,
    samples: Sequence[Measured],
    class_times: Sequence[ClassTime] = (),
    *,
    ridge: float = RIDGE,
    max_efficiency: Mapping[str, float] | None = None,
    max_memory_efficiency: float | None = None,
    min_quantize_gelems: float | None = None,
    free: Sequence[str] = TERMS,
) -> ScaleFit:
    """The factors on ``spec``'s terms that reproduce ``samples`` (and ``class_times``) best, in
    relative error, each deviation from the overall scale pulled to 1 by ``ridge``; ``free`` names
    the deviations that may move (``TERMS``; the others stay 1).

    One sample and no class times: the overall scale alone, which reproduces it exactly. The caps
    (``max_efficiency`` per class, ``max_memory_efficiency``, ``min_quantize_gelems``) bound the
    deviations relative to the overall scale (never forcing a term the base already has past them).
    """
    if not samples:
        raise ConfigError(f"calibrating {spec.name}: no measured networks")
    y = np.array([s.latency_ms * 1e-3 for s in samples])
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ConfigError(f"calibrating {spec.name}: measured latencies must be positive numbers of milliseconds")
    problem = _Problem(spec, samples)
    theta = np.zeros(problem.n_params)
    base = np.array([problem.seconds(theta, i) for i in range(len(samples))])
    if np.any(base <= 0):
        raise ConfigError(f"calibrating {spec.name}: the model predicts no time for a measured network (an empty table?)")
    theta[_G] = float(np.mean(np.log(y / base)))
    targets = [t for t in class_times
               if t.ms > 0 and problem.total(theta, t.sample, problem.class_mask(t.sample, t.classes))[0] > 0]
    if len(samples) > 1 or targets:
        unknown = sorted(set(free) - set(TERMS))
        if unknown:
            raise ConfigError(f"fit_scales: unknown term {unknown[0]!r}; valid: {', '.join(TERMS)}")
        moves = np.zeros(problem.n_params, dtype=bool)
        moves[_G] = True
        for term, where in (("classes", slice(_D, _D + _C)), ("memory", _MEM), ("overhead", _OVER),
                            ("conversion", _CONV), ("precision", slice(_B, None))):
            moves[where] = term in free
        theta = _solve(problem, theta, y, targets, ridge, spec, max_efficiency, max_memory_efficiency,
                       min_quantize_gelems, moves)
    e = np.exp(theta)
    return ScaleFit(base=spec.name, scale=float(e[_G]), compute={c: float(e[_D + i]) for i, c in enumerate(COST_CLASSES)},
                    memory=float(e[_MEM]), overhead=float(e[_OVER]), conversion=float(e[_CONV]),
                    precision={p: float(e[_B + j]) for j, p in enumerate(problem.precisions)})


def _solve(problem: _Problem, theta0: np.ndarray, y: np.ndarray, targets: Sequence[ClassTime], ridge: float,
           spec: DeviceSpec, max_efficiency, max_memory_efficiency, min_quantize_gelems, moves: np.ndarray) -> np.ndarray:
    """Bounded non-linear least squares on the log errors over the parameters that ``moves``
    (the max of compute and memory time makes the model piecewise smooth; the Jacobian is exact
    on each piece)."""
    from scipy.optimize import least_squares

    n = theta0.size
    cap = np.log(MAX_FACTOR)
    lower, upper = np.full(n, -cap), np.full(n, cap)
    lower[_G], upper[_G] = -np.log(1e4), np.log(1e4)
    # a cap bounds how much faster than the scaled peak a class may run: d >= log(efficiency / cap)
    for i, c in enumerate(COST_CLASSES):
        if max_efficiency and c in max_efficiency:
            lower[_D + i] = max(-cap, min(0.0, np.log(spec.efficiency_of(c) / max_efficiency[c])))
    if max_memory_efficiency:
        lower[_MEM] = max(-cap, min(0.0, np.log(spec.memory_efficiency / max_memory_efficiency)))
    if min_quantize_gelems and spec.quantize_gelems:  # conversions no slower than the floor rate
        upper[_CONV] = min(cap, max(0.0, np.log(spec.quantize_gelems / min_quantize_gelems)))
    root = np.sqrt(ridge)
    log_y = np.log(y)
    masks = [problem.class_mask(t.sample, t.classes) for t in targets]
    weights = np.ones(len(targets))  # a class's measured time counts as a measured network does
    log_t = np.log([t.ms * 1e-3 for t in targets])
    ridge_jac = np.hstack([np.zeros((n - 1, 1)), root * np.eye(n - 1)])

    def both(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Residuals (log errors, then the ridge) and their Jacobian."""
        values, jac = [], []
        for i in range(len(y)):
            sec, grad = problem.total(theta, i)
            values.append(np.log(sec) - log_y[i])
            jac.append(grad / sec)
        for t, mask, w, lt in zip(targets, masks, weights, log_t):
            sec, grad = problem.total(theta, t.sample, mask)
            values.append(w * (np.log(sec) - lt))
            jac.append(w * grad / sec)
        return np.concatenate([values, root * theta[1:]]), np.vstack([np.array(jac), ridge_jac])

    def full(x: np.ndarray) -> np.ndarray:
        theta = np.zeros(n)
        theta[moves] = x
        return theta

    start = np.clip(theta0, lower, upper)[moves]
    x = least_squares(lambda x: both(full(x))[0], start, jac=lambda x: both(full(x))[1][:, moves],
                      bounds=(lower[moves], upper[moves]), method="trf", xtol=1e-10, ftol=1e-12, gtol=1e-10,
                      max_nfev=500).x
    return full(x)


def predict_ms(spec: DeviceSpec, table: LayerTable, policy: Policy | None = None) -> float:
    """What ``spec`` predicts for ``table`` under ``policy`` (default: unchanged), in ms."""
    return float(estimate(table, [policy or Policy()], spec).latency_ms[0])
