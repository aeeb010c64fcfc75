"""``automc search --dry-run``: validate, analyse the network and print the search space, no training."""

from __future__ import annotations

from automc.algorithms import build_compressors
from automc.analysis import build_layer_table
from automc.config import ExperimentConfig
from automc.policy import Policy
from automc.search.objectives import cost_metrics, parse_constraint, parse_objective
from automc.search.space import SearchSpace


def dry_run(config: ExperimentConfig) -> str:
    """Everything a search would check before training: data, network, layer table, space, costs."""
    from automc.search.evaluate import build_baseline
    from automc.search.runner import load_data, tracked_cost_metrics

    data = load_data(config)
    net = build_baseline(config, data.num_classes, data.input_shape)
    table = build_layer_table(net, data.input_shape, seed=config.seed)
    space = SearchSpace(table, build_compressors(config))
    metrics = tracked_cost_metrics(config, [parse_objective(o) for o in config.objectives],
                                   [parse_constraint(c) for c in config.constraints])
    costs = cost_metrics(table, Policy(), [parse_objective(k) for k in ("macs", "params")] + metrics)
    lines = [
        f"experiment {config.name!r} is valid",
        f"data: {data.name}, {len(data.train)}/{len(data.val)}/{len(data.test)} train/val/test samples, "
        f"input {data.input_shape}, {data.num_classes} classes",
        f"model: {config.model.name or config.model.factory}: {len(table)} layers, "
        f"{len(table.prunable_groups)} prunable channel groups",
        "",
        table.to_text(),
        "",
        f"search space ({len(space)} decisions, strategy {config.search.strategy}, {config.search.n_trials} trials):",
        space.describe() or "(empty)",
        "",
        "baseline predicted costs:",
    ]
    lines += [f"  {name}: {float(v[0]):.6g}" for name, v in costs.items()]
    unprunable = [g for g in table.coupling if not g.prunable]
    if unprunable:
        lines.append("")
        lines += [f"not prunable: {g.name}: {g.reason}" for g in unprunable]
    return "\n".join(lines)
