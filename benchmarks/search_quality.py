"""Does sensitivity-guided search beat uniform compression on real data (Fashion-MNIST)?

Every contender (``search.strategy``: uniform, random, tpe, nsga2, solver, sensitivity) runs
its own search, as its own experiment with the repetition's seed, under one fixed cost budget
(``objectives: [accuracy]``, one constraint, ``search.pruner: none``), with the same trials,
fine-tune epochs and final fine-tune. The winner is picked on the validation split
(``result.best``) and reported on the test split after the final fine-tune; seeds give
mean +- std. Printed, in one run:

1. LeNet at two budgets (MACs and Arm A76 latency), every contender, beside uniform pruning
   and the baseline network (the latency share is where uniform loses >= 3 test points);
2. sensitivity + successive halving (``search.pruner: halving``) against TPE: total fine-tune
   epochs and test accuracy (or, if halving does not cut the epochs to about a third,
   sensitivity with a third of TPE's fine-tune epochs per trial);
3. ResNet-20 at one MACs budget: uniform, tpe, sensitivity;
4. Spearman correlation between the solver's predicted damage and the fine-tuned validation
   accuracy of its solutions;
then the three targets, each met / NOT met and by how much.

    python benchmarks/search_quality.py [--quick] [--solver-order] [--seeds 0,1,2] [--out DIR] [--save --note TEXT]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

import automc
from automc.config import config_from_dict

RESULTS = Path(__file__).resolve().parent / "results"
CONTENDERS = ("uniform", "random", "tpe", "nsga2", "solver", "sensitivity")
USES_SENSITIVITY = {"solver", "sensitivity"}
HALVING, THIRD = "sensitivity + halving", "sensitivity, 1/3 ft epochs"
#: halving counts as "about a third" of TPE's fine-tune epochs up to this share
THIRD_TOLERANCE = 0.40
LABELS = {"lenet": "LeNet", "resnet20": "ResNet-20"}


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Task:
    """One network on Fashion-MNIST: its data, baseline training, and the searches run on it."""

    model: str
    max_samples: int
    train: dict
    finetune: dict
    n_trials: int
    budgets: tuple[str, ...]
    contenders: tuple[str, ...]
    seeds: tuple[int, ...]
    halving: bool = False  # add the halving row at the first budget
    spearman: bool = False  # Spearman of the solver's solutions at the first budget

    @property
    def label(self) -> str:
        return LABELS.get(self.model, self.model)


@dataclass(frozen=True)
class Sizes:
    mode: str
    tasks: tuple[Task, ...]
    final_finetune: dict


def sizes_for(mode: str, seeds: tuple[int, ...] | None) -> Sizes:
    """The sizes of each mode. Full: under 90 minutes on 2 idle cores (most of it LeNet's ~440
    trials); quick: under 10; smoke: a couple of minutes, the plumbing only. Sized on the slower
    of the two hosts these VMs ran on (an AMD EPYC host, ~2.4x slower than the Intel one)."""
    # on the fitted A76 model (a fixed cost per op of ~7 us) uniform ratios 0.8 / 0.85 / 0.9 cost 13.8 /
    # 12.8 / 11.2 % of LeNet's latency: at 12 % uniform is left with 0.9, as it was at 10 % on the
    # datasheet model (where 0.9 cost 7.9 % and lost ~4.7 test points)
    lenet_budgets = ("macs <= 5%", "latency@arm-a76 <= 12%")
    if mode == "smoke":
        lenet = Task("lenet", 3000, {"epochs": 1, "lr": 0.05}, {"epochs": 0.3, "lr": 0.02}, 3,
                     lenet_budgets, CONTENDERS, seeds or (0,), halving=True, spearman=True)
        resnet = Task("resnet20", 1500, {"epochs": 0.3, "lr": 0.05}, {"epochs": 0.2, "lr": 0.02}, 2,
                      ("macs <= 30%",), ("uniform", "tpe", "sensitivity"), (seeds or (0,))[:1])
        return Sizes(mode, (lenet, resnet), {"epochs": 0.2, "lr": 0.01})
    if mode == "quick":
        lenet = Task("lenet", 6000, {"epochs": 8, "lr": 0.05}, {"epochs": 1, "lr": 0.02}, 8,
                     lenet_budgets[:1], CONTENDERS, seeds or (0,), halving=True, spearman=True)
        return Sizes(mode, (lenet,), {"epochs": 2, "lr": 0.01})
    lenet = Task("lenet", 8500, {"epochs": 10, "lr": 0.05}, {"epochs": 1, "lr": 0.02}, 12,
                 lenet_budgets, CONTENDERS, seeds or (0, 1, 2), halving=True, spearman=True)
    resnet = Task("resnet20", 5000, {"epochs": 6, "lr": 0.05}, {"epochs": 1, "lr": 0.02}, 6,
                  ("macs <= 30%",), ("uniform", "tpe", "sensitivity"), (seeds or (0,))[:1])
    return Sizes(mode, (lenet, resnet), {"epochs": 2, "lr": 0.01})


# --------------------------------------------------------------------------- experiments


def data_section(max_samples: int) -> dict:
    return {"name": "fashion_mnist", "max_samples": max_samples, "val_fraction": 0.15}


def export_section(sizes: Sizes) -> dict:
    """No export formats, the same final fine-tune for every winner, and no in-search uniform
    reference (uniform is a contender of its own here)."""
    return {"formats": [], "final_finetune": dict(sizes.final_finetune), "compare_uniform": False}


def budget_tag(budget: str) -> str:
    """``macs <= 5%`` -> ``macs5``; ``latency@arm-a76 <= 20%`` -> ``latency-arm-a76-20``."""
    metric, _, value = budget.partition("<=")
    return (metric.strip().replace("@", "-") + value.strip().rstrip("%")).replace(".", "p")


def experiment(task: Task, sizes: Sizes, contender: str, budget: str, seed: int, root: Path, *,
               pruner: str = "none", finetune: dict | None = None, tag: str | None = None) -> dict:
    name = f"{task.model}-{budget_tag(budget)}-{tag or contender}-s{seed}"
    return {
        "name": name,
        "output_dir": str(root / name),
        "seed": seed,
        "model": {"name": task.model},
        "data": data_section(task.max_samples),
        "train": dict(task.train),
        "finetune": dict(finetune or task.finetune),
        "compress": {"pruning": {"max_ratio": 0.9, "step": 0.05}},
        "objectives": ["accuracy"],
        "constraints": [budget],
        "search": {"strategy": contender, "n_trials": task.n_trials, "pruner": pruner},
        "execution": {"backend": "local"},
        "export": export_section(sizes),
    }


@dataclass
class Run:
    """One finished search, reduced to what the tables need."""

    task: str
    budget: str
    method: str
    seed: int
    val: float
    test: float
    test_before_final: float
    cost_share: float  # the winner's budget metric as a share of the baseline's
    trials: int
    complete: int
    feasible: int  # completed trials within the budget (the others cannot win)
    failed: int
    finetune_epochs: float
    wall_s: float  # the search's own time: baseline training left out, sensitivity analysis charged
    baseline_val: float
    baseline_test: float
    sensitivity_s: float = 0.0
    solver_points: list[tuple[float, float]] = field(default_factory=list)  # (predicted damage, val accuracy)


class Runner:
    """Runs searches one after the other, sharing each (network, seed)'s baseline and
    sensitivity cache between its contenders (their cache keys do not include the name)."""

    def __init__(self, root: Path, sizes: Sizes, out: Callable[[str], None]):
        self.root, self.sizes, self.out = root, sizes, out
        self.runs: list[Run] = []
        self.started = time.perf_counter()

    def _cache(self, task: Task, seed: int) -> Path:
        return self.root / "_cache" / f"{task.model}-s{seed}"

    def run(self, task: Task, contender: str, budget: str, seed: int, *, method: str | None = None,
            pruner: str = "none", finetune: dict | None = None, tag: str | None = None) -> Run:
        cfg = experiment(task, self.sizes, contender, budget, seed, self.root, pruner=pruner, finetune=finetune, tag=tag)
        out_dir = Path(cfg["output_dir"])
        shutil.rmtree(out_dir, ignore_errors=True)
        shared = self._cache(task, seed)
        shared.mkdir(parents=True, exist_ok=True)
        shutil.copytree(shared, out_dir / "cache", dirs_exist_ok=True)
        had = {p.name for p in (out_dir / "cache").iterdir()}
        start = time.perf_counter()
        result = automc.search(config_from_dict(cfg, source=cfg["name"]), log=lambda s: None)
        wall = time.perf_counter() - start
        new = [p for p in (out_dir / "cache").iterdir() if p.name not in had and not p.name.endswith(".tmp")]
        for p in new:
            shutil.copy2(p, shared / p.name)

        # like-for-like wall time: the shared baseline training is nobody's; every contender that
        # uses the sensitivity analysis is charged for it, whether it computed it or read the cache
        for p in new:
            if p.name.startswith("baseline-") and p.suffix == ".json":
                wall -= float(json.loads(p.read_text()).get("train_seconds", 0.0))
        sens_s = 0.0
        sens_path = out_dir / "sensitivity.json"
        if contender in USES_SENSITIVITY and sens_path.is_file():
            sens_s = float(json.loads(sens_path.read_text()).get("seconds", 0.0))
            if not any(p.name.startswith("sensitivity-") for p in new):
                wall += sens_s

        run = self._record(task, result, method or contender, budget, seed, max(wall, 0.0), sens_s, out_dir)
        self.runs.append(run)
        self.out(f"[{(time.perf_counter() - self.started) / 60:5.1f} min] {task.label} {budget}, seed {seed}, "
                 f"{run.method}: {run.trials} trials ({run.complete} complete, {run.feasible} within budget"
                 + (f", {run.failed} failed" if run.failed else "")
                 + f"), {run.finetune_epochs:.1f} fine-tune epochs, "
                 + (f"val {run.val:.2f}% -> test {run.test:.2f}%" if np.isfinite(run.val) else "NO feasible winner")
                 + f" (baseline test {run.baseline_test:.2f}%), {run.wall_s:.0f}s")
        return run

    @staticmethod
    def _record(task: Task, result, method: str, budget: str, seed: int, wall: float, sens_s: float,
                out_dir: Path) -> Run:
        from automc.objectives import parse_constraint

        constraint = parse_constraint(budget)
        metric = constraint.metric.name
        bound = constraint.absolute(result.baseline[metric])
        trials = [t for t in result.trials if t.state in ("COMPLETE", "PRUNED", "FAIL")]
        best = result.best
        summary_path = out_dir / "export" / "summary.json"
        summary = json.loads(summary_path.read_text()).get("best", {}) if summary_path.is_file() else {}
        nan = float("nan")
        points = [(float(t.proposal["predicted_damage"]), float(t.metrics["accuracy"])) for t in result.trials
                  if t.state == "COMPLETE" and "predicted_damage" in t.proposal and "accuracy" in t.metrics]
        return Run(
            task=task.model, budget=budget, method=method, seed=seed,
            val=best.metrics["accuracy"] if best else nan,
            test=best.metrics.get("test_accuracy", nan) if best else nan,
            test_before_final=float(summary.get("test_accuracy_before_final_finetune", summary.get("test_accuracy", nan))),
            cost_share=best.metrics[metric] / result.baseline[metric] if best and metric in best.metrics else nan,
            trials=len(trials), complete=sum(t.state == "COMPLETE" for t in trials),
            feasible=sum(t.state == "COMPLETE" and metric in t.metrics and bool(bound.satisfied(t.metrics[metric]))
                         for t in trials),
            failed=sum(t.state == "FAIL" for t in trials),
            finetune_epochs=float(sum(t.metrics.get("finetune_epochs", 0.0) for t in trials)),
            wall_s=wall, baseline_val=float(result.baseline["accuracy"]),
            baseline_test=float(result.baseline.get("test_accuracy", nan)),
            sensitivity_s=sens_s, solver_points=points if method == "solver" else [],
        )

    def select(self, task: Task, budget: str, method: str) -> list[Run]:
        return sorted((r for r in self.runs if r.task == task.model and r.budget == budget and r.method == method),
                      key=lambda r: r.seed)


# --------------------------------------------------------------------------- time estimate


@dataclass(frozen=True)
class Speed:
    train_call_s: float  # per call of train(): graph compile, optimizer set-up
    train_s: float  # per training sample, unpruned network
    pruned_train_s: float  # per training sample, uniformly pruned to the first budget
    eval_s: float  # per inference sample, unpruned network
    n_train: int
    n_val: int
    n_test: int
    decisions: int
    uniform: dict[str, int]  # budget -> uniform policies within it


def calibrate(task: Task, sizes: Sizes, root: Path) -> Speed:
    """This machine's speed now, on the task's data: train() on two sizes (compile time and
    seconds per sample) of the unpruned and the uniformly pruned network, inference on val."""
    from automc.algorithms import build_compressors
    from automc.analysis import build_layer_table
    from automc.policy import Policy
    from automc.search.evaluate import Evaluator, TrialContext, build_baseline, network_weights
    from automc.objectives import parse_constraint, resolve_constraints
    from automc.search.costs import cost_metrics
    from automc.search.baseline import load_data
    from automc.search.space import SearchSpace
    from automc.search.strategies.uniform import uniform_policies
    from automc.training import TrainSettings, accuracy, train, use_host_blocking_run

    use_host_blocking_run()  # before the layer table's trace runs the first graph of this process
    cfg = config_from_dict(experiment(task, sizes, "tpe", task.budgets[0], task.seeds[0], root))
    data = load_data(cfg)
    net = build_baseline(cfg, data.num_classes, data.input_shape)
    table = build_layer_table(net, data.input_shape, seed=0)
    space = SearchSpace(table, build_compressors(cfg))
    uniform = {}
    for budget in task.budgets:
        c = parse_constraint(budget)
        base = {k: float(v[0]) for k, v in cost_metrics(table, Policy(), [c.metric]).items()}
        uniform[budget] = len(uniform_policies(table, space.decisions, resolve_constraints([c], base)))
    settings = TrainSettings(epochs=1, lr=0.01, seed=0)

    def timed(network, n: int) -> float:
        start = time.perf_counter()
        train(network, data.train.x[:n], data.train.y[:n], settings)
        return time.perf_counter() - start

    small, large = min(128, len(data.train)), min(1280, len(data.train))
    timed(net, small)  # first compile of the process
    t_small, t_large = timed(net, small), timed(net, large)
    train_s = max(t_large - t_small, 1e-6) / (large - small)
    call_s = max(t_small - small * train_s, 0.0)
    ctx = TrialContext(cfg, network_weights(net), table, data, 0.0)
    first = uniform_policies(table, space.decisions, resolve_constraints(
        [parse_constraint(task.budgets[0])], {k: float(v[0]) for k, v in cost_metrics(
            table, Policy(), [parse_constraint(task.budgets[0]).metric]).items()}))
    pruned = Evaluator(ctx).compress(first[0]) if first else net
    pruned_s = max(timed(pruned, large) - call_s, 1e-6) / large
    m = min(1024, len(data.val))
    accuracy(net, data.val.x[:64], data.val.y[:64])
    start = time.perf_counter()
    accuracy(net, data.val.x[:m], data.val.y[:m])
    eval_s = (time.perf_counter() - start) / m
    return Speed(call_s, train_s, pruned_s, eval_s, len(data.train), len(data.val), len(data.test),
                 len(space.decisions), uniform)


TRIAL_OVERHEAD_S = 0.5  # compress, checkpoint, storage and MLflow writes (measured: LeNet)
SEARCH_OVERHEAD_S = 7.0  # data, study, tracking, report plots (measured: LeNet)


def estimate_s(task: Task, sizes: Sizes, speed: Speed) -> float:
    """Rough wall seconds of a task's searches at the calibrated speed."""
    ft, final = task.finetune["epochs"], sizes.final_finetune["epochs"]
    evals = speed.n_val * speed.eval_s  # one pass over val (pruned networks: less)

    def trial(epochs: float) -> float:
        return speed.train_call_s + epochs * speed.n_train * speed.pruned_train_s + 2 * evals + TRIAL_OVERHEAD_S

    def search(trials: int, epochs: float = ft) -> float:
        return (SEARCH_OVERHEAD_S + trials * trial(epochs) + speed.train_call_s
                + final * speed.n_train * speed.pruned_train_s + 2 * (evals + speed.n_test * speed.eval_s))

    total = 0.0
    for budget in task.budgets:
        for contender in task.contenders:
            total += search(min(task.n_trials, speed.uniform[budget]) if contender == "uniform" else task.n_trials)
    if task.halving:  # halving (about 60 % of the fine-tunes) and then the 1/3-epochs row
        total += search(task.n_trials, 0.6 * ft) + search(task.n_trials, ft / 3)
    sensitivity = speed.decisions * 7 * (min(2000, speed.n_val) + 256) * speed.eval_s
    baseline = task.train["epochs"] * speed.n_train * speed.train_s + (speed.n_val + speed.n_test) * speed.eval_s
    return len(task.seeds) * (baseline + sensitivity + total)


