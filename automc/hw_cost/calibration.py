"""Calibration: fit a device's efficiencies and overheads to a handful of measured networks.

The roofline is linear in its knobs once each layer's bound (compute or memory) is fixed, so
the fit alternates: classify layers with the current knobs, then solve a non-negative least
squares problem in *relative* error (every network counts the same, whatever its latency) with
a weak pull towards the datasheet-derived prior (keeps the fit sane with ~10 samples and
collinear features). A few rounds settle it. The result is a ``CalibrationProfile`` that
``apply_profile`` folds back into a ``DeviceSpec``; profiles save atomically as YAML or JSON.
Samples of another runtime on the same chip (``Sample.series``) share the efficiencies and
bandwidth and get per-op and per-inference costs of their own (``series_profile``).
With ``robust_scale`` the fit is iteratively reweighted (Huber on the log error): a sample the
others cannot explain counts less, so one inconsistent figure does not drag every term.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from automc.analysis.layer_table import LayerTable
from automc.errors import ConfigError
from automc.hw_cost.model import DeviceParams, LayerTerms, layer_seconds, layer_terms, network_seconds
from automc.hw_cost.specs import COST_CLASSES, DEVICES_DIR, PRECISION_BITS, DeviceSpec, precision_factor, read_device
from automc.policy import Policy

PROFILE_FORMAT = 1
_C = len(COST_CLASSES)
#: weight of log(factor)^2 against the squared relative RMSE when fitting precision factors
PRECISION_PRIOR = 0.0005
#: weight of log(class factor / the precision's factor)^2: a class's own factor needs samples that ask for it
CLASS_PRECISION_PRIOR = 0.002
#: a class gets its own precision factor only where it holds this share of some sample's time at
#: that precision (a network's 3-channel stem says little about its 3x3 convolutions; MobileNetV2's
#: and V3's depthwise layers, a sliver of their compute, take over a fifth of their INT8 time on the A76)
CLASS_SHARE = 0.2
#: reweighting rounds of a robust fit (``calibrate(robust_scale=...)``)
ROBUST_ROUNDS = 3


@dataclass(frozen=True)
class Sample:
    """One measured network: its table, the policy applied, and the measured latency.
    ``device`` (default: the device being calibrated) lets devices of one family share a fit:
    each sample is costed with its own device's peaks and bandwidths, the knobs are shared."""

    table: LayerTable
    latency_ms: float
    policy: Policy = field(default_factory=Policy)
    device: DeviceSpec | None = None
    #: another runtime or input regime measured on the same hardware (e.g. NAS-Bench-201's TFLite
    #: latencies beside ncnn's): it shares the efficiencies and bandwidth, and gets per-op and
    #: per-inference costs of its own (``CalibrationProfile.series``); "" is the device's own
    series: str = ""


