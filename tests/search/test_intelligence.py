"""The search-intelligence layer on real networks: sensitivity, the budget solver (checked by
brute force), uniform references, strategy seeds, and the cost-banded stopping rules."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from automc.algorithms.pruning import ChannelPruning
from automc.algorithms.quantization import MixedPrecisionQuantization
from automc.analysis import build_layer_table
from automc.models import build_model
from automc.policy import Policy
from automc.search.strategies.fidelity import StoppingRule
from automc.objectives import Constraint, parse_objective
from automc.search.costs import cost_metrics
from automc.search.strategies.sensitivity import Curve, Sensitivity, decision_grid, scored_decisions
from automc.search.strategies.solver import BudgetSolver, solver_grid


@pytest.fixture(scope="module")
def lenet_table():
    net = build_model("lenet", num_classes=10, input_shape=(1, 28, 28))
    return build_layer_table(net, (1, 28, 28))


def _fake_sensitivity(decisions, seed=0) -> Sensitivity:
    """Monotone random curves over each decision's grid (the solver only reads the losses)."""
    rng = np.random.default_rng(seed)
    curves = []
    for d in scored_decisions(decisions):
        values = decision_grid(d)
        loss = 0.3 + np.cumsum(rng.random(len(values)) * (values[-1] != values[0]))
        if d.section != "prune":  # bit-widths: fewer bits (later in a descending list) hurt more
            order = np.argsort(-np.asarray(values, float))
            ranked = np.empty(len(values))
            ranked[order] = 0.3 + np.cumsum(rng.random(len(values)))
            loss = ranked
        curves.append(Curve(d.section, d.key, values, tuple([90.0] * len(values)), tuple(float(x) for x in loss)))
    return Sensitivity(90.0, 0.3, 1000, tuple(curves))


def _brute_force(table, sens, decisions, budgets):
    """Every combination of the solver's grid of every decision (damage interpolated between the
    measured ratios): (damage, policy) of the feasible ones, best first."""
    scored = scored_decisions(decisions)
    grids = [solver_grid(d) for d in scored]
    damage = [sens.damage_at(d.param_name, g) for d, g in zip(scored, grids)]
    policies, damages = [], []
    for combo in itertools.product(*[range(len(g)) for g in grids]):
        sections = {"prune": {}, "w_bits": {}, "a_bits": {}}
        for d, g, i in zip(scored, grids, combo):
            sections[d.section][d.key] = g[i]
        policies.append(Policy.from_dict(sections))
        damages.append(sum(dm[i] for dm, i in zip(damage, combo)))
    costs = cost_metrics(table, policies, list(budgets))
    ok = np.all([costs[m.name] <= b + 1e-9 for m, b in budgets.items()], axis=0)
    return sorted((damages[i], policies[i]) for i in np.nonzero(ok)[0]) if ok.any() else []


