"""The winner rule (``select_best``) on hand-built trial records: no search needed."""

from automc.config import config_from_dict
from automc.objectives import parse_constraint
from automc.search.result import TrialRecord
from automc.search.selection import select_best

BASELINE_ACCURACY = 98.0
TRIALS = [
    TrialRecord(number=0, state="COMPLETE", policy=None, metrics={"accuracy": 97.5, "macs": 0.9e6}),
    TrialRecord(number=1, state="COMPLETE", policy=None, metrics={"accuracy": 95.0, "macs": 0.3e6}),
    TrialRecord(number=2, state="COMPLETE", policy=None, metrics={"accuracy": 99.0, "macs": 2.0e6}),  # infeasible
    TrialRecord(number=3, state="FAIL", policy=None, metrics={"macs": 0.1e6}),
]
CONSTRAINTS = ["macs <= 1M"]


def _winner(objectives, constraints=CONSTRAINTS, **export):
    config = config_from_dict({"name": "rule", "model": {"name": "lenet"}, "compress": {"pruning": {}},
                               "objectives": objectives, "constraints": constraints,
                               "export": {"max_accuracy_drop": 5.0, **export}})
    best = select_best(config, TRIALS, [parse_constraint(c) for c in constraints], BASELINE_ACCURACY)
    return best.number


def test_accuracy_only_with_a_cost_constraint_picks_the_most_accurate_feasible_trial():
    assert _winner(["accuracy"]) == 0


def test_a_cost_objective_keeps_the_lowest_cost_within_the_accuracy_drop():
    assert _winner(["accuracy", "macs"]) == 1
    assert _winner(["accuracy", "macs"], max_accuracy_drop=1.0) == 0  # #1 loses 3 points: most accurate feasible


def test_an_explicit_select_by_keeps_the_cost_rule_for_accuracy_only_searches():
    assert _winner(["accuracy"], select_by="macs") == 1