@dataclass(frozen=True)
class CalibrationProfile:
    """Fitted knobs of one device (efficiencies may exceed 1 when the datasheet peak is low)."""

    device: str
    efficiency: Mapping[str, float]
    memory_efficiency: float
    op_overhead_us: Mapping[str, float]
    network_overhead_us: float
    repack_gbps: float | None = None
    #: rate (billions of elements/s) of an INT8 layer's input quantization and output requantization
    quantize_gelems: float | None = None
    #: precision -> factor on every class's efficiency, or -> {cost class -> factor}
    precision_efficiency: Mapping[str, float | Mapping[str, float]] = field(default_factory=dict)
    n_samples: int = 0
    fit_rel_rmse: float = float("nan")
    source: str = ""
    machine: str = ""
    created: str = ""
    #: how the fit predicts networks it never saw (written by the fit to published measurements):
    #: measurements, networks, within_25pct, within_2x, spearman
    heldout: Mapping[str, float] = field(default_factory=dict)
    #: per other series of the samples: its own op_overhead_us and network_overhead_us
    series: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    format: int = PROFILE_FORMAT

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["efficiency"] = {k: float(v) for k, v in self.efficiency.items()}
        d["op_overhead_us"] = {k: float(v) for k, v in self.op_overhead_us.items()}
        d["precision_efficiency"] = {k: {c: float(f) for c, f in v.items()} if isinstance(v, Mapping) else float(v)
                                     for k, v in self.precision_efficiency.items()}
        d["heldout"] = {k: float(v) for k, v in self.heldout.items()}
        d["series"] = {name: {"op_overhead_us": {c: float(v) for c, v in knobs["op_overhead_us"].items()},
                              "network_overhead_us": float(knobs["network_overhead_us"])}
                       for name, knobs in self.series.items()}
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "<profile>") -> "CalibrationProfile":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown profile field {unknown[0]!r}; valid fields: {', '.join(sorted(known))}")
        for key in ("device", "efficiency", "memory_efficiency", "op_overhead_us", "network_overhead_us"):
            if key not in data:
                raise ConfigError(f"{where}: missing profile field {key!r}")
        if int(data.get("format", PROFILE_FORMAT)) > PROFILE_FORMAT:
            raise ConfigError(f"{where}: profile format {data['format']} is newer than this automc ({PROFILE_FORMAT}); upgrade automc")
        for key in ("efficiency", "op_overhead_us"):
            bad = sorted(set(data[key]) - set(COST_CLASSES))
            if bad:
                raise ConfigError(f"{where}: unknown entry {key}.{bad[0]}; valid entries: {', '.join(COST_CLASSES)}")
        return cls(**{k: data[k] for k in data})


#: theta: [inv_eff(C), overhead(C), inv_mem, net, s/byte repacked, s/element quantized], then (overhead(C), net)
#: per other series; the positions of the scalar knobs:
_MEM, _NET, _REPACK, _QUANT = 2 * _C, 2 * _C + 1, 2 * _C + 2, 2 * _C + 3
_BASE = 2 * _C + 4


def _features(terms: LayerTerms, params: DeviceParams) -> np.ndarray:
    """Design row per policy ``(P, 2C+4)``: linear in [inv_eff(C), overhead(C), inv_mem, net, s/byte repacked,
    s/element quantized]."""
    cls = terms.cost_class
    compute = terms.compute_s * params.inv_efficiency[cls][None, :]
    memory = terms.memory_s * params.inv_memory_efficiency
    compute_bound = (compute >= memory) & terms.present
    memory_bound = (~compute_bound) & terms.present
    p = terms.compute_s.shape[0]
    x = np.zeros((p, _BASE))
    onehot = np.eye(_C)[cls]  # (L, C)
    x[:, :_C] = np.where(compute_bound, terms.compute_s, 0.0) @ onehot
    x[:, _C : 2 * _C] = terms.present.astype(np.float64) @ onehot
    x[:, _C + COST_CLASSES.index("add")] += terms.unfused_ops.sum(axis=1)
    x[:, _MEM] = np.where(memory_bound, terms.memory_s, 0.0).sum(axis=1) + terms.unfused_memory_s.sum(axis=1)
    x[:, _NET] = 1.0
    x[:, _REPACK] = terms.repack_bytes.sum(axis=1)
    x[:, _QUANT] = terms.quantized_elems.sum(axis=1)
    return x


def _series_params(theta: np.ndarray, j: int) -> DeviceParams:
    """The knobs a sample of series ``j`` runs with (0: the device's own; j > 0 swaps in that
    series' per-op and per-inference costs)."""
    params = _params(theta)
    if j == 0:
        return params
    k = _BASE + (j - 1) * (_C + 1)
    return replace(params, overhead_s=theta[k : k + _C].copy(), network_overhead_s=float(theta[k + _C]))


def _design(terms: Sequence[LayerTerms], theta: np.ndarray, series: np.ndarray) -> np.ndarray:
    """Design matrix ``(n, len(theta))``: each sample's ``_features`` with its series' overhead
    and intercept columns moved into that series' block."""
    rows = []
    for t, j in zip(terms, series):
        x = _features(t, _series_params(theta, j))
        if j > 0:
            full = np.zeros((x.shape[0], theta.size))
            k = _BASE + (j - 1) * (_C + 1)
            full[:, :_BASE] = x
            full[:, k : k + _C], full[:, k + _C] = x[:, _C : 2 * _C], x[:, _NET]
            full[:, _C : 2 * _C], full[:, _NET] = 0.0, 0.0
            x = full
        elif theta.size > _BASE:
            x = np.hstack([x, np.zeros((x.shape[0], theta.size - _BASE))])
        rows.append(x)
    return np.vstack(rows)


