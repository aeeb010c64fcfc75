"""The search engine on the quickstart task (LeNet on digits), measured in one run.

Prints:
1. trials/min with 1 and 2 Ray workers (target: >= 1.8x);
2. orchestration overhead: the share of the search loop's wall time (first ask to last tell)
   spent outside compress + fine-tune + evaluate (target: <= 3 %);
3. at an equal trial budget, the hypervolume of (accuracy, MACs) reached by TPE and NSGA-II
   against random search;
4. the best accuracy under a latency budget on arm-a76, against uniform pruning (one ratio
   for every group) projected onto the same budget (which a trivial method reaches).

Sections 3 and 4 repeat over ``--seeds`` (experiment seeds; each strategy's sampler draws its
own stream from it, so TPE/NSGA-II never replay random search) and print mean +- std.

    python benchmarks/search_engine.py [--trials 16] [--sections 1,2,3,4] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

import automc
from automc.config import config_from_dict

QUICKSTART = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.yaml"


def quickstart() -> dict:
    """The quickstart experiment as the user runs it, with the winner's export left out."""
    cfg = yaml.safe_load(QUICKSTART.read_text())
    cfg["export"] = {**cfg.get("export", {}), "formats": []}
    cfg.setdefault("search", {})["pruner"] = "none"  # every trial runs to the end: equal work per trial
    return cfg


BASE = quickstart()


def run(root: Path, name: str, trials: int, **changes):
    cfg = copy.deepcopy(BASE)
    for key, value in changes.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    cfg["name"], cfg["output_dir"] = name, str(root / name)
    cfg["search"]["n_trials"] = trials
    start = time.perf_counter()
    result = automc.search(config_from_dict(cfg), log=lambda s: None)
    return result, time.perf_counter() - start


def _spin(n: int) -> float:
    t0 = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return time.perf_counter() - t0


def machine_scaling(n: int = 20_000_000, repeats: int = 3) -> float:
    """How much faster two processes finish two equal pure-Python loops than one does them in
    turn (median of ``repeats``): the ceiling any 2-worker speed-up can reach on this machine."""
    from concurrent.futures import ProcessPoolExecutor

    ratios = []
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_spin, [1000, 1000]))  # start both processes
        for _ in range(repeats):
            one = sum(pool.submit(_spin, n).result() for _ in range(2))
            start = time.perf_counter()
            list(pool.map(_spin, [n, n]))
            ratios.append(one / (time.perf_counter() - start))
    return float(np.median(ratios))