# --------------------------------------------------------------------------- tables


def mean_std(values) -> tuple[float, float]:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if not len(v):
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def fmt_ms(values, width: int = 13, signed: bool = False) -> str:
    m, s = mean_std(values)
    if not np.isfinite(m):
        return "-".rjust(width)
    head = f"{m:+.2f}" if signed else f"{m:.2f}"
    return (f"{head} ± {s:.2f}" if np.isfinite(s) else head).rjust(width)


def paired(a: list[Run], b: list[Run]) -> list[float]:
    """Per-seed differences of test accuracy (a - b) over the seeds both have."""
    tb = {r.seed: r.test for r in b}
    return [r.test - tb[r.seed] for r in a if r.seed in tb]


def block(runner: Runner, task: Task, budget: str, methods: list[str], out: Callable[[str], None]) -> None:
    rows = {m: runner.select(task, budget, m) for m in methods}
    rows = {m: r for m, r in rows.items() if r}
    anyrun = next(iter(rows.values()))
    metric = budget.partition("<=")[0].strip()
    out("")
    out(f"{task.label} on Fashion-MNIST, budget {budget} ({len(anyrun)} seed{'s' if len(anyrun) > 1 else ''}: "
        f"{', '.join(str(r.seed) for r in anyrun)}); baseline network: val {fmt_ms([r.baseline_val for r in anyrun], 0)}%, "
        f"test {fmt_ms([r.baseline_test for r in anyrun], 0)}%; 'cost %' = the winner's {metric} as a share "
        "of the baseline's")
    header = (f"  {'method':<27}{'trials':>7}{'in bgt':>7}{'ft ep':>7}{'wall s':>8}{'cost %':>8}{'val %':>15}"
              f"{'test, trial %':>15}{'test %':>15}{'Δ vs uniform':>15}{'Δ vs baseline':>15}")
    out(header)
    out("  " + "-" * (len(header) - 2))
    uniform = rows.get("uniform", [])
    for method, runs in rows.items():
        vs_base = [r.test - r.baseline_test for r in runs]
        cost = mean_std(r.cost_share * 100 for r in runs)[0]
        missing = sum(not np.isfinite(r.test) for r in runs)
        out(f"  {method:<27}{np.mean([r.trials for r in runs]):>7.1f}{np.mean([r.feasible for r in runs]):>7.1f}"
            f"{np.mean([r.finetune_epochs for r in runs]):>7.1f}"
            f"{np.mean([r.wall_s for r in runs]):>8.0f}{f'{cost:.2f}' if np.isfinite(cost) else '-':>8}"
            f"{fmt_ms([r.val for r in runs], 15)}{fmt_ms([r.test_before_final for r in runs], 15)}"
            f"{fmt_ms([r.test for r in runs], 15)}"
            f"{fmt_ms(paired(runs, uniform), 15, signed=True) if uniform else '-'.rjust(15)}"
            f"{fmt_ms(vs_base, 15, signed=True)}"
            + (f"  ({missing} of {len(runs)} seeds without a feasible winner: left out)" if missing else ""))
    sens = [r.sensitivity_s for m in USES_SENSITIVITY for r in rows.get(m, [])] + \
           [r.sensitivity_s for m in (HALVING, THIRD) for r in rows.get(m, [])]
    if any(sens):
        out(f"  (wall s of solver/sensitivity rows includes the sensitivity analysis, {np.mean([s for s in sens if s]):.0f}s "
            "per baseline; the baseline's training is in no row)")


