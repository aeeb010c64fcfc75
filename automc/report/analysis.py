"""Plain numbers a report shows, computed from a ``SearchResult`` (no plotting, no MindSpore).

Kept apart from the plots and the writers so the console, the HTML/Markdown report and the
PNGs all show the same figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from automc import hw_cost
from automc.objectives import Metric, parse_constraint, parse_objective, resolve_constraints
from automc.policy import Policy
from automc.search.costs import cost_metrics, latency_devices
from automc.search.result import SearchResult, TrialRecord
from automc.search.selection import pareto_front, select_best_by

#: Device used for the per-layer latency breakdown when the experiment names none.
REFERENCE_DEVICE = "arm-a76"
#: Layer kinds that carry weights: the ones a policy prunes and quantizes.
WEIGHT_KINDS = ("conv", "dwconv", "dense")


def devices(result: SearchResult) -> list[str]:
    """Devices the experiment names (objectives, constraints, ``devices``), in that order."""
    return latency_devices(result.config)


def cost_axes(result: SearchResult) -> list[str]:
    """Cost metrics accuracy is traded against: the cost objectives, then latency on each named device."""
    names = [o for o in result.config.objectives if not parse_objective(o).needs_training]
    names += [f"latency@{d}" for d in devices(result)]
    names = list(dict.fromkeys(names)) or ["macs"]
    return [n for n in names if any(n in t.metrics for t in result.trials)] or names


def completed(result: SearchResult) -> list[TrialRecord]:
    return [t for t in result.trials if t.state == "COMPLETE" and "accuracy" in t.metrics]


def front_2d(result: SearchResult, cost: str) -> list[TrialRecord]:
    """Trials not dominated in (accuracy up, ``cost`` down), by increasing cost."""
    front = pareto_front(completed(result), [parse_objective("accuracy"), parse_objective(cost)])
    return sorted(front, key=lambda t: t.metrics[cost])


def _constraints(result: SearchResult):
    """The experiment's constraints, relative ones (``macs <= 25%``) resolved against the baseline."""
    return resolve_constraints([parse_constraint(c) for c in result.config.constraints], result.baseline)


def feasible(result: SearchResult, trial: TrialRecord) -> bool:
    return all(bool(c.satisfied(trial.metrics[c.metric.name])) for c in _constraints(result) if c.metric.name in trial.metrics)


@dataclass(frozen=True)
class DeviceBest:
    device: str
    trial: TrialRecord | None
    baseline_ms: float
    best_ms: float

    @property
    def speedup(self) -> float:
        return self.baseline_ms / self.best_ms if self.best_ms > 0 else math.nan


def best_per_device(result: SearchResult) -> list[DeviceBest]:
    """For each named device, the winner by that device's latency (same rule as the export winner:
    feasible, within ``export.max_accuracy_drop`` of the baseline, else the most accurate)."""
    config = result.config
    out = []
    for device in devices(result):
        key = f"latency@{device}"
        best = select_best_by(key, config, result.trials, _constraints(result), result.baseline.get("accuracy", 0.0))
        base = result.baseline.get(key)
        if base is None and result.table is not None:
            base = float(_latency(result, device, [Policy()])[0].sum())
        out.append(DeviceBest(device, best, float(base if base is not None else math.nan),
                              float(best.metrics.get(key, math.nan)) if best else math.nan))
    return out


def _latency(result: SearchResult, device: str, policies: list[Policy]) -> np.ndarray:
    return hw_cost.estimate(result.table, policies, device).layer_latency_ms


@dataclass(frozen=True)
class LayerBreakdown:
    """Per layer of the baseline vs one trial's policy: shapes, bits, and latency per device (ms)."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    cout: np.ndarray          # (2, L) baseline, trial
    present: np.ndarray       # (2, L) bool
    w_bits: np.ndarray        # (2, L)
    a_bits: np.ndarray        # (2, L)
    latency_ms: dict[str, np.ndarray]  # device -> (2, L)
    reference_device: bool    # True when the experiment names no device

    @property
    def prune_ratio(self) -> np.ndarray:
        """Share of each layer's output channels the policy removes (1.0 for a removed layer)."""
        base = np.maximum(self.cout[0], 1)
        ratio = 1.0 - self.cout[1] / base
        return np.where(self.present[1], ratio, 1.0)


def layer_breakdown(result: SearchResult, trial: TrialRecord | None = None) -> LayerBreakdown | None:
    trial = trial or result.best
    if result.table is None or trial is None or trial.policy is None:
        return None
    table = result.table
    policies = [Policy(), trial.policy]
    shapes = table.resolve(policies)
    named = devices(result)
    lat = {d: _latency(result, d, policies) for d in (named or [REFERENCE_DEVICE])}
    return LayerBreakdown(
        names=tuple(table.names), kinds=tuple(str(k) for k in table.kind),
        cout=np.asarray(shapes.cout), present=np.asarray(shapes.present),
        w_bits=np.asarray(shapes.w_bits), a_bits=np.asarray(shapes.a_bits),
        latency_ms=lat, reference_device=not named,
    )


def best_so_far(values: list[float], direction: str) -> list[float]:
    out, cur = [], math.nan
    for v in values:
        if math.isfinite(v) and (math.isnan(cur) or (v > cur if direction == "maximize" else v < cur)):
            cur = v
        out.append(cur)
    return out


def objective_metrics(result: SearchResult) -> list[Metric]:
    return [parse_objective(o) for o in result.config.objectives]


def metric_value(result: SearchResult, trial: TrialRecord | None, key: str) -> float | None:
    """``key`` of a trial (``None``: the baseline): as recorded, else computed by the cost models
    from the layer table (e.g. ``params`` or ``size`` when the search did not track them)."""
    recorded = result.baseline if trial is None else trial.metrics
    if key in recorded:
        return float(recorded[key])
    metric = _maybe_metric(key)
    if metric is None or metric.needs_training or result.table is None:
        return None
    policy = Policy() if trial is None else trial.policy
    if policy is None:
        return None

    return float(cost_metrics(result.table, policy, [metric])[metric.name][0])


def _maybe_metric(key: str) -> Metric | None:
    try:
        return parse_objective(key)
    except ValueError:
        return None


def policy_text(policy: Policy | None, limit: int = 6) -> str:
    """A short one-line policy: ``prune conv1.0=0.25 conv2.0=0.5; w_bits fc=8 ...``."""
    if policy is None:
        return "-"
    parts = []
    for section, values in policy.to_dict().items():
        if not values:
            continue
        items = list(values.items())
        shown = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in items[:limit])
        more = f" (+{len(items) - limit})" if len(items) > limit else ""
        parts.append(f"{section} {shown}{more}")
    return "; ".join(parts) or "(identity)"
