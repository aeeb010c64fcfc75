"""Every cost of a policy, from the layer table alone (no network built): MACs, params, BitOPs
and size from the table's shapes, latency and energy from the device cost models; and which of
them an experiment tracks for every trial."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from automc import hw_cost
from automc.objectives import Constraint, Metric, parse_constraint, parse_objective
from automc.policy import Policy


def layer_costs(table, policies, metrics: Sequence[Metric]) -> dict[str, tuple[np.ndarray, float]]:
    """Per-layer costs ``(P, L)`` of every non-accuracy metric, and the constant the network adds
    (runtime overhead); a policy's cost is ``per_layer.sum(1) + constant``. The budget solver
    works from these, ``cost_metrics`` sums them: one definition of every cost."""
    if isinstance(policies, Policy):
        policies = [policies]
    out: dict[str, tuple[np.ndarray, float]] = {}
    shapes = None
    estimates: dict[str, object] = {}
    for metric in metrics:
        if metric.needs_training or metric.name in out:
            continue
        if metric.kind in ("macs", "params", "bitops", "size"):
            shapes = shapes if shapes is not None else table.resolve(policies)
            per_layer = hw_cost.layer_size_bytes(shapes) if metric.kind == "size" else getattr(shapes, metric.kind)
            out[metric.name] = (np.asarray(per_layer, dtype=float), 0.0)
            continue
        if metric.device not in estimates:
            estimates[metric.device] = hw_cost.estimate(table, list(policies), metric.device)
        est = estimates[metric.device]
        per_layer, total = ((est.layer_latency_ms, est.latency_ms) if metric.kind == "latency"
                            else (est.layer_energy_mj, est.energy_mj))
        constant = float(total[0] - per_layer[0].sum()) if len(total) else 0.0
        out[metric.name] = (np.asarray(per_layer, dtype=float), constant)
    return out


def cost_metrics(table, policies, metrics: Sequence[Metric]) -> dict[str, np.ndarray]:
    """Every non-accuracy metric of ``metrics`` for each policy, as ``(P,)`` arrays (no network built)."""
    return {name: per_layer.sum(axis=1) + constant
            for name, (per_layer, constant) in layer_costs(table, policies, metrics).items()}


def tracked_cost_metrics(config, objectives: list[Metric], constraints: list[Constraint]) -> list[Metric]:
    """Cost metrics computed for every trial: objectives, constraints, and latency and energy on
    each extra device of ``devices`` (so MLflow compares trials per device)."""
    devices = [parse_objective(f"{kind}@{d}") for d in config.devices for kind in ("latency", "energy")]
    metrics = objectives + [c.metric for c in constraints] + devices + [parse_objective("size")]
    return list({m.name: m for m in metrics if not m.needs_training}.values())


def latency_devices(config) -> list[str]:
    """Devices the experiment cares about: from objectives, constraints and ``devices``."""
    metrics = [parse_objective(o) for o in config.objectives] + [parse_constraint(c).metric for c in config.constraints]
    names = [m.device for m in metrics if m.device] + list(config.devices)
    return list(dict.fromkeys(names))