def spearman_section(runner: Runner, task: Task, out: Callable[[str], None]) -> float:
    from scipy.stats import spearmanr

    budget = task.budgets[0]
    runs = runner.select(task, budget, "solver")
    out("")
    out(f"Spearman(-predicted damage, fine-tuned val accuracy) over the solver's solutions, {task.label} {budget}:")
    rhos = []
    for r in runs:
        if len(r.solver_points) < 3:
            out(f"  seed {r.seed}: only {len(r.solver_points)} solutions, no correlation")
            continue
        damage, acc = np.array(r.solver_points).T
        rho = float(spearmanr(-damage, acc).statistic)
        rhos.append(rho)
        few = "" if len(r.solver_points) >= 8 else " (fewer than 8: the solver found no more distinct policies)"
        out(f"  seed {r.seed}: rho {rho:+.3f} over {len(r.solver_points)} solutions{few}; predicted damage "
            f"{damage.min():.4f}-{damage.max():.4f}, val accuracy {acc.min():.2f}-{acc.max():.2f}%")
    mean = float(np.mean(rhos)) if rhos else float("nan")
    out(f"  mean rho {fmt_ms(rhos, 0)}")
    return mean


def _shortfall(short: float, row: list[Run], reference: list[Run]) -> str:
    """A missed target's shortfall in test points, beside the seed spread of the paired differences."""
    spread = mean_std(paired(row, reference))[1]
    return (f"a shortfall of {short:.2f} test points against a seed spread of ± {spread:.2f}"
            + (" (one seed: no spread measured)" if len(row) < 2 else ""))


