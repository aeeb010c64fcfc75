"""Multi-fidelity: a cheap proxy screens candidates, only the promising get the full fine-tune.

A trial reports its validation accuracy at steps: step 0 is the proxy (the compressed network
with batch-norm re-estimated, before any fine-tuning, as EagleEye ranks candidates), step k
the accuracy after fine-tuning epoch k. After each step a rule may stop it:

``median``   below the median of completed trials at the same step (Optuna's median rule);
``halving``  successive halving: outside the top ``1/eta`` of the finished trials that reached
             the same step (so at step 0 two thirds of the candidates cost no fine-tune at all);
``none``     every trial runs to the end.

A smaller network is less accurate before and during fine-tuning, so comparing across cost
levels would stop the most compressed candidates first and the cheap end of the Pareto front
would never be explored. Every rule therefore judges a trial only against trials whose cost
(the constrained, else the first cost objective) is within ``BAND`` (+-10 %) of its own.
Fine-tune effort is counted in epochs per trial (``finetune_epochs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from automc.errors import AutomcError, ConfigError
from automc.objectives import parse_constraint, parse_objective

RULES = ("median", "halving", "none")
BAND = 0.10
STEP_ATTR = "val_accuracy_step_{}"


class Stopped(AutomcError):
    """Raised inside a trial that a rule stopped; the executor turns it into a PRUNED trial."""

    def __init__(self, message: str, epochs_trained: float = 0.0):  # default: unpickling passes args only
        super().__init__(message)
        self.epochs_trained = epochs_trained


@dataclass(frozen=True)
class StoppingRule:
    rule: str = "median"
    n_startup: int = 4  # peers needed in the band before the rule judges anyone
    eta: int = 3  # halving keeps the top 1/eta
    band: float = BAND

    def __post_init__(self):
        if self.rule not in RULES:
            raise ConfigError(f"unknown search.pruner {self.rule!r}; valid: {', '.join(RULES)}")

    def in_band(self, cost: float | None, peer_costs: np.ndarray) -> np.ndarray:
        if cost is None:
            return np.ones(len(peer_costs), dtype=bool)
        return np.abs(peer_costs - cost) <= self.band * max(abs(cost), 1e-12)

    def should_stop(self, value: float, cost: float | None, peers: Sequence[tuple[float, float, bool]]) -> bool:
        """``peers``: (cost, value at this step, completed) of finished trials that reached it."""
        if self.rule == "none" or not peers:
            return False
        arr = np.array([(np.nan if c is None else c, v, done) for c, v, done in peers], dtype=float)
        mask = self.in_band(cost, arr[:, 0])
        if self.rule == "median":
            mask &= arr[:, 2] > 0
        values = arr[mask, 1]
        if len(values) < self.n_startup:
            return False
        if self.rule == "median":
            return value < float(np.median(values))
        return value < float(np.quantile(values, 1.0 - 1.0 / self.eta))


def band_metric(config) -> str | None:
    """The cost a trial is banded by: the first cost constraint's metric, else the first cost objective."""
    for text in config.constraints:
        metric = parse_constraint(text).metric
        if not metric.needs_training:
            return metric.name
    return next((o for o in config.objectives if not parse_objective(o).needs_training), None)


def peers_at(study, step: int, metric: str | None, *, exclude: int) -> list[tuple[float | None, float, bool]]:
    """Finished trials of ``study`` with a value at ``step``: (banding cost, value, completed)."""
    from optuna.trial import TrialState

    key = STEP_ATTR.format(step)
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if t.number == exclude or key not in t.user_attrs:
            continue
        costs = t.user_attrs.get("result", {}).get("metrics", {})
        out.append((costs.get(metric) if metric else None, float(t.user_attrs[key]), t.state == TrialState.COMPLETE))
    return out


def make_reporter(trial, rule: StoppingRule, *, metric: str | None, cost: float | None, single_objective: bool,
                  finetune_epochs: float) -> Callable[[int, float], None]:
    """``report(step, val_accuracy)``: records the value on the trial (in the study storage, so
    Ray workers and other processes see it) and raises ``Stopped`` when the rule says so."""

    def report(step: int, acc: float) -> None:
        trial.set_user_attr(STEP_ATTR.format(step), acc)
        if single_objective:
            trial.report(acc, step)  # Optuna's own record of intermediate values (dashboards)
        if rule.should_stop(acc, cost, peers_at(trial.study, step, metric, exclude=trial.number)):
            where = "before fine-tuning (batch-norm re-estimated proxy)" if step == 0 else f"after epoch {step}"
            raise Stopped(f"val accuracy {acc:.2f}% {where} is below the {rule.rule} of trials within "
                          f"+-{rule.band:.0%} of its {metric or 'cost'}", epochs_trained=min(step, finetune_epochs))

    return report
