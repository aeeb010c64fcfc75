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

``search.warm_start: sensitivity`` seeds any of them with the solver's solutions.
"""

from __future__ import annotations

from automc.registry import Registry
from automc.search.strategies._base import Proposal, Strategy, enqueue_once, strategy_seed

STRATEGIES: Registry[type[Strategy]] = Registry("search.strategy")
for _name, _target in {
    "tpe": "automc.search.strategies._optuna:TPE",
    "nsga2": "automc.search.strategies._optuna:NSGA2",
    "random": "automc.search.strategies._optuna:Random",
    "cmaes": "automc.search.strategies._optuna:CmaEs",
    "gp": "automc.search.strategies._optuna:GP",
    "sensitivity": "automc.search.strategies._sensitivity:SensitivityTPE",
    "solver": "automc.search.strategies._sensitivity:SolverOnly",
    "uniform": "automc.search.strategies._uniform:Uniform",
    "evolution": "automc.search.strategies._nas:Evolution",
    "greedy": "automc.search.strategies._nas:Greedy",
}.items():
    STRATEGIES.register(_name, _target)

__all__ = ["STRATEGIES", "Proposal", "Strategy", "enqueue_once", "make_strategy", "strategy_seed"]


def make_strategy(config, *, n_objectives: int) -> Strategy:
    """The strategy of ``config.search.strategy``."""
    return STRATEGIES.get(config.search.strategy)(config, n_objectives=n_objectives)