def _why_short(runner: Runner, task: Task, budget: str, sens: list[Run], uni: list[Run], short: float,
               loss: float) -> str:
    """What the numbers say about a missed target (a): the shortfall against the seed spread, and
    whether any other search reached it."""
    others = []
    for method in task.contenders:
        runs = runner.select(task, budget, method)
        if method not in ("uniform", "sensitivity") and runs:
            others.append((mean_std(paired(runs, uni))[0] / loss, method))
    text = _shortfall(short, sens, uni)
    if others:
        best, method = max(others)
        shares = ", ".join(f"{m} {v * 100:.0f}%" for v, m in sorted(others, reverse=True))
        text += (f"; the other searches recover {shares}: "
                 + (f"{method} reaches the target, so the sensitivity strategy's starting points are no better here"
                    if best >= 0.5 else "no search reaches it either"))
    return text


def targets(runner: Runner, tasks: tuple[Task, ...], rho: float, halving_used: str | None,
            out: Callable[[str], None]) -> None:
    out("")
    out("Targets:")
    # (a) where uniform loses >= 3 test points, sensitivity + TPE recovers at least half of that loss
    tested = False
    for task in tasks:
        for budget in task.budgets:
            uni, sens = runner.select(task, budget, "uniform"), runner.select(task, budget, "sensitivity")
            if not uni or not sens:
                continue
            loss = mean_std(r.baseline_test - r.test for r in uni)[0]
            gain = mean_std(paired(sens, uni))[0]
            if loss < 3:
                out(f"  (a) {task.label} {budget}: uniform is {-loss:+.2f} test points vs the baseline (loses < 3): "
                    "not a test of (a); "
                    f"sensitivity {gain:+.2f} points vs uniform")
                continue
            tested = True
            share = gain / loss
            verdict = "met" if share >= 0.5 else "NOT met"
            out(f"  (a) {task.label} {budget}: uniform loses {loss:.2f} test points; sensitivity + TPE recovers "
                f"{gain:+.2f} ({share * 100:.0f}% of the loss; target >= 50%): {verdict}, by "
                f"{(share - 0.5) * 100:+.0f} percentage points ({gain - 0.5 * loss:+.2f} test points)")
            if share < 0.5:
                out("      why: " + _why_short(runner, task, budget, sens, uni, 0.5 * loss - gain, loss))
    if not tested and any("uniform" in t.contenders for t in tasks):
        out("  (a) NOT testable: at no budget does uniform lose >= 3 test points; tighten the budget")
    # (b) the halving (or 1/3-epochs) row at or above TPE
    task = next((t for t in tasks if t.halving), None)
    if task is not None and halving_used:
        budget = task.budgets[0]
        tpe, row = runner.select(task, budget, "tpe"), runner.select(task, budget, halving_used)
        if tpe and row:
            d = mean_std(paired(row, tpe))[0]
            share = np.mean([r.finetune_epochs for r in row]) / np.mean([r.finetune_epochs for r in tpe])
            out(f"  (b) {task.label} {budget}: '{halving_used}' with {share * 100:.0f}% of TPE's fine-tune epochs: "
                f"test {d:+.2f} points vs TPE (target >= 0): {'met' if d >= 0 else 'NOT met'}, by {d:+.2f} points")
            if d < 0:
                val, tpe_val = mean_std(r.val for r in row)[0], mean_std(r.val for r in tpe)[0]
                out(f"      why: {_shortfall(-d, row, tpe)}; with a third of the epochs each trial's score is noisier "
                    f"(val {val:.2f} against TPE's {tpe_val:.2f} before the final fine-tune)")
    # (c) Spearman
    if np.isfinite(rho):
        out(f"  (c) Spearman rho {rho:+.3f} (target >= 0.6): {'met' if rho >= 0.6 else 'NOT met'}, by {rho - 0.6:+.3f}")
    else:
        out("  (c) Spearman: no solver runs with enough solutions: NOT met")


