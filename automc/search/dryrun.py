"""``automc search --dry-run``: validate, analyse the network and print the search space, no training."""

from __future__ import annotations

from typing import TYPE_CHECKING

from automc.algorithms import build_compressors
from automc.objectives import fmt_metric, parse_constraint, parse_objective, resolve_constraints
from automc.policy import Policy
from automc.search.accelerator import resolve
from automc.search.baseline import analyse, load_data
from automc.search.costs import cost_metrics, tracked_cost_metrics
from automc.search.evaluate import build_baseline
from automc.search.projection import check_reachable
from automc.search.space import SearchSpace
from automc.search.strategies.sensitivity import decision_grid, scored_decisions

if TYPE_CHECKING:
    from automc.config import ExperimentConfig


def _analyse(config: ExperimentConfig):
    """The data, the untrained network's layer table and the search space (nothing trained)."""
    data = load_data(config)
    net = build_baseline(config, data.num_classes, data.input_shape)
    table = analyse(config, net, data.input_shape)
    return data, table, SearchSpace(table, build_compressors(config))


def dry_run(config: ExperimentConfig) -> str:
    """Everything a search would check before training: data, network, layer table, space, costs."""
    ex = config.execution
    where = resolve(ex.accelerator) if ex.backend == "local" else ex.accelerator  # Ray workers resolve on their node
    data, table, space = _analyse(config)
    constraints = [parse_constraint(c) for c in config.constraints]
    metrics = tracked_cost_metrics(config, [parse_objective(o) for o in config.objectives], constraints)
    costs = cost_metrics(table, Policy(), [parse_objective(k) for k in ("macs", "params")] + metrics)
    lines = [
        f"experiment {config.name!r} is valid",
        f"data: {data.name}, {len(data.train)}/{len(data.val)}/{len(data.test)} train/val/test samples, "
        f"input {data.input_shape}, {data.num_classes} classes",
        f"model: {config.model.name or config.model.factory}: {len(table)} layers, "
        f"{len(table.prunable_groups)} prunable channel groups of {len(table.coupling)}",
        table.coverage().to_text(),
        f"accelerator: {where}" + (" (auto)" if ex.accelerator == "auto" and where != "auto" else "")
        + (f", device {ex.device_id}" if where in ("gpu", "ascend") and ex.backend == "local" else "")
        + (f"; per trial {ex.gpus_per_trial:g} GPU" if ex.gpus_per_trial else "")
        + (f"; per trial {ex.npus_per_trial} NPU" if ex.npus_per_trial else ""),
        "",
        table.to_text(),
        "",
        f"search space ({len(space)} decisions, strategy {config.search.strategy}, {config.search.n_trials} trials):",
        space.describe() or "(empty)",
        "",
    ]
    nas = config.compress.nas
    if nas is not None and nas.supernet is not None:
        lines += [f"elastic training after the baseline: {nas.supernet.epochs:g} epochs of sandwich-rule steps (the "
                  f"largest, the smallest and {nas.supernet.random_subnets} random sub-networks per step), once, "
                  "cached with the baseline", ""]
    lines.append("baseline predicted costs:")
    lines += [f"  {name}: {float(v[0]):.6g}" for name, v in costs.items()]
    if constraints:
        resolved = resolve_constraints(constraints, {name: float(v[0]) for name, v in costs.items()})
        check_reachable(table, space, resolved)
        lines += ["", "constraints:"]
        lines += [f"  {c.text} of baseline = {fmt_metric(c.metric.name, r.value)}" if c.relative else f"  {c.text}"
                  for c, r in zip(constraints, resolved)]
    unprunable = [g for g in table.coupling if not g.prunable]
    if unprunable:
        lines.append("")
        lines += [f"not prunable: {g.name}: {g.reason}" for g in unprunable]
    return "\n".join(lines)


def sensitivity_plan(config: ExperimentConfig) -> str:
    """What ``automc sensitivity`` would score, from the untrained network (nothing is trained or written)."""
    data, _, space = _analyse(config)
    decisions = scored_decisions(space.decisions)
    entries = sum(len(decision_grid(d)) for d in decisions)
    samples = min(config.search.sensitivity_samples, len(data.val))
    lines = [f"sensitivity of {config.model.name or config.model.factory}: {len(decisions)} decisions, "
             f"{entries} entries, each scored on {samples} validation samples after batch-norm re-estimation"]
    lines += [f"  {d.param_name}: {list(decision_grid(d))}" for d in decisions]
    lines.append("(--dry-run: nothing trained, scored or written)")
    return "\n".join(lines)
