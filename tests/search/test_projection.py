"""AMC-style projection: a policy over a cost budget is moved onto it before any training."""

import pytest

from automc.analysis import build_layer_table
from automc.models import build_model
from automc.policy import Policy
from automc.objectives import parse_constraint
from automc.search.costs import cost_metrics
from automc.search.projection import project


@pytest.fixture(scope="module")
def table():
    return build_layer_table(build_model("resnet20", num_classes=10, input_shape=(3, 32, 32)), (3, 32, 32))


def _between(table, metric: str) -> str:
    """A budget halfway between the device's cost at ratio 0.1 everywhere and at 0.8 (a fitted
    device model with large fixed overheads leaves a narrow range)."""
    from automc.objectives import parse_objective

    m = parse_objective(metric)
    lo, hi = (cost_metrics(table, Policy(prune={g.name: r for g in table.prunable_groups}), [m])[m.name][0]
              for r in (0.8, 0.1))
    return f"{metric} <= {(lo + hi) / 2:.6f}ms"


@pytest.mark.parametrize("text", ["macs <= 20M", "latency@arm-a76", "size <= 600KB", "latency@kirin990-npu"])
def test_projection_meets_the_budget_and_only_adds_compression(table, text):
    constraint = parse_constraint(text if "<=" in text else _between(table, text))
    policy = Policy(prune={g.name: 0.1 for g in table.prunable_groups})
    assert not constraint.satisfied(cost_metrics(table, policy, [constraint.metric])[constraint.metric.name][0])
    projected, feasible = project(table, policy, [constraint], max_ratio=0.8)
    assert feasible
    cost = cost_metrics(table, projected, [constraint.metric])[constraint.metric.name][0]
    assert constraint.satisfied(cost)
    assert all(0.1 <= r <= 0.8 for r in projected.prune.values())
    # minimal: a slightly smaller step would not have met the budget
    if text.startswith("macs"):  # smooth in the ratios: the projection stops right at the budget
        assert cost > 0.9 * constraint.value


def test_expensive_groups_are_shrunk_more(table):
    constraint = parse_constraint("macs <= 20M")
    projected, _ = project(table, Policy(), [constraint], max_ratio=0.8)
    # a block's inner channels cost 4.7M MACs in stage 1 (32x32 maps), 3.5M in stage 3's first block
    assert projected.prune["layer1.0.conv1.0"] > projected.prune["layer3.0.conv1.0"] > 0


def test_feasible_policies_are_untouched_and_impossible_budgets_are_reported(table):
    policy = Policy(prune={"stem.0": 0.3})
    assert project(table, policy, [parse_constraint("macs <= 1G")], max_ratio=0.8) == (policy, True)
    _, feasible = project(table, policy, [parse_constraint("macs <= 1K")], max_ratio=0.8)
    assert not feasible


def test_bits_are_lowered_haq_style_when_pruning_is_not_enough(table):
    size = parse_constraint("size <= 60KB")  # every group at max_ratio 0.5 with 8-bit weights: 71 KB
    policy = Policy(w_bits={n: 8 for n in table.compressible})
    projected, feasible = project(table, policy, [size], max_ratio=0.5, bit_choices=[2, 4, 8])
    assert feasible and any(b < 8 for b in projected.w_bits.values())
    assert size.satisfied(cost_metrics(table, projected, [size.metric])["size"][0])


def test_projection_reaches_every_budget_that_max_pruning_meets():
    """The share-weighted line moves only the costliest group to max_ratio; a budget that all
    groups at max_ratio meet (LeNet on the Arm A76, 1 % above that latency: the tightest such
    budget) must still be reached."""
    import numpy as np

    from automc.analysis import build_layer_table
    from automc.models import build_model
    from automc.policy import Policy
    from automc.objectives import parse_constraint, parse_objective
    from automc.search.costs import cost_metrics
    from automc.search.projection import project

    table = build_layer_table(build_model("lenet", num_classes=10, input_shape=(1, 28, 28)), (1, 28, 28))
    latency = parse_objective("latency@arm-a76")
    groups = [g.name for g in table.prunable_groups]
    base, floor = cost_metrics(table, [Policy(), Policy(prune={g: 0.9 for g in groups})], [latency])[latency.name]
    assert floor < 0.2 * base
    cons = [parse_constraint(f"latency@arm-a76 <= {1.01 * floor:.6f}ms")]
    rng = np.random.default_rng(0)
    for _ in range(40):
        policy = Policy(prune={g: float(rng.choice(np.arange(0, 0.95, 0.05))) for g in groups})
        projected, feasible = project(table, policy, cons, max_ratio=0.9)
        assert feasible and cost_metrics(table, projected, [latency])[latency.name][0] <= cons[0].value


def test_a_budget_no_candidate_can_meet_is_refused_in_one_line_before_any_trial(tmp_path, capsys):
    """1 us on the A76: below what even the most pruned LeNet costs there (every layer has a fixed
    cost per op). The dry run refuses it with exit code 2, and so does the search, once the
    baseline is trained and cached (a rerun with a new budget reuses it), before any trial."""
    import automc
    from automc.cli import main
    from automc.errors import ConfigError
    from search_helpers import write_experiment

    path = write_experiment(tmp_path, name="unreachable", trained=False, constraints=["latency@arm-a76 <= 0.001ms"],
                            search={"n_trials": 2})
    with pytest.raises(SystemExit) as exc:
        main(["search", str(path), "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "'latency@arm-a76 <= 0.001ms'" in err[0]
    assert "cannot be met" in err[0] and "compress.pruning.max_ratio" in err[0]
    with pytest.raises(ConfigError, match="the most compressed candidate of the search space costs"):
        automc.search(path, log=lambda s: None)
    out = tmp_path / "runs" / "unreachable"
    assert list((out / "cache").glob("baseline-*.ckpt")) and not (out / "study.db").exists()
    # reading a study back (status, report, export) never refuses: a refit profile may have
    # made a finished search's budget unreachable since
    from automc.config import load_config
    from automc.search.baseline import prepare

    assert prepare(load_config(path), train_baseline=False).constraints[0].value == pytest.approx(0.001)
