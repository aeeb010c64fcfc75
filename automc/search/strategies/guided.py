"""Sensitivity-guided strategies: the budget solver proposes, TPE refines (or the solver alone)."""

from __future__ import annotations

from typing import Sequence

from automc.errors import ConfigError
from automc.search.strategies.base import Log, Proposal, warm_start_size
from automc.search.strategies.samplers import TPE
from automc.search.strategies.sensitivity import load_or_analyse
from automc.search.strategies.solver import BudgetSolver, budgets_of

#: budget levels of an unconstrained search: shares of the baseline's first cost objective
FRONT_LEVELS = (0.7, 0.5, 0.35, 0.25, 0.15, 0.1, 0.07, 0.05)


def _budgets(prepared) -> tuple[dict, bool]:
    """(solver budgets, constrained?): the cost constraints, else the first cost objective at
    the baseline's cost (scaled by the levels)."""
    budgets = budgets_of(prepared.constraints)
    if budgets:
        return budgets, True
    cost = next((m for m in prepared.objectives if not m.needs_training), None)
    if cost is None:
        raise ConfigError("search.strategy 'sensitivity'/'solver' needs a cost budget: add a constraint such as "
                          "'macs <= 25%' or a cost objective such as 'macs'")
    return {cost: prepared.baseline_metrics[cost.name]}, False


#: k solutions at one budget: the optimum, then one per level of predicted damage, each this
#: share of the optimum's damage above the last (12 solutions span 1-2.1x the optimum's damage)
DAMAGE_STEP = 0.1
#: the optimum's damage a step is a share of when the optimum is predicted harmless (nats of loss)
MIN_DAMAGE = 0.01


def _spread(solver, budgets: dict, k: int, scale: float) -> list:
    """``k`` solutions under ``budgets`` x ``scale``: the optimum, then the least-damage policy at
    or above each of ``k - 1`` levels of predicted damage, ``DAMAGE_STEP`` of the optimum's
    apart. The k best alone differ by one grid step of one decision each, within a few % of
    the optimum's damage: too alike to be worth a fine-tune each, and too alike for any
    fine-tune to show whether the solver orders policies right."""
    best = solver.solve(budgets, budget_scale=scale)
    if not best or k == 1:
        return best
    step = DAMAGE_STEP * max(best[0].damage, MIN_DAMAGE)
    out = list(best)
    for j in range(1, k):
        out += solver.solve(budgets, budget_scale=scale, min_damage=best[0].damage + j * step)
    return out


def solver_proposals(prepared, log: Log, *, n: int, levels: Sequence[float] = (1.0,)) -> list[Proposal]:
    """Up to ``n`` solver solutions, least predicted damage first. With cost constraints, the
    optimum at each budget ``level`` (a share of each budget) but the first, and the rest at
    the first, spread over predicted damage; without, one per level of ``FRONT_LEVELS`` along
    the first cost objective."""
    if any(d.section == "nas" for d in prepared.space.decisions):
        raise ConfigError("the sensitivity solver covers pruning and quantization; for compress.nas use "
                          "search.strategy tpe, nsga2 or random")
    sensitivity = load_or_analyse(prepared, log=log)
    budgets, constrained = _budgets(prepared)
    solver = BudgetSolver(prepared.context.table, sensitivity, prepared.space.decisions, list(budgets))
    plan = ([(lv, 1) for lv in levels[1:]] if constrained else [(lv, 1) for lv in FRONT_LEVELS[:n]])
    first = (levels[0], max(1, n - len(plan))) if constrained else None
    out: list[Proposal] = []
    seen: set[str] = set()
    for scale, k in ([first] if first else []) + plan:
        for s in _spread(solver, budgets, k, scale):
            key = s.policy.to_json()
            if key in seen:
                continue
            seen.add(key)
            out.append(Proposal(s.policy, {"source": "solver", "budget_scale": scale,
                                           "predicted_damage": round(s.damage, 6)}))
    if not out:
        raise ConfigError("the budget solver found no policy within the budget: relax the constraints or allow "
                          "more compression (compress.pruning.max_ratio, lower bit-widths)")
    log(f"solver: {len(out)} policies, predicted loss increase "
        f"{min(p.attrs['predicted_damage'] for p in out):.4f}-{max(p.attrs['predicted_damage'] for p in out):.4f}")
    return out[:max(n, 1)]


def solver_warm_start(config, prepared, log: Log) -> list[Proposal]:
    """``search.warm_start: sensitivity``: about a third of the study's trials are the solver's
    solutions, at the budget and at 90 % and 80 % of it."""
    return solver_proposals(prepared, log, n=warm_start_size(config.search.n_trials), levels=(1.0, 0.9, 0.8))


class SensitivityTPE(TPE):
    """Solver solutions at several budget levels seed the study; TPE refines around them."""

    name = "sensitivity"

    def propose(self, prepared, log: Log) -> list[Proposal]:
        return solver_warm_start(self.config, prepared, log)


class SolverOnly(TPE):
    """The solver alone: ``n_trials`` of its solutions at the budget, its optimum and then
    policies predicted 10 %, 20 %, ... worse (the fine-tune decides among them)."""

    name = "solver"

    def propose(self, prepared, log: Log) -> list[Proposal]:
        return solver_proposals(prepared, log, n=self.config.search.n_trials)

    def max_trials(self, proposals: list[Proposal]) -> int | None:
        return len(proposals)