def test_solver_is_optimal_on_lenet_pruning_under_macs_and_device_latency(lenet_table):
    decisions = ChannelPruning(max_ratio=0.8, step=0.05).decisions(lenet_table)
    sens = _fake_sensitivity(decisions)
    metrics = [parse_objective("macs"), parse_objective("latency@arm-a76")]
    base = cost_metrics(lenet_table, Policy(), metrics)
    budgets = {metrics[0]: 0.2 * base["macs"][0], metrics[1]: 0.45 * base["latency@arm-a76"][0]}
    brute = _brute_force(lenet_table, sens, decisions, budgets)
    assert len(brute) > 10
    solver = BudgetSolver(lenet_table, sens, decisions, metrics)
    # LeNet is small enough for every 0.05 step, between the measured ratios (0.15 apart)
    assert [v.values for v in solver.vars] == [solver_grid(d) for d in decisions]
    assert len(solver.vars[0].values) == 17 and len(sens.curves[0].values) < 10
    solutions = solver.solve(budgets, n_solutions=3)
    assert [round(s.damage, 6) for s in solutions] == [round(d, 6) for d, _ in brute[:3]]
    for s in solutions:  # re-checked with the cost model on the whole policy
        assert s.costs["macs"] <= budgets[metrics[0]] and s.costs["latency@arm-a76"] <= budgets[metrics[1]]
    # the least-damage policy at or above a level of predicted damage (what spreads the solutions)
    level = brute[len(brute) // 2][0] - 1e-9
    at_level = solver.solve(budgets, min_damage=level)[0]
    # (HiGHS stops within its default relative MIP gap, 1e-4)
    assert at_level.damage == pytest.approx(min(d for d, _ in brute if d >= level), rel=1e-4)


def test_solver_solutions_at_one_budget_spread_over_predicted_damage(lenet_table):
    """The solver strategy fine-tunes policies the solver ranks apart, not its k near-ties."""
    from automc.search.strategies.guided import DAMAGE_STEP, _spread

    decisions = ChannelPruning(max_ratio=0.8, step=0.05).decisions(lenet_table)
    sens = _fake_sensitivity(decisions)
    macs = parse_objective("macs")
    budgets = {macs: 0.2 * cost_metrics(lenet_table, Policy(), [macs])["macs"][0]}
    solver = BudgetSolver(lenet_table, sens, decisions, [macs])
    spread = _spread(solver, budgets, 6, 1.0)
    damages = [s.damage for s in spread]
    best = solver.solve(budgets)[0].damage
    levels = best * (1 + DAMAGE_STEP * np.arange(6))
    assert len(spread) == 6 and damages[0] == pytest.approx(best) and damages == sorted(damages)
    assert all(d >= lv - 1e-9 for d, lv in zip(damages, levels)) and damages[-1] < 2 * best
    assert all(s.costs["macs"] <= budgets[macs] for s in spread)


def test_solver_is_optimal_for_per_layer_bits_under_a_size_budget(lenet_table):
    decisions = MixedPrecisionQuantization(w_bits=[4, 8], a_bits=[8, 32]).decisions(lenet_table)
    sens = _fake_sensitivity(decisions, seed=1)
    metrics = [parse_objective("size"), parse_objective("bitops")]
    base = cost_metrics(lenet_table, Policy(), metrics)
    budgets = {metrics[0]: 0.2 * base["size"][0], metrics[1]: 0.1 * base["bitops"][0]}
    brute = _brute_force(lenet_table, sens, decisions, budgets)
    best = BudgetSolver(lenet_table, sens, decisions, metrics).solve(budgets)[0]
    assert best.damage == pytest.approx(brute[0][0])


def test_infeasible_budget_gives_no_solution(lenet_table):
    decisions = ChannelPruning(max_ratio=0.3, step=0.1).decisions(lenet_table)
    macs = parse_objective("macs")
    solver = BudgetSolver(lenet_table, _fake_sensitivity(decisions), decisions, [macs])
    assert solver.solve({macs: 1.0}) == []


def test_sensitivity_damage_is_monotone_and_non_negative():
    curve = Curve("prune", "g", (0.0, 0.2, 0.4, 0.6), (90.0, 91.0, 85.0, 70.0), (0.30, 0.28, 0.45, 0.40))
    sens = Sensitivity(90.0, 0.30, 1000, (curve,))
    assert sens.damage("prune.g").tolist() == pytest.approx([0.0, 0.0, 0.15, 0.15])
    # the solver's ratios between measured ones: linear between the monotone entries
    assert sens.damage_at("prune.g", [0.3, 0.5, 0.6]).tolist() == pytest.approx([0.075, 0.15, 0.15])
    bits = Curve("w_bits", "fc", (32, 8, 4, 2), (90.0,) * 4, (0.30, 0.31, 0.29, 0.9))
    sens = Sensitivity(90.0, 0.30, 1000, (bits,))
    assert sens.damage("w_bits.fc").tolist() == pytest.approx([0.0, 0.01, 0.01, 0.6])
    assert sens.standard_error == pytest.approx(100 * np.sqrt(0.09 / 1000))


def test_uniform_policies_meet_the_budget_least_compressed_first(lenet_table):
    from automc.search.strategies.uniform import uniform_at_budget, uniform_policies

    decisions = ChannelPruning(max_ratio=0.9, step=0.05).decisions(lenet_table)
    macs = parse_objective("macs")
    budget = 0.1 * cost_metrics(lenet_table, Policy(), [macs])["macs"][0]
    cons = [Constraint(macs, "<=", budget, "macs <= 10%")]
    found = uniform_policies(lenet_table, decisions, cons, order_by=macs)
    assert found and all(len(set(p.prune.values())) == 1 for p in found)
    costs = cost_metrics(lenet_table, found, [macs])["macs"]
    assert np.all(costs <= budget)
    first = uniform_at_budget(lenet_table, decisions, cons, order_by=macs)
    ratio = next(iter(first.prune.values()))
    less = Policy(prune={k: round(ratio - 0.05, 6) for k in first.prune})  # one grid step less: over budget
    assert cost_metrics(lenet_table, less, [macs])["macs"][0] > budget


def test_each_strategy_has_its_own_seed_stream():
    import optuna

    from automc.config import config_from_dict
    from automc.search.strategies import make_strategy

    cfg = config_from_dict({"name": "s", "model": {"name": "lenet"}, "compress": {"pruning": {}}})
    strategies = {n: make_strategy(cfg.model_copy(update={"search": cfg.search.model_copy(update={"strategy": n})}),
                                   n_objectives=2) for n in ("tpe", "random", "nsga2")}
    assert len({s.seed for s in strategies.values()}) == 3

    def first_params(name: str) -> list[float]:
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=strategies[name].sampler(0))
        return [study.ask().suggest_float("r", 0, 1, step=0.05) for _ in range(5)]

    random_first = first_params("random")
    assert first_params("tpe") != random_first and first_params("nsga2") != random_first
    assert first_params("random") == random_first  # reproducible per experiment seed


