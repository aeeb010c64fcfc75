"""The reference users compare to: one pruning ratio, one bit-width (or both) for every layer.

``uniform_policies`` lists such policies from least to most compressed; with cost constraints
only those within budget, each bit-width's least compressed first (the line search for the
single ratio that meets the budget), so ``uniform_at_budget`` is the first of them.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np

from automc.algorithms import Decision
from automc.algorithms.nas import uniform_width
from automc.objectives import Constraint, Metric
from automc.policy import FLOAT_BITS, Policy
from automc.search.costs import cost_metrics
from automc.search.space import policy_from_values
from automc.search.strategies.base import Log, Proposal, Strategy
from automc.search.strategies.proxy import extremes


def _ratio_grid(decisions: Sequence[Decision]) -> list[float]:
    prune = [d for d in decisions if d.section == "prune"]
    if not prune:
        return [0.0]
    d = prune[0]
    step = d.step or 0.05
    return [round(d.low + i * step, 6) for i in range(int(np.floor((d.high - d.low) / step + 1e-9)) + 1)]


def _bit_grid(decisions: Sequence[Decision]) -> list[tuple[int, int]]:
    w = sorted({b for d in decisions if d.section == "w_bits" for b in d.choices}, reverse=True)
    a = sorted({b for d in decisions if d.section == "a_bits" for b in d.choices})
    if not w:
        return [(FLOAT_BITS, FLOAT_BITS)]
    # activations at the same width where allowed, else the nearest wider choice
    return [(b, next((x for x in a if x >= b), a[-1] if a else FLOAT_BITS)) for b in w]


def _uniform(decisions: Sequence[Decision], ratio: float, w_bits: int, a_bits: int) -> Policy:
    """Every pruning decision at ``ratio``, every weight / activation decision at its bit-width."""
    value = {"prune": ratio, "w_bits": w_bits, "a_bits": a_bits}
    return policy_from_values(decisions, {d.param_name: value[d.section] for d in decisions if d.section in value})


def _uniform_widths(decisions: Sequence[Decision]) -> list[Policy]:
    """NAS-only spaces: one width choice (common to every width decision) for every stage, widest
    first; depths and kernels at their least compressed choice."""
    widths = [d for d in decisions if d.section == "nas" and d.key.endswith(".width")]
    common = sorted(set.intersection(*(set(d.choices) for d in widths)), reverse=True) if widths else []
    least = extremes(decisions)[0]
    return [policy_from_values(decisions, {**least, **{d.param_name: w for d in widths}}) for w in common]


def uniform_policies(table, decisions: Sequence[Decision], constraints: Sequence[Constraint] = (),
                     order_by: Metric | None = None) -> list[Policy]:
    """Uniform policies of the search space: one pruning ratio / bit-width for every layer (in a
    NAS-only space, one width choice for every stage). With cost constraints: those within
    budget, the least compressed of each bit-width first, then the rest in order of ``order_by``
    cost (descending); without: every one, in that order."""
    if any(d.section in ("prune", "w_bits") for d in decisions):
        cands = [_uniform(decisions, r, w, a) for (w, a), r in itertools.product(_bit_grid(decisions),
                                                                                     _ratio_grid(decisions))]
    else:
        cands = _uniform_widths(decisions)
    if not cands:
        return []
    cons = [c for c in constraints if not c.metric.needs_training]
    metrics = [c.metric for c in cons] + ([order_by] if order_by is not None else [])
    costs = cost_metrics(table, cands, metrics) if metrics else {}
    ok = np.ones(len(cands), dtype=bool)
    for c in cons:
        ok &= c.satisfied(costs[c.metric.name])
    key = costs[order_by.name] if order_by is not None else np.arange(len(cands))[::-1].astype(float)
    order = [i for i in np.argsort(-key, kind="stable") if ok[i]]
    firsts, seen_bits = [], set()
    for i in order:  # the line search: per bit-width, the smallest ratio within budget
        bits = tuple(cands[i].w_bits.values())[:1]
        if cons and bits not in seen_bits:
            seen_bits.add(bits)
            firsts.append(i)
    rest = [i for i in order if i not in firsts]
    return [cands[i] for i in firsts + rest]


def uniform_width_at_budget(table, constraints: Sequence[Constraint], *, tol: float = 1e-3) -> Policy | None:
    """NAS spaces: every declared width scaled by one continuous multiplier, the largest within
    the cost constraints (bisection; cost is monotone in width), full depth and kernels. The
    network a user shrinks by hand (None if even a 1 % width misses the budget)."""
    def ok(w: float) -> bool:
        policy = Policy(nas=uniform_width(table, w))
        costs = cost_metrics(table, policy, [c.metric for c in constraints])
        return all(bool(c.satisfied(costs[c.metric.name])[0]) for c in constraints)

    if ok(1.0):
        return Policy(nas=uniform_width(table, 1.0))
    lo, hi = 0.01, 1.0
    if not ok(lo):
        return None
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return Policy(nas=uniform_width(table, math.floor(lo * 1e4) / 1e4))  # rounded down: still within


def uniform_at_budget(table, decisions: Sequence[Decision], constraints: Sequence[Constraint],
                      order_by: Metric | None = None) -> Policy | None:
    """The least compressed uniform policy within the cost constraints (None if none is): one
    pruning ratio / bit-width for every layer, or for a NAS-only space one width multiplier."""
    if not any(d.section in ("prune", "w_bits") for d in decisions):
        if any(d.section == "nas" and d.key.endswith(".width") for d in decisions):
            return uniform_width_at_budget(table, [c for c in constraints if not c.metric.needs_training])
        return None
    found = uniform_policies(table, decisions, constraints, order_by)
    return found[0] if found else None


class Uniform(Strategy):
    """Evaluates uniform policies only: within the budget (least compressed first), or spread
    evenly over the whole range without one."""

    name = "uniform"

    def propose(self, prepared, log: Log) -> list[Proposal]:
        cfg = self.config
        order_by = next((m for m in [c.metric for c in prepared.constraints] + prepared.objectives
                         if not m.needs_training), None)
        found = uniform_policies(prepared.context.table, prepared.space.decisions, prepared.constraints, order_by)
        n = cfg.search.n_trials
        if not prepared.constraints and len(found) > n:
            found = [found[int(i)] for i in np.unique(np.linspace(0, len(found) - 1, n).round())]
        found = found[:n]
        log(f"uniform: {len(found)} policies" + (" within the budget" if prepared.constraints else ""))
        return [Proposal(p, {"source": "uniform", "rank": i}) for i, p in enumerate(found)]

    def sampler(self, n_proposed: int):
        import optuna

        return optuna.samplers.RandomSampler(seed=self.seed)  # never reached: max_trials = proposals

    def max_trials(self, proposals: list[Proposal]) -> int | None:
        return len(proposals)