# --------------------------------------------------------------------------- main


def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), {cpu}, {platform.python_implementation()} " \
           f"{platform.python_version()}; load average at start {load}"


def describe(task: Task, sizes: Sizes, speed: Speed | None) -> str:
    split = f" (train/val/test {speed.n_train}/{speed.n_val}/{speed.n_test})" if speed else ""
    ft = task.finetune
    final = sizes.final_finetune
    return (f"{task.label}: {task.max_samples} samples{split}; baseline {task.train['epochs']:g} epochs lr "
            f"{task.train['lr']:g}; {task.n_trials} trials per contender, fine-tune {ft['epochs']:g} epoch(s) lr "
            f"{ft['lr']:g} per trial; final fine-tune "
            + f"{final['epochs']:g} epoch(s) lr {final['lr']:g}"
            + f"; budgets {', '.join(task.budgets)}; contenders {', '.join(task.contenders)}; "
            f"seeds {', '.join(map(str, task.seeds))}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, LeNet at the MACs budget only, fewer "
                    "samples/trials/epochs (under 10 minutes on 2 idle cores)")
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--seeds", help="comma-separated seeds (default: 0,1,2; --quick: 0)")
    ap.add_argument("--out", default="/tmp/automc-search-quality", help="folder of the run folders (each run folder and the shared caches are emptied first)")
    ap.add_argument("--save", action="store_true", help="also write the output to "
                    "benchmarks/results/search_quality[-quick]-<date>.txt")
    ap.add_argument("--note", default="none given", help="what else loads the machine (printed as 'other load')")
    ap.add_argument("--solver-order", action="store_true", help="target (c) alone: the solver contender only, "
                    "at LeNet's first budget, every seed")
    ap.add_argument("--no-estimate", action="store_true", help="skip the speed calibration at start")
    ap.add_argument("--estimate-only", action="store_true", help="print the sizes and the time estimate, run nothing")
    args = ap.parse_args(argv)

    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None
    sizes = sizes_for(mode, seeds)
    if args.solver_order:
        sizes = replace(sizes, tasks=tuple(replace(t, budgets=t.budgets[:1], contenders=("solver",), halving=False)
                                           for t in sizes.tasks if t.spearman))
    root = Path(args.out) / mode
    # the baseline and sensitivity caches are keyed by their inputs, not by automc's code: a cache
    # left by an earlier run (of an older automc) would be read as this run's
    shutil.rmtree(root / "_cache", ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def out(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    today = datetime.date.today().isoformat()
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    began = time.perf_counter()
    out(f"search_quality ({mode}): sensitivity-guided search vs uniform compression on Fashion-MNIST")
    out(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    out(f"command: {command}")
    out(f"machine: {machine()}")
    out(f"automc {automc.__version__}; run folders under {root}")
    out(f"other load: {args.note}")
    speeds: dict[str, Speed] = {}
    if not args.no_estimate or args.estimate_only:
        for task in sizes.tasks:
            speeds[task.model] = calibrate(task, sizes, root)
    for task in sizes.tasks:
        out("sizes: " + describe(task, sizes, speeds.get(task.model)))
    out("rules: each contender is its own experiment (name) with the repetition's seed; winners picked on val "
        "(result.best), reported on test after the final fine-tune; search.pruner none except the halving row; "
        "'in bgt' = completed trials within the budget (the projection onto the budget can fail; those cannot win); "
        "'ft ep' = fine-tune epochs summed over trials (uniform and solver evaluate only their distinct policies); "
        "'test, trial' = the winner's trial checkpoint on test")
    if speeds:
        total = sum(estimate_s(t, sizes, speeds[t.model]) for t in sizes.tasks)
        per = "; ".join(f"{LABELS.get(m, m)} {s.n_train * s.train_s:.0f}s per baseline epoch, "
                        f"{s.n_train * s.pruned_train_s:.0f}s per epoch pruned to {t.budgets[0]}, "
                        f"{s.train_call_s:.1f}s to start a training, {s.eval_s * 1e3:.2f} ms per inference sample, "
                        f"uniform policies within budget: "
                        + ", ".join(f"{n} at {b}" for b, n in s.uniform.items())
                        for t in sizes.tasks for m, s in speeds.items() if m == t.model)
        out(f"speed now: {per}; estimated total {total / 60:.0f} min (calibration took "
            f"{time.perf_counter() - began:.0f}s)")
    if args.estimate_only:
        return
    out("")

    runner = Runner(root, sizes, out)
    halving_used: str | None = None
    for task in sizes.tasks:
        for seed in task.seeds:
            for budget in task.budgets:
                for contender in task.contenders:
                    runner.run(task, contender, budget, seed)
                if task.halving and budget == task.budgets[0]:
                    runner.run(task, "sensitivity", budget, seed, method=HALVING, pruner="halving", tag="sens-halving")
        if task.halving:
            budget = task.budgets[0]
            share = (np.mean([r.finetune_epochs for r in runner.select(task, budget, HALVING)])
                     / np.mean([r.finetune_epochs for r in runner.select(task, budget, "tpe")]))
            halving_used = HALVING
            if share > THIRD_TOLERANCE:
                out(f"halving used {share * 100:.0f}% of TPE's fine-tune epochs (> {THIRD_TOLERANCE * 100:.0f}%): "
                    f"running sensitivity with a third of TPE's fine-tune epochs per trial instead")
                third = {**task.finetune, "epochs": round(task.finetune["epochs"] / 3, 4)}
                for seed in task.seeds:
                    runner.run(task, "sensitivity", budget, seed, method=THIRD, finetune=third, tag="sens-third")
                halving_used = THIRD

    out("")
    out("Results (test accuracy of the validation-picked winner after the final fine-tune; mean ± std over seeds; "
        "Δ columns paired per seed):")
    for task in sizes.tasks:
        for budget in task.budgets:
            halving_here = task.halving and budget == task.budgets[0]
            block(runner, task, budget, list(task.contenders) + ([HALVING, THIRD] if halving_here else []), out)
            if halving_here and halving_used:
                out(f"  (target (b) uses '{halving_used}'" + (": halving did not bring the fine-tune epochs to about "
                                                              "a third of TPE's" if halving_used == THIRD else "") + ")")
    rho = float("nan")
    for task in sizes.tasks:
        if task.spearman and "solver" in task.contenders:
            rho = spearman_section(runner, task, out)
    targets(runner, sizes.tasks, rho, halving_used, out)
    out("")
    out(f"wall time {(time.perf_counter() - began) / 60:.1f} min")

    if args.save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        name = (f"search_quality-{'quick-' if mode == 'quick' else 'smoke-' if mode == 'smoke' else ''}"
                f"{'solver-order-' if args.solver_order else ''}{today}.txt")
        (RESULTS / name).write_text("\n".join(lines) + "\n")
        print(f"saved {RESULTS / name}", flush=True)


if __name__ == "__main__":
    main()
