"""Search strategies, keyed by ``search.strategy``: each proposes policies and observes results
through the Optuna study; none trains (the executor does).

``tpe``, ``nsga2``, ``random``, ``cmaes``, ``gp``   Optuna's samplers
``sensitivity``  the budget solver's solutions over the baseline's per-decision sensitivity
                 seed the study, then TPE refines around them
``solver``       the solver alone: its best solutions at the budget, best first
``uniform``      the reference: one pruning ratio / bit-width for every layer, meeting the budget
``evolution``    Once-for-All: an accuracy predictor fitted on measured proxy accuracies scores
                 thousands of candidates under the budget; the best are fine-tuned
``greedy``       NetAdapt: one-step shrinks chosen by proxy accuracy lost per cost saved

``search.warm_start: sensitivity`` seeds any of them with the solver's solutions (the
``WARM_STARTS`` registry). The intelligence they use lives beside them: ``sensitivity`` (the
baseline's per-decision scores), ``solver`` (the budget solver), ``proxy`` (accuracy without a
fine-tune, and the predictor over it), ``fidelity`` (stopping rules inside a trial).
"""

from __future__ import annotations

from automc.registry import Registry
from automc.search.strategies.base import Proposal, Strategy, WarmStart, enqueue_once, strategy_seed

STRATEGIES: Registry[type[Strategy]] = Registry("search.strategy")
for _name, _target in {
    "tpe": "automc.search.strategies.samplers:TPE",
    "nsga2": "automc.search.strategies.samplers:NSGA2",
    "random": "automc.search.strategies.samplers:Random",
    "cmaes": "automc.search.strategies.samplers:CmaEs",
    "gp": "automc.search.strategies.samplers:GP",
    "sensitivity": "automc.search.strategies.guided:SensitivityTPE",
    "solver": "automc.search.strategies.guided:SolverOnly",
    "uniform": "automc.search.strategies.uniform:Uniform",
    "evolution": "automc.search.strategies.evolution:Evolution",
    "greedy": "automc.search.strategies.evolution:Greedy",
}.items():
    STRATEGIES.register(_name, _target)

WARM_STARTS: Registry[WarmStart] = Registry("search.warm_start")
WARM_STARTS.register("sensitivity", "automc.search.strategies.guided:solver_warm_start")

__all__ = ["STRATEGIES", "WARM_STARTS", "Proposal", "Strategy", "WarmStart", "enqueue_once", "make_strategy",
           "strategy_seed"]


def make_strategy(config, *, n_objectives: int) -> Strategy:
    """The strategy of ``config.search.strategy``, seeded by ``config.search.warm_start`` if set."""
    warm_start = config.search.warm_start
    return STRATEGIES.get(config.search.strategy)(
        config, n_objectives=n_objectives, warm_start=WARM_STARTS.get(warm_start) if warm_start else None)