def trial_span_s(result) -> float:
    """Seconds from the first trial's start to the last trial's end (no Ray start-up, no export)."""
    import optuna

    from automc.search.study import storage_url as _storage_url

    trials = optuna.load_study(study_name=result.config.name, storage=_storage_url(result.config)).trials
    return (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()


def hypervolume(result, baseline_macs: float) -> float:
    """Area dominated by the trials in (accuracy %, MACs saved as a share of the baseline)."""
    pts = sorted(((1 - t.metrics["macs"] / baseline_macs, t.metrics["accuracy"] / 100)
                  for t in result.trials if t.state == "COMPLETE"), reverse=True)
    area, best_acc = 0.0, 0.0
    for i, (saved, acc) in enumerate(pts):
        best_acc = max(best_acc, acc)
        nxt = pts[i + 1][0] if i + 1 < len(pts) else 0.0
        area += (saved - nxt) * best_acc
    return area


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--sections", default="1,2,3,4")
    ap.add_argument("--seeds", default="0,1,2", help="experiment seeds of sections 3 and 4 (>= 3 for mean +- std)")
    args = ap.parse_args()
    sections = {int(s) for s in args.sections.split(",")}
    seeds = [int(s) for s in args.seeds.split(",")]
    root = Path(tempfile.mkdtemp(prefix="automc-bench-"))

    if sections & {1, 2}:
        rates, evals = {}, {}
        for workers in (1, 2):
            res, wall = run(root, f"ray{workers}", args.trials, execution={"backend": "ray", "workers": workers})
            done = [t for t in res.trials if t.state == "COMPLETE"]
            rates[workers] = len(done) / (trial_span_s(res) / 60)
            evals[workers] = float(np.mean([t.eval_seconds for t in done]))
            print(f"[1] ray workers={workers}: {rates[workers]:.1f} trials/min ({len(done)} trials, wall {wall:.0f}s, "
                  f"{evals[workers]:.2f}s of compress + fine-tune + evaluate per trial)")
        print(f"[1] speed-up with 2 workers: {rates[2] / rates[1]:.2f}x (target >= 1.8x); one trial's own work takes "
              f"{evals[2] / evals[1]:.2f}x longer when two run at once (CPU cores: {os.cpu_count()}; two pure-Python "
              f"processes run {machine_scaling():.2f}x as fast as one here)")
    if 2 in sections:
        res, _ = run(root, "local", args.trials)
        done = [t for t in res.trials if t.state == "COMPLETE"]
        # everything between the first ask and the last tell that is not compress + fine-tune +
        # evaluate: sampling, cost models, projection, storage writes, checkpoints, MLflow logging
        span = trial_span_s(res)
        inner = sum(t.eval_seconds for t in done)
        print(f"[2] orchestration overhead (local): {(span - inner) / span * 100:.2f}% of trial time "
              f"({(span - inner) / len(done) * 1000:.0f} ms per trial of {span / len(done):.2f}s; target <= 3%)")
    if 3 in sections:
        hv: dict[str, list[float]] = {}
        for seed in seeds:
            for strategy in ("random", "tpe", "nsga2"):
                res, _ = run(root, f"hv-{strategy}-{seed}", args.trials, seed=seed,
                             search={"strategy": strategy, "n_trials": args.trials})
                hv.setdefault(strategy, []).append(hypervolume(res, res.baseline["macs"]))
            print(f"[3] seed {seed}: hypervolume after {args.trials} trials: "
                  + ", ".join(f"{k} {v[-1]:.4f}" for k, v in hv.items()))
        for strategy in ("tpe", "nsga2"):
            ratio = np.array(hv[strategy]) / np.array(hv["random"])
            print(f"[3] {strategy}/random hypervolume {ratio.mean():.3f} +- {ratio.std(ddof=1):.3f} over {len(seeds)} seeds")
    if 4 in sections:
        from automc.search.evaluate import Evaluator
        from automc.objectives import parse_constraint
        from automc.search.costs import cost_metrics
        from automc.search.baseline import prepare
        from automc.training import accuracy

        budget = "latency@arm-a76 <= 0.06ms"  # ~60 % of the quickstart LeNet's latency on the fitted A76 model
        searched, uniform_acc = [], []
        for seed in seeds:
            res, _ = run(root, f"constrained-{seed}", args.trials, seed=seed, constraints=[budget],
                         objectives=["accuracy", "latency@arm-a76"])
            prepared = prepare(res.config, train_baseline=False)
            table = prepared.context.table
            constraint = parse_constraint(budget)
            # the smallest single ratio for every group that meets the same budget (one vectorised call)
            ratios = np.round(np.arange(0.0, 0.951, 0.01), 2)
            grid = [automc.Policy(prune={g.name: float(r) for g in table.prunable_groups}) for r in ratios]
            fits = constraint.satisfied(cost_metrics(table, grid, [constraint.metric])[constraint.metric.name])
            ratio = float(ratios[np.argmax(fits)])
            uniform = grid[int(np.argmax(fits))]
            lat = cost_metrics(table, uniform, [constraint.metric])[constraint.metric.name][0]
            test = prepared.context.data.test
            uniform_acc.append(accuracy(Evaluator(prepared.context).evaluate(uniform, seed=seed).network, test.x, test.y))
            best = res.best
            searched.append(best.metrics["test_accuracy"])
            print(f"[4] seed {seed}, budget {budget}: search winner (picked on val) test accuracy {searched[-1]:.2f}% at "
                  f"{best.metrics['latency@arm-a76']:.4f}ms ({args.trials} trials); uniform ratio {ratio:.2f} "
                  f"(1 evaluation, same fine-tune): test {uniform_acc[-1]:.2f}% at {lat:.4f}ms")
        print(f"[4] test accuracy over {len(seeds)} seeds: search {np.mean(searched):.2f} +- {np.std(searched, ddof=1):.2f}%, "
              f"uniform {np.mean(uniform_acc):.2f} +- {np.std(uniform_acc, ddof=1):.2f}%")


if __name__ == "__main__":
    main()
