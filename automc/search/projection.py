"""Projecting a sampled policy onto the cost budget before any training (AMC-style).

AMC clips each layer's action so the whole network can still meet the budget; here a policy
that breaks a cost constraint (``latency@dev <= 2ms``, ``size <= 1MB``, ``macs <= 5M``) is moved
towards more compression, each prunable group in proportion to its share of the constrained
cost: ``r_g(t) = r_g + t * share_g / max(share) * (max_ratio - r_g)``; past ``t = 1`` every
group moves on evenly to ``max_ratio``. The first point on that path that meets every cost
constraint is found on a grid, in one vectorised cost-model call.
If pruning alone cannot meet the budget, bit-widths are lowered the HAQ way (cheapest accuracy
loss per unit of cost first) where the search has bit-width decisions.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from automc import hw_cost
from automc.algorithms.quantization.projection import project_bits
from automc.analysis.layer_table import LayerTable
from automc.errors import CompressionError, ConfigError
from automc.objectives import Constraint, fmt_metric
from automc.policy import Policy
from automc.search.costs import cost_metrics
from automc.search.strategies.proxy import extremes

GRID = np.linspace(0.0, 1.0, 41)


def _cost_constraints(constraints: Sequence[Constraint]) -> list[Constraint]:
    return [c for c in constraints if not c.metric.needs_training and c.op == "<="]


def check_reachable(table: LayerTable, space, constraints: Sequence[Constraint]) -> None:
    """Refuse cost constraints (resolved to absolute values) that even the most compressed
    candidate of ``space`` misses: every trial of such a search would train a network that can
    never be feasible (a fitted device model with a fixed cost per op or per inference puts a
    floor under latency that no pruning moves)."""
    cons = _cost_constraints(constraints)
    if not cons:
        return
    most = space.policy_from_params(extremes(space.decisions)[1]) if space.decisions else Policy()
    costs = cost_metrics(table, [most], [c.metric for c in cons])
    for c in cons:
        cost = float(costs[c.metric.name][0])
        if c.violation(cost) > 0:
            raise ConfigError(f"constraints: {c.text!r} (budget {fmt_metric(c.metric.name, c.value)}) cannot be met: "
                              f"the most compressed candidate of the search space costs {fmt_metric(c.metric.name, cost)}; "
                              "raise the budget or allow more compression (compress.pruning.max_ratio, fewer bits)")


def _violation(table: LayerTable, policies: list[Policy], constraints: list[Constraint]) -> np.ndarray:
    costs = cost_metrics(table, policies, [c.metric for c in constraints])
    return np.max([c.violation(costs[c.metric.name]) for c in constraints], axis=0)


def _group_shares(table: LayerTable, policy: Policy, constraint: Constraint) -> np.ndarray:
    """Each coupling group's share of the constrained cost (layers reading or writing it)."""
    shapes = table.resolve(policy)
    metric = constraint.metric
    if metric.kind == "latency" or metric.kind == "energy":
        per_layer = hw_cost.estimate(table, [policy], metric.device).layer_latency_ms[0]
    elif metric.kind == "size":
        per_layer = hw_cost.layer_size_bytes(shapes)[0]
    elif metric.kind == "bitops":
        per_layer = shapes.bitops[0]
    elif metric.kind == "params":
        per_layer = shapes.params[0]
    else:
        per_layer = shapes.macs[0]
    shares = np.zeros(len(table.coupling))
    for g in range(len(table.coupling)):
        shares[g] = per_layer[table.rows_of(g)].sum()
    return shares


def project(table: LayerTable, policy: Policy, constraints: Sequence[Constraint], *, max_ratio: float,
            bit_choices: Sequence[int] = ()) -> tuple[Policy, bool]:
    """``(projected policy, feasible)``; the policy is returned unchanged when it already fits."""
    cons = _cost_constraints(constraints)
    if not cons or _violation(table, [policy], cons)[0] <= 0:
        return policy, True
    prunable = [g.name for g in table.prunable_groups]
    if prunable:
        shares = np.sum([_group_shares(table, policy, c) / max(_group_shares(table, policy, c).sum(), 1e-12)
                         for c in cons], axis=0)
        weight = {g.name: shares[i] / max(shares.max(), 1e-12) for i, g in enumerate(table.coupling)}
        candidates = []
        for t in GRID:
            prune = {name: float(min(max_ratio, r + t * weight[name] * (max_ratio - r)))
                     for name in prunable for r in [policy.prune.get(name, 0.0)]}
            candidates.append(replace(policy, prune=prune))
        # then on from there towards every group at max_ratio: the first line moves only the
        # costliest group all the way, so a reachable budget may still be out of its reach
        last = candidates[-1]
        candidates += [replace(last, prune={name: float(r + s * (max_ratio - r)) for name, r in last.prune.items()})
                       for s in GRID[1:]]
        ok = np.nonzero(_violation(table, candidates, cons) <= 0)[0]
        if len(ok):
            return candidates[ok[0]], True
        policy = candidates[-1]
    if bit_choices and policy.w_bits:
        return _lower_bits(table, policy, cons, sorted(set(bit_choices)))
    return policy, False


def _lower_bits(table: LayerTable, policy: Policy, cons: list[Constraint], choices: list[int]) -> tuple[Policy, bool]:
    """HAQ's rule (``project_bits``): lower one layer's weight bits at a time, where the cost
    saved per unit of added quantisation noise is largest, until the constraints hold."""
    try:
        projected = project_bits(table, policy, budget=0.0, bit_choices=choices, layers=list(policy.w_bits),
                                 budget_fn=lambda t, p: float(_violation(t, [p], cons)[0]))
    except CompressionError:
        return policy, False
    return projected, True