def _predict(terms: Sequence[LayerTerms], theta: np.ndarray, series: np.ndarray) -> np.ndarray:
    """Seconds per sample, each with its series' knobs."""
    return np.array([network_seconds(t, _series_params(theta, j))[0] for t, j in zip(terms, series)])


def _rel_rmse(terms: Sequence[LayerTerms], theta: np.ndarray, y: np.ndarray, w: np.ndarray | None = None,
              series: np.ndarray | None = None) -> float:
    series = np.zeros(len(terms), dtype=int) if series is None else series
    pred = _predict(terms, theta, series)
    return float(np.sqrt(np.average(((pred - y) / y) ** 2, weights=w)))


def _theta(params: DeviceParams) -> np.ndarray:
    return np.concatenate([params.inv_efficiency, params.overhead_s,
                           [params.inv_memory_efficiency, params.network_overhead_s, params.repack_s_per_byte,
                            params.quantize_s_per_elem]])


def _params(theta: np.ndarray) -> DeviceParams:
    return DeviceParams(
        inv_efficiency=theta[:_C].copy(),
        overhead_s=theta[_C : 2 * _C].copy(),
        inv_memory_efficiency=float(theta[_MEM]),
        network_overhead_s=float(theta[_NET]),
        repack_s_per_byte=float(theta[_REPACK]),
        quantize_s_per_elem=float(theta[_QUANT]),
    )


def _fit(
    terms: Sequence[LayerTerms],
    y: np.ndarray,
    theta_init: np.ndarray,
    basis: np.ndarray,
    prior: np.ndarray,
    free: np.ndarray,
    prior_weight: float,
    rounds: int,
    *,
    fallback: np.ndarray,
    w: np.ndarray,
    floor: np.ndarray | None = None,
    ceiling: np.ndarray | None = None,
    return_err: bool = False,
    series: np.ndarray | None = None,
):
    """Alternate bound classification and NNLS over ``theta = basis @ s`` (s >= 0).

    Rows are relative errors scaled by ``sqrt(w)`` (sample weights, mean 1); ``prior_weight``
    adds ``sqrt(prior_weight n) (s - prior)`` rows. ``floor`` and ``ceiling`` bound theta (inverse
    efficiencies: an efficiency cap keeps the fit physical; seconds per converted element: a rate
    floor); then bounded least squares.
    Returns the round with the lowest weighted relative RMSE (and that RMSE when ``return_err``).
    """
    from scipy.optimize import lsq_linear, nnls

    floor = np.zeros(theta_init.size) if floor is None else floor
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = np.where(basis > 0, floor[:, None] / basis, 0.0).max(axis=0)  # s >= lower keeps theta >= floor
        upper = (np.full(basis.shape[1], np.inf) if ceiling is None
                 else np.where(basis > 0, ceiling[:, None] / basis, np.inf).min(axis=0))
        upper = np.maximum(upper, lower + 1e-30)  # lsq_linear wants lower < upper

    series = np.zeros(len(terms), dtype=int) if series is None else series
    theta = theta_init.copy()
    best, best_err = fallback.copy(), _rel_rmse(terms, fallback, y, w, series)
    root_w = np.sqrt(w)
    n_s = basis.shape[1]
    for _ in range(rounds):
        x = _design(terms, theta, series) @ basis  # (n, n_s)
        a = x / y[:, None] * root_w[:, None]
        b = root_w - a[:, ~free] @ prior[~free]
        used = np.abs(a).sum(axis=0) > 0
        lam = np.sqrt(prior_weight * len(y))
        rows, rhs = [a[:, free]], [b]
        if lam > 0:
            rows.append(np.eye(n_s)[np.ix_(free, free)] * lam)
            rhs.append(lam * prior[free])
        if np.any(lower[free] > 0) or np.any(np.isfinite(upper[free])):
            s_free = lsq_linear(np.vstack(rows), np.concatenate(rhs), bounds=(lower[free], upper[free]), method="bvls").x
        else:
            s_free, _ = nnls(np.vstack(rows), np.concatenate(rhs), maxiter=100 * n_s)
        s_vec = prior.copy()
        s_vec[free] = s_free
        s_vec[~used] = prior[~used] if prior_weight > 0 else s_vec[~used]
        new = basis @ s_vec
        # efficiencies and memory efficiency stay finite: floor their inverse
        for i in list(range(_C)) + [_MEM]:
            new[i] = max(new[i], 1e-3 * fallback[i], 1e-9, floor[i])
        err = _rel_rmse(terms, new, y, w, series)
        if err < best_err:
            best, best_err = new, err
        if np.allclose(new, theta, rtol=1e-6, atol=1e-12):
            break
        theta = new
    return (best, best_err) if return_err else best


