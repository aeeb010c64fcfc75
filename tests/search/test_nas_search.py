"""NAS from the YAML on a real network (ResNet-20, width 8, digits at 16x16): elastic training of
the baseline (cached), proxies and the accuracy predictor, the evolution and greedy strategies
proposing to the study, and the winner's structure per stage in the report and MLflow."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

import automc
from automc.config import load_config
from automc.search.strategies.proxy import AccuracyPredictor, sample_values, spearman

pytestmark = pytest.mark.slow

CONFIG = {
    "name": "nas", "seed": 0,
    "model": {"name": "resnet20", "kwargs": {"width": 8}},
    "data": {"name": "digits", "resize": [16, 16], "channels": 3},
    "train": {"epochs": 5, "lr": 0.05, "batch_size": 32},
    "finetune": {"epochs": 0.3, "lr": 0.01},
    "compress": {"nas": {"width": [0.375, 0.625, 1.0], "depth": [1, 2, 3],
                         "supernet": {"epochs": 2, "random_subnets": 1}}},
    "objectives": ["accuracy", "macs"], "constraints": ["macs <= 40%"],
    "search": {"strategy": "evolution", "n_trials": 3, "proxy_subnets": 12, "proxy_samples": 200,
               "candidates": 200, "pruner": "none", "heartbeat_s": 1.0},
    "export": {"formats": [], "max_accuracy_drop": 100.0, "compare_uniform": False},
}


@pytest.fixture(scope="module")
def evolved(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nas")
    path = tmp / "nas.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "output_dir": str(tmp / "runs" / "nas")}))
    lines: list[str] = []
    return path, automc.search(path, log=lines.append), lines


def test_elastic_training_makes_subnetworks_work_before_fine_tuning(evolved):
    """After normal training the smallest sub-network (3/8 of the widths, one block per stage) is
    far below the largest with inherited weights (batch norm re-estimated); two epochs of
    sandwich-rule steps bring it close, and the largest stays accurate."""
    path, result, lines = evolved
    base = result.baseline
    assert base["supernet_smallest_accuracy_before"] < 0.7 * base["accuracy"], base
    assert base["supernet_smallest_accuracy"] >= 0.8 * base["supernet_largest_accuracy"], base
    assert base["supernet_smallest_accuracy"] > base["supernet_smallest_accuracy_before"] + 15, base
    assert base["supernet_largest_accuracy"] > 90, base
    assert [s for s in lines if s.startswith("supernet: epoch ")] == [
        s for s in lines if s.startswith("supernet: epoch ")][:2] and sum(s.startswith("supernet: epoch ") for s in lines) == 2
    # trained once: a rerun reuses the elastic weights and the measured proxies
    again: list[str] = []
    automc.search(path, log=again.append)
    assert any(s.startswith("supernet: reusing") for s in again) and not any("elastic training" in s for s in again)
    assert any(s.startswith("proxy: reusing") for s in again)


def test_evolution_proposes_the_predicted_best_within_the_budget(evolved):
    path, result, lines = evolved
    trials = result.trials[:3]
    assert [t.proposal.get("source") for t in trials] == ["evolution"] * 3
    predicted = [t.proposal["predicted_accuracy"] for t in trials]
    assert predicted == sorted(predicted, reverse=True)
    budget = 0.4 * result.baseline["macs"]
    assert all(t.state == "COMPLETE" and t.metrics["macs"] <= budget for t in trials)
    policies = [t.policy.nas for t in trials]  # pairwise different in >= 2 choices
    assert all(sum(a[k] != b[k] for k in a) >= 2 for i, a in enumerate(policies) for b in policies[i + 1:])
    scored = next(s for s in lines if s.startswith("evolution: "))
    assert "candidates scored" in scored and "/min" in scored
    assert any(s.startswith("predictor: ridge") for s in lines)


def test_the_winners_structure_per_stage_is_in_the_report_and_mlflow(evolved):
    from mlflow.tracking import MlflowClient

    from automc.report import build

    path, result, _ = evolved
    best = automc.load_result(path).best
    table = next(t for t in build(automc.load_result(path)).tables if t.title.startswith("Sub-network of the winner"))
    rows = {r[0]: r for r in table.rows}
    assert set(rows) == {"stage1", "stage2", "stage3"}
    for stage, row in rows.items():
        assert row[1] == f"{best.policy.nas[f'{stage}.depth']}/3"
        assert row[2].startswith(f"{best.policy.nas[f'{stage}.width']:g} (")
    saved = json.loads((result.out_dir / "export" / "best_structure.json").read_text())
    assert [r["stage"] for r in saved] == ["stage1", "stage2", "stage3"]
    client = MlflowClient(result.artifacts["tracking_uri"])
    parent = next(r for r in client.search_runs([client.get_experiment_by_name("nas").experiment_id])
                  if r.data.tags.get("automc.role") == "search")
    assert parent.data.params["best_structure.stage1"].startswith(f"depth {rows['stage1'][1]}, width ")


def test_greedy_shrinks_to_the_budget_by_proxy_accuracy(evolved):
    """NetAdapt on the same elastic baseline (no training): each step takes one shrink; the
    proposals meet the budget, the first is where the path crossed it."""
    from automc.search.baseline import prepare
    from automc.search.strategies import make_strategy
    from automc.search.strategies.evolution import Budget

    path, _, _ = evolved
    config = load_config(path).model_copy(update={"search": load_config(path).search.model_copy(
        update={"strategy": "greedy", "n_trials": 3})})
    prepared = prepare(config, train_baseline=False)
    lines: list[str] = []
    proposals = make_strategy(config, n_objectives=2).propose(prepared, lines.append)
    steps = [s for s in lines if s.startswith("greedy step")]
    assert len(steps) >= 2 and 1 <= len(proposals) <= 3
    budget = Budget(prepared, prepared.constraints)
    values = [prepared.space.params_from_policy(p.policy) for p in proposals]
    assert budget.feasible(values).all()
    assert [p.attrs["source"] for p in proposals] == ["greedy"] * len(proposals)
    assert all(0 <= p.attrs["proxy_accuracy"] <= 100 for p in proposals)


def test_another_search_seed_measures_other_sub_networks_on_the_same_elastic_weights(evolved):
    """``search.seed`` repeats a search: its predictor is fitted on sub-networks of its own
    (the extremes and a new uniform sample), measured once per seed and cached."""
    from automc.search.strategies.proxy import load_or_measure
    from automc.search.baseline import prepare

    path, _, _ = evolved
    config = load_config(path)
    prepared = prepare(config.model_copy(update={"search": config.search.model_copy(update={"proxy_subnets": 10})}),
                       train_baseline=False)
    lines: list[str] = []
    one, other = (load_or_measure(prepared, seed=seed, log=lines.append) for seed in (1, 2))
    assert one.assignments[:2] == other.assignments[:2]  # largest and smallest in both
    assert one.assignments[2:] != other.assignments[2:]
    assert load_or_measure(prepared, seed=1, log=lines.append).accuracies == one.accuracies
    assert sum(s.startswith("proxy: measuring") for s in lines) == 2 and lines[-1].startswith("proxy: reusing")


def test_the_predictor_ranks_held_out_candidates_of_an_additive_space():
    """Ridge over one-hot decisions recovers an additive accuracy model from 60 noisy samples."""
    grid = {f"nas.s{i}.width": (0.25, 0.5, 1.0) for i in range(5)}
    rng = np.random.default_rng(0)
    effect = {k: dict(zip(v, sorted(rng.uniform(0, 5, 3)))) for k, v in grid.items()}

    def truth(a):
        return 60 + sum(effect[k][a[k]] for k in grid)

    train = sample_values(grid, 60, rng)
    model = AccuracyPredictor(grid).fit(train, [truth(a) + rng.normal(0, 0.5) for a in train])
    test = sample_values(grid, 200, rng)
    assert spearman(model.predict(test), [truth(a) for a in test]) > 0.9
    assert model.cv_spearman > 0.8


def test_the_uniform_reference_of_a_nas_space_is_one_width_bisected_to_the_budget():
    """What a user would do by hand: every width times one multiplier, the largest within the
    budget (full depth and kernels)."""
    from automc.algorithms.nas import ElasticNAS, uniform_width
    from automc.algorithms.nas import attach_declared_space
    from automc.analysis import build_layer_table
    from automc.models.zoo import resnet20
    from automc.policy import Policy
    from automc.objectives import Constraint, parse_objective
    from automc.search.costs import cost_metrics
    from automc.search.strategies.uniform import uniform_at_budget

    net = resnet20(input_shape=(3, 16, 16), width=8)
    table = attach_declared_space(build_layer_table(net, (3, 16, 16)), net)
    decisions = ElasticNAS(width=[0.5, 1.0], depth=[1, 2, 3]).decisions(table)
    macs = parse_objective("macs")
    budget = 0.4 * float(cost_metrics(table, Policy(), [macs])["macs"][0])
    policy = uniform_at_budget(table, decisions, [Constraint(macs, "<=", budget, "macs <= 40%")])
    widths = {v for k, v in policy.nas.items() if k.endswith(".width")}
    assert len(widths) == 1 and not any(k.endswith(".depth") for k in policy.nas)
    w = widths.pop()

    def cost(w):
        return float(cost_metrics(table, Policy(nas=uniform_width(table, w)), [macs])["macs"][0])

    assert 0.4 < w < 1.0 and cost(w) <= budget < cost(w + 0.01)
