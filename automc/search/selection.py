"""Choosing among trials: the winner under the constraints, and the Pareto front."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from automc.objectives import Constraint, Metric
from automc.search.result import TrialRecord

if TYPE_CHECKING:
    from automc.config import ExperimentConfig


def select_metric(config: ExperimentConfig) -> str:
    return config.export.select_by or next((o for o in config.objectives if o != "accuracy"), "macs")


def select_best_by(metric: str, config: ExperimentConfig, trials: list[TrialRecord], constraints: list[Constraint],
                   baseline_accuracy: float) -> TrialRecord | None:
    """The winner by the rule of :func:`select_best` with ``export.select_by`` set to ``metric``
    (e.g. ``latency@t4``: the per-device winner)."""
    cfg = config.model_copy(update={"export": config.export.model_copy(update={"select_by": metric})})
    return select_best(cfg, trials, constraints, baseline_accuracy)


def select_best(config: ExperimentConfig, trials: list[TrialRecord], constraints: list[Constraint],
                baseline_accuracy: float) -> TrialRecord | None:
    """The winner among completed trials that satisfy every constraint.

    Objectives ``[accuracy]`` with a cost constraint (and no ``export.select_by``): the most
    accurate feasible trial, since the constraints already bound the cost. Otherwise (e.g. a
    cost objective): among feasible trials that lose at most ``export.max_accuracy_drop`` points, the
    one with the lowest ``select_by`` cost (ties: higher accuracy); if none is that accurate, the
    most accurate feasible trial."""
    done = [t for t in trials if t.state == "COMPLETE" and "accuracy" in t.metrics]
    feasible = [t for t in done if all(bool(c.satisfied(t.metrics[c.metric.name]))
                                       for c in constraints if c.metric.name in t.metrics)]
    if not feasible:
        return None
    cost_bound = any(not c.metric.needs_training for c in constraints)
    if list(config.objectives) == ["accuracy"] and cost_bound and not config.export.select_by:
        return max(feasible, key=lambda t: t.metrics["accuracy"])
    key = select_metric(config)
    close = [t for t in feasible if baseline_accuracy - t.metrics["accuracy"] <= config.export.max_accuracy_drop]
    if close:
        return min(close, key=lambda t: (t.metrics.get(key, math.inf), -t.metrics["accuracy"]))
    return max(feasible, key=lambda t: t.metrics["accuracy"])


def pareto_front(trials: list[TrialRecord], objectives: list[Metric]) -> list[TrialRecord]:
    """Non-dominated completed trials over ``objectives`` (directions respected)."""
    done = [t for t in trials if t.state == "COMPLETE" and all(m.name in t.metrics for m in objectives)]
    signs = np.array([-1.0 if m.direction == "maximize" else 1.0 for m in objectives])
    values = np.array([[t.metrics[m.name] for m in objectives] for t in done]) * signs if done else np.zeros((0, 0))
    front = []
    for i, t in enumerate(done):
        dominated = np.any(np.all(values <= values[i], axis=1) & np.any(values < values[i], axis=1))
        if not dominated:
            front.append(t)
    return sorted(front, key=lambda t: -t.metrics["accuracy"])