def test_stopping_rules_compare_only_trials_of_similar_cost():
    peers = [(1000.0, 95.0, True)] * 6 + [(100.0, 70.0, True), (105.0, 72.0, True), (95.0, 60.0, True),
                                          (102.0, 65.0, True)]
    median = StoppingRule("median")
    # 68 % at cost 100 is far below the big networks, but only its own band counts
    assert not median.should_stop(68.0, 100.0, peers)
    assert median.should_stop(62.0, 100.0, peers)
    assert median.should_stop(90.0, 1000.0, peers)
    halving = StoppingRule("halving")  # keeps the top third of its band
    assert halving.should_stop(69.0, 100.0, peers) and not halving.should_stop(70.5, 100.0, peers)
    few = StoppingRule("median", n_startup=5)
    assert not few.should_stop(0.0, 100.0, peers)  # 4 peers in the band: too few to judge
    assert not StoppingRule("none").should_stop(0.0, 100.0, peers)


def test_hyperband_is_refused_with_the_alternative():
    from automc.config import config_from_dict
    from automc.errors import ConfigError

    with pytest.raises(ConfigError, match="search.pruner.*halving"):
        config_from_dict({"name": "s", "model": {"name": "lenet"}, "compress": {"pruning": {}},
                          "search": {"pruner": "hyperband"}})