def calibrate(
    spec: DeviceSpec,
    samples: Sequence[Sample] | Iterable[tuple[LayerTable, float]],
    *,
    prior_weight: float = 1e-3,
    rounds: int = 8,
    fit_network_overhead: bool = True,
    fit_precision: bool = True,
    fit_quantize: bool = True,
    max_efficiency: Mapping[str, float] | None = None,
    max_memory_efficiency: float | None = None,
    min_quantize_gelems: float | None = None,
    weights: Sequence[float] | None = None,
    robust_scale: float = 0.0,
    source: str = "",
) -> CalibrationProfile:
    """Fit ``spec``'s efficiencies, per-class op overheads, memory efficiency, a network overhead,
    the repack bandwidth and (``fit_precision``, when the samples run at more than one precision)
    the efficiency factor of each precision against the widest one measured, and
    (``fit_quantize``) the rate of INT8 layers' per-element conversions (``quantize_gelems``).

    ``samples`` are ``Sample`` records or ``(table, latency_ms)`` / ``(table, latency_ms,
    policy)`` tuples. Needs at least 2 samples; unused classes keep their prior values.
    ``weights`` (one per sample, default all 1) scale each sample's relative error, e.g. to
    let a few whole networks count as much as many single-op micro-benchmarks.
    ``max_efficiency`` (per cost class) and ``max_memory_efficiency`` cap the fitted fractions
    of peak and bandwidth, and ``min_quantize_gelems`` floors the fitted conversion rate, so few
    samples cannot buy a fit with unphysical terms.
    ``robust_scale`` > 0 refits ``ROBUST_ROUNDS`` times, each sample's weight times
    ``min(1, robust_scale / |log(predicted / measured)|)`` (Huber weights): samples the fit
    misses by more than that factor count less (published figures of one series taken on
    different software versions disagree with each other beyond any model).
    """
    recs = [s if isinstance(s, Sample) else Sample(s[0], float(s[1]), s[2] if len(s) > 2 else Policy()) for s in samples]
    if len(recs) < 2:
        raise ConfigError(f"calibrate({spec.name}): need at least 2 measured samples, got {len(recs)}")
    y = np.array([r.latency_ms * 1e-3 for r in recs])
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ConfigError(f"calibrate({spec.name}): measured latencies must be positive numbers")
    w = np.ones(len(recs)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(recs),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ConfigError(f"calibrate({spec.name}): weights must be {len(recs)} non-negative numbers, not all zero")
    w = w * (len(w) / w.sum())
    if not robust_scale >= 0:
        raise ConfigError(f"calibrate({spec.name}): robust_scale must be >= 0 (0: plain least squares), got {robust_scale}")

    if min_quantize_gelems is not None and not min_quantize_gelems > 0:
        raise ConfigError(f"calibrate({spec.name}): min_quantize_gelems must be > 0 (None: no floor), got {min_quantize_gelems}")
    precision = dict(spec.precision_efficiency)
    terms = _sample_terms(recs, spec, precision)
    measured = _executed_precisions(spec, terms)
    free_precisions = [p for p in measured[1:]] if fit_precision else []  # the widest stays the reference
    names = sorted({r.series for r in recs} - {""})  # other series: own per-op and per-inference costs
    series = np.array([names.index(r.series) + 1 if r.series else 0 for r in recs])
    base = _theta(DeviceParams.of(spec))
    theta0 = np.concatenate([base] + [base[np.r_[_C : 2 * _C, _NET]]] * len(names))
    floor = np.zeros(theta0.size)
    for i, c in enumerate(COST_CLASSES):
        if max_efficiency and c in max_efficiency:
            floor[i] = 1.0 / max_efficiency[c]
    if max_memory_efficiency:
        floor[_MEM] = 1.0 / max_memory_efficiency
    theta0 = np.maximum(theta0, floor)
    ceiling = np.full(theta0.size, np.inf)
    if min_quantize_gelems is not None:
        ceiling[_QUANT] = 1e-9 / min_quantize_gelems
    theta0 = np.minimum(theta0, ceiling)
    w_fit = w
    reweights = ROBUST_ROUNDS if robust_scale > 0 else 0
    for robust_round in range(1 + reweights):
        for _ in range(3 if free_precisions else 1):
            best, best_err = _fit_knobs(terms, y, theta0, w_fit, prior_weight, rounds, fit_network_overhead,
                                        fit_quantize, floor, ceiling, series)
            if not free_precisions:
                break
            precision = _fit_precision_factors(terms, spec, precision, free_precisions, best, y, w_fit, series)
            terms = _sample_terms(recs, spec, precision)
        if robust_round < reweights:  # the next round weights each sample by how far this fit missed it
            miss = np.abs(np.log(_predict(terms, best, series) / y))
            w_fit = w * np.minimum(1.0, robust_scale / np.maximum(miss, 1e-12))
            w_fit = w_fit * (len(w_fit) / w_fit.sum())
    best_err = _rel_rmse(terms, best, y, w, series)

    fitted = _params(best)
    return CalibrationProfile(
        device=spec.name,
        efficiency={c: float(1.0 / fitted.inv_efficiency[i]) for i, c in enumerate(COST_CLASSES)},
        memory_efficiency=float(1.0 / fitted.inv_memory_efficiency),
        op_overhead_us={c: float(fitted.overhead_s[i] * 1e6) for i, c in enumerate(COST_CLASSES)},
        network_overhead_us=float(fitted.network_overhead_s * 1e6),
        repack_gbps=float(1e-9 / fitted.repack_s_per_byte) if fitted.repack_s_per_byte > 0 else None,
        quantize_gelems=float(1e-9 / fitted.quantize_s_per_elem) if fitted.quantize_s_per_elem > 0 else None,
        precision_efficiency={p: v for p, v in precision.items() if p in free_precisions},
        n_samples=len(recs),
        fit_rel_rmse=best_err,
        series={name: {"op_overhead_us": {c: float(p.overhead_s[i] * 1e6) for i, c in enumerate(COST_CLASSES)},
                       "network_overhead_us": float(p.network_overhead_s * 1e6)}
                for name, p in ((name, _series_params(best, j)) for j, name in enumerate(names, start=1))},
        source=source,
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )


def _sample_terms(recs: Sequence[Sample], spec: DeviceSpec, precision: Mapping[str, float]) -> list[LayerTerms]:
    out = []
    for r in recs:
        dev = replace(r.device or spec, precision_efficiency=dict(precision))
        out.append(layer_terms(r.table, r.table.resolve([r.policy]), dev))
    return out


def _executed_precisions(spec: DeviceSpec, terms: Sequence[LayerTerms]) -> list[str]:
    """Precisions the samples' compute layers run at, widest first."""
    bits = set()
    for t in terms:
        bits |= set(np.unique(t.exec_bits[t.present & (t.compute_s > 0)]).tolist())
    by_bits = {b: p for p, b in PRECISION_BITS.items()}
    return [by_bits[b] for b in sorted(bits, reverse=True) if b in by_bits]


def _fit_knobs(terms, y, theta0, w, prior_weight: float, rounds: int, fit_network_overhead: bool, fit_quantize: bool,
               floor, ceiling, series):
    """The roofline knobs for fixed terms (``floor <= theta <= ceiling``): a tied fit, then every
    class free pulled towards it.
    Other series (``series`` > 0) get their own per-op overhead scale and intercept (always free)."""
    n_series = (theta0.size - _BASE) // (_C + 1)
    free = np.ones(theta0.size, dtype=bool)
    if not fit_network_overhead:
        free[_NET] = False
    if not fit_quantize:
        free[_QUANT] = False
    # Stage 1: a tied model (one compute scale, one memory scale, one per-op overhead, one
    # network overhead) fitted without prior: robust with few samples, fixes gross scale.
    tie = np.zeros((theta0.size, 6 + 2 * n_series))
    tie[:_C, 0] = theta0[:_C]
    tie[_C : 2 * _C, 1] = 1e-6
    tie[_MEM, 2] = theta0[_MEM]
    tie[_NET, 3] = 1e-3
    tie[_REPACK, 4] = 1e-10
    tie[_QUANT, 5] = 1e-10
    for j in range(n_series):
        k = _BASE + j * (_C + 1)
        tie[k : k + _C, 6 + 2 * j], tie[k + _C, 7 + 2 * j] = 1e-6, 1e-3
    tie_free = np.array([True, True, True, bool(free[_NET]), True, bool(free[_QUANT])] + [True] * (2 * n_series))
    theta1 = _fit(terms, y, theta0, tie, np.zeros(tie.shape[1]), tie_free, 0.0, rounds, fallback=theta0, w=w,
                  floor=floor, series=series, ceiling=ceiling)
    # Stage 2: every class free, pulled towards the stage-1 values.
    low = np.concatenate([1e-3 * theta0[:_C], np.full(_C, 1e-7), [1e-3 * theta0[_MEM]], [1e-6], [1e-10], [1e-10]]
                         + [np.r_[np.full(_C, 1e-7), 1e-6]] * n_series)
    scale = np.maximum(theta1, low)
    basis = np.diag(scale)
    return _fit(terms, y, theta1, basis, theta1 / scale, free, prior_weight, rounds, fallback=theta1, w=w,
                floor=floor, return_err=True, series=series, ceiling=ceiling)


def _factors(precision: Mapping[str, Any], p: str) -> np.ndarray:
    """The efficiency factor of each cost class at precision ``p`` ``(C,)``."""
    return np.array([precision_factor(precision, p, c) for c in COST_CLASSES])


def _fit_precision_factors(terms: Sequence[LayerTerms], spec: DeviceSpec, precision: Mapping[str, Any],
                           free: Sequence[str], theta: np.ndarray, y: np.ndarray, w: np.ndarray,
                           series: np.ndarray) -> dict[str, Any]:
    """Each free precision's efficiency factors (the knobs fixed): one for every cost class, weakly
    pulled towards 1 (the datasheet's peak ratio), then each class's own, pulled towards that one
    (on the A76 INT8 1x1 kernels fall further short of the INT8 peak than 3x3 ones), each by a
    1-D search in log space. Samples that run bound by overheads or memory at a precision say nothing
    about its compute, and then the prior stands. A layer's compute time is inversely
    proportional to its factor, so a candidate rescales the ``terms`` (costed with ``precision``)."""
    out = dict(precision)
    for p in free:
        bits, now = PRECISION_BITS[p], _factors(precision, p)

        def err(new: np.ndarray, prior: float) -> float:
            ratio = now / new
            scaled = [replace(t, compute_s=np.where(t.exec_bits == bits, t.compute_s * ratio[t.cost_class][None, :],
                                                    t.compute_s)) for t in terms]
            return _rel_rmse(scaled, theta, y, w, series) ** 2 + prior

        # class by class, a narrower precision the device lists runs at least as fast as a wider one
        # (monotone in bits): capped by the narrower ones, floored by the wider ones already fitted
        top, low = np.full(_C, 3.0), np.full(_C, 0.03)
        for q in spec.peak_tops:
            reach = spec.peak_tops[q] * _factors(out, q) / spec.peak_tops[p]
            if PRECISION_BITS[q] < bits:
                top = np.minimum(top, reach)
            elif PRECISION_BITS[q] > bits:
                low = np.maximum(low, reach)
        top = np.maximum(top, low)
        shared = _search(lambda f: err(np.full(_C, f), PRECISION_PRIOR * np.log(f) ** 2), float(low.max()),
                         float(top.min()))
        factors = np.full(_C, shared)
        params = _params(theta)
        used = [c for c in range(_C) if any(_class_share(t, bits, c, params) >= CLASS_SHARE for t in terms)]
        base = PRECISION_PRIOR * np.log(shared) ** 2
        for c in used:
            def class_err(f: float, c: int = c) -> float:
                prior = base + CLASS_PRECISION_PRIOR * np.log(f / shared) ** 2
                return err(np.where(np.arange(_C) == c, f, factors), prior)

            factors[c] = _search(class_err, float(low[c]), float(top[c]))
        out[p] = {c: float(factors[i]) for i, c in enumerate(COST_CLASSES)}
    return out


def _class_share(terms: LayerTerms, bits: int, c: int, params: DeviceParams) -> float:
    """Class ``c``'s share of the time of the layers a sample runs at ``bits``."""
    at = np.where(terms.present & (terms.exec_bits == bits), layer_seconds(terms, params), 0.0)
    total = at.sum()
    return float(at[:, terms.cost_class == c].sum() / total) if total > 0 else 0.0


def _search(err, low: float, top: float) -> float:
    """The factor in [low, top] with the least ``err``: a log grid, then a finer one around it."""
    top = max(top, low)
    f = min(np.geomspace(low, top, 41), key=err)
    return float(min(np.geomspace(max(f / 1.12, low), min(f * 1.12, top), 13), key=err))


def apply_profile(spec: DeviceSpec, profile: CalibrationProfile) -> DeviceSpec:
    """The device with the profile's fitted knobs (a new spec; the original is unchanged)."""
    return replace(
        spec,
        efficiency=dict(profile.efficiency),
        memory_efficiency=float(profile.memory_efficiency),
        op_overhead_us=dict(profile.op_overhead_us),
        network_overhead_us=float(profile.network_overhead_us),
        repack_gbps=profile.repack_gbps,
        quantize_gelems=profile.quantize_gelems,
        precision_efficiency={**spec.precision_efficiency, **profile.precision_efficiency},
        calibrated_from=profile.source or f"{profile.n_samples} measured networks",
    )


def series_profile(profile: CalibrationProfile, name: str) -> CalibrationProfile:
    """The profile as series ``name`` of its samples runs: the shared efficiencies with that
    series' own per-op and per-inference costs (``apply_profile`` it to predict that series)."""
    if name not in profile.series:
        raise ConfigError(f"profile of {profile.device} has no series {name!r}; it has: {', '.join(profile.series) or 'none'}")
    knobs = profile.series[name]
    return replace(profile, op_overhead_us=dict(knobs["op_overhead_us"]),
                   network_overhead_us=float(knobs["network_overhead_us"]), series={})


def device_profile(name: str) -> CalibrationProfile | None:
    """The calibration profile a built-in device's YAML names (``profile:``), if any."""
    path = DEVICES_DIR / f"{name}.yaml"
    if not path.is_file():
        return None
    _, profile = read_device(path)
    return load_profile(profile) if profile is not None else None


def save_profile(profile: CalibrationProfile, path: str | Path) -> Path:
    """Write the profile atomically (temp file + ``os.replace``); YAML unless the suffix is .json."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = profile.to_dict()
    if path.suffix == ".json":
        text = json.dumps(data, indent=2, sort_keys=True)
    else:
        import yaml

        text = yaml.safe_dump(data, sort_keys=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_profile(path: str | Path) -> CalibrationProfile:
    """Read a profile written by ``save_profile``; errors name the file and field."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"calibration profile {path} does not exist; create it with automc.hw_cost.calibrate + save_profile")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parse error becomes one line
        raise ConfigError(f"{path}: cannot parse calibration profile ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: a calibration profile must be a mapping")
    return CalibrationProfile.from_dict(data, where=str(path))
