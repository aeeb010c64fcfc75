"""Relative budgets: for cost metrics ``%`` is a share of the baseline, for accuracy it stays points."""

import pytest

from automc.analysis import build_layer_table
from automc.config import config_from_dict
from automc.errors import AutomcError, ConfigError
from automc.models import build_model
from automc.policy import Policy
from automc.objectives import parse_constraint, resolve_constraints
from automc.search.costs import cost_metrics
from automc.search.projection import project


@pytest.fixture(scope="module")
def lenet():
    return build_layer_table(build_model("lenet", num_classes=10, input_shape=(1, 8, 8)), (1, 8, 8))


@pytest.mark.parametrize(("text", "fraction"), [("macs <= 25%", 0.25), ("latency@arm-a76 <= 50%", 0.5),
                                                ("size <= 30%", 0.3)])
def test_percent_of_a_cost_metric_is_a_share_of_the_baseline(text, fraction):
    c = parse_constraint(text)
    assert c.relative and c.value == pytest.approx(fraction) and c.text == text
    with pytest.raises(ValueError, match="resolve_constraints"):  # no silent comparison against 0.25
        c.violation(1.0)


@pytest.mark.parametrize("text", ["accuracy_drop <= 1%", "accuracy_drop <= 1"])
def test_percent_of_accuracy_drop_stays_points(text):
    c = parse_constraint(text)
    assert not c.relative and c.value == 1.0
    assert resolve_constraints([c], {"accuracy_drop": 50.0}) == [c]


def test_resolution_against_the_baseline_costs_of_a_real_layer_table(lenet):
    constraints = [parse_constraint(t) for t in ("macs <= 25%", "latency@arm-a76 <= 50%", "size <= 30%",
                                                 "params <= 20K", "accuracy_drop <= 1%")]
    baseline = {k: float(v[0]) for k, v in cost_metrics(lenet, Policy(), [c.metric for c in constraints]).items()}
    assert baseline["macs"] == lenet.totals()["macs"] > 0
    resolved = resolve_constraints(constraints, baseline)
    assert [r.text for r in resolved] == [c.text for c in constraints]  # Optuna's keys stay the YAML text
    assert not any(r.relative for r in resolved)
    assert resolved[0].value == pytest.approx(0.25 * baseline["macs"])
    assert resolved[1].value == pytest.approx(0.5 * baseline["latency@arm-a76"])
    assert resolved[2].value == pytest.approx(0.3 * baseline["size"])
    assert resolved[3:] == constraints[3:]  # absolute ones pass through
    assert not resolved[0].satisfied(baseline["macs"]) and resolved[0].satisfied(0.2 * baseline["macs"])


def test_projection_onto_a_relative_mac_budget(lenet):
    relative = parse_constraint("macs <= 25%")
    baseline_macs = float(cost_metrics(lenet, Policy(), [relative.metric])["macs"][0])
    [budget] = resolve_constraints([relative], {"macs": baseline_macs})
    projected, feasible = project(lenet, Policy(), [budget], max_ratio=0.8)
    assert feasible and any(r > 0 for r in projected.prune.values())
    assert cost_metrics(lenet, projected, [relative.metric])["macs"][0] <= 0.25 * baseline_macs


def test_a_relative_budget_on_a_metric_the_baseline_lacks_says_what_to_do():
    with pytest.raises(AutomcError, match="write an absolute bound"):
        resolve_constraints([parse_constraint("energy@arm-a76 <= 40%")], {"macs": 1.0})


@pytest.mark.parametrize(("text", "needle"), [("macs <= 25 percent", "unit 'percent' is not one of k, m, g, % (share"),
                                              ("accuracy_drop <= 1ms", "unit 'ms' is not one of %")])
def test_a_bad_unit_is_one_line(text, needle):
    with pytest.raises(ValueError) as info:
        parse_constraint(text)
    assert needle in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError) as info:  # the YAML check says the same, on one line
        config_from_dict({"name": "t", "model": {"name": "lenet"}, "compress": {"pruning": {}}, "constraints": [text]})
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_the_yaml_accepts_relative_budgets():
    cfg = config_from_dict({"name": "t", "model": {"name": "lenet"}, "compress": {"pruning": {}},
                            "constraints": ["macs <= 25%", "latency@arm-a76 <= 50%", "size <= 30%"]})
    assert cfg.constraints == ["macs <= 25%", "latency@arm-a76 <= 50%", "size <= 30%"]


def test_the_report_resolves_relative_budgets_against_the_saved_baseline():
    from automc.report.analysis import feasible
    from automc.search.result import SearchResult, TrialRecord

    cfg = config_from_dict({"name": "t", "model": {"name": "lenet"}, "compress": {"pruning": {}},
                            "objectives": ["accuracy"], "constraints": ["macs <= 25%"]})
    small, big = (TrialRecord(number=i, state="COMPLETE", policy=None, metrics={"accuracy": 90.0, "macs": m})
                  for i, m in enumerate((0.2e6, 0.3e6)))
    result = SearchResult(config=cfg, baseline={"accuracy": 95.0, "macs": 1e6}, trials=[small, big],
                          pareto_front=[], best=None)
    assert feasible(result, small) and not feasible(result, big)