@pytest.mark.slow
def test_sensitivity_search_seeds_the_study_with_solver_solutions(tmp_path):
    """The whole layer on real LeNet/digits: sensitivity computed once and cached, solver
    solutions enqueued once and marked, halving stops trials within their cost band, the
    uniform reference is evaluated at the same budget."""
    import automc
    from automc.config import load_config
    from tests.search.search_helpers import write_experiment

    path = write_experiment(tmp_path, "sens", objectives=["accuracy"], constraints=["macs <= 25%"],
                            compress={"pruning": {"max_ratio": 0.8, "step": 0.05}},
                            search={"strategy": "sensitivity", "n_trials": 5, "pruner": "halving",
                                    "sensitivity_samples": 200},
                            export={"compare_uniform": True})
    cfg = load_config(path)
    lines: list[str] = []
    result = automc.search(cfg, log=lines.append)
    out = cfg.out_path
    sens = json.loads((out / "sensitivity.json").read_text())
    assert {c["key"] for c in sens["curves"]} == {"conv1.0", "conv2.0", "conv3.0", "fc1"}
    seeded = [t for t in result.trials if t.proposal.get("source") == "solver"]
    assert len(seeded) >= 2 and all(t.number < len(seeded) for t in seeded)
    macs_budget = 0.25 * result.baseline["macs"]
    for t in result.trials:
        assert t.metrics["macs"] <= macs_budget + 1
        assert t.metrics["finetune_epochs"] in (0.0, 0.5) if t.state == "PRUNED" else t.metrics["finetune_epochs"] == 0.5
    ref = json.loads((out / "export" / "uniform_reference.json").read_text())
    assert ref["metrics"]["macs"] <= macs_budget and len(set(ref["policy"]["prune"].values())) == 1
    assert "test_accuracy" in ref
    from automc.report import build  # the report shows both on test, read back from disk

    table = next(t for t in build(automc.load_result(cfg)).tables if "uniform" in t.title)
    test_row = next(r for r in table.rows if r[0] == "test accuracy")
    assert test_row[1] != "-" and test_row[2] == f"{ref['test_accuracy']:.2f}%"
    # resuming reuses the cached sensitivity and does not enqueue the solutions again
    again: list[str] = []
    result2 = automc.search(cfg, log=again.append)
    assert any("sensitivity: reusing" in s for s in again) and not any("enqueued" in s for s in again)
    assert len([t for t in result2.trials if t.proposal.get("source") == "solver"]) == len(seeded)


def test_solver_splits_a_layer_reading_many_groups_and_stays_optimal_under_macs():
    """A DenseNet block: each layer reads the concat of every earlier one, so a reader's cost
    depends on up to four groups (DenseNet-121's last layers read 30: a joint of ~5**30
    combinations). The solver splits such a layer into one piece per input group, exact for MACs
    (linear in the input channels): its optimum equals brute force over every combination."""
    from mindspore import nn, ops

    class Dense(nn.Cell):
        def __init__(self, c=8, growth=4, layers=3):
            super().__init__()
            self.stem = nn.Conv2d(1, c, 3, pad_mode="same")
            self.convs = nn.CellList([nn.Conv2d(c + i * growth, growth, 3, pad_mode="same") for i in range(layers)])
            self.transition = nn.Conv2d(c + layers * growth, 8, 1)
            self.fc = nn.Dense(8, 10)

        def construct(self, x):
            x = self.stem(x)
            for conv in self.convs:
                x = ops.concat((x, conv(x)), 1)
            return self.fc(self.transition(x).mean((2, 3)))

    table = build_layer_table(Dense(), (1, 8, 8))
    decisions = ChannelPruning(max_ratio=0.5, step=0.25).decisions(table)
    assert len(decisions) == 5 and max(len(table.groups_of(r, "in")) for r in range(len(table))) == 4
    sens = _fake_sensitivity(decisions, seed=3)
    macs = parse_objective("macs")
    budgets = {macs: 0.55 * cost_metrics(table, Policy(), [macs])["macs"][0]}
    solver = BudgetSolver(table, sens, decisions, [macs])
    assert max(len(vs) for vs, _, _ in solver.blocks) == 2  # (output group, one input group)
    brute = _brute_force(table, sens, decisions, budgets)
    best = solver.solve(budgets)[0]
    assert best.damage == pytest.approx(brute[0][0], rel=1e-6) and best.costs["macs"] <= budgets[macs]
