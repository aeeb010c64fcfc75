"""NAS from the YAML on Fashion-MNIST: elastic training, ranking before fine-tuning, evolution.

For each network (a MobileNetV2 small enough for 2 cores: width 0.35, depthwise kernel 5, stride-2
stem, elastic width/depth/kernel in Once-for-All's proportions: widths 0.5-1, 2-4 blocks per
stage, kernel 3 or 5; ResNet-20 at half width: elastic width 0.5-1 and 1-3 blocks per stage),
through the product's own path
(``automc.search`` on an experiment dict, nothing re-implemented here):

1. the baseline is trained, then trained elastically (``compress.nas.supernet``), once, cached;
2. proxy quality: the median proxy accuracy (batch norm re-estimated, no fine-tune) of sub-networks
   sampled uniformly over the declared choices, as a share of the largest network's, before and
   after elastic training (target >= 80 %);
3. the budget: ``latency@arm-a76`` of the network with every width scaled by ``--uniform-width``;
   the uniform reference at that budget (one continuous multiplier, line-searched to it; the
   product's ``export.compare_uniform``) gets the same trial fine-tune and final fine-tune as the
   winner, from the same elastic weights;
4. ``search.strategy: evolution`` under that budget, for ``--seeds`` search seeds on the one
   elastic training (``search.seed``): winner picked on val, reported on test;
5. throughput: candidates scored per minute by the predictor (with the cost model), and the
   proxy's own rate.

    python benchmarks/nas_search.py            # the full run: 2 networks, 3 search seeds
    python benchmarks/nas_search.py --quick    # 1 network, 1 seed, small data, 1 elastic epoch
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

NETWORKS = {
    "mobilenetv2": {"model": {"name": "mobilenetv2",
                              "kwargs": {"width_mult": 0.35, "last_channels": 64, "kernel": 5, "stem_stride": 2}},
                    "nas": {"width": [0.5, 0.75, 1.0], "depth": [2, 3, 4], "kernel": [3, 5]}},
    "resnet20": {"model": {"name": "resnet20", "kwargs": {"width": 8}},
                 "nas": {"width": [0.5, 0.75, 1.0], "depth": [1, 2, 3]}},
}


def experiment(args, network: str, seed: int, out: Path, constraint: str | None) -> dict:
    spec = NETWORKS[network]
    return {
        "name": f"nas-{network}-s{seed}", "output_dir": str(out), "seed": 0,
        "model": spec["model"],
        "data": {"name": "fashion_mnist", "max_samples": args.samples},
        "train": {"epochs": args.epochs, "lr": 0.05, "batch_size": 64},
        "finetune": {"epochs": args.finetune, "lr": 0.01},
        "compress": {"nas": {**spec["nas"], "supernet": {"epochs": args.supernet_epochs, "random_subnets": 2}}},
        "objectives": ["accuracy"], "devices": ["arm-a76"],
        "constraints": [constraint] if constraint else [],
        "search": {"strategy": "evolution", "seed": seed, "n_trials": args.trials, "proxy_subnets": args.proxies,
                   "proxy_samples": 500, "candidates": args.candidates, "pruner": "none"},
        "export": {"formats": [], "max_accuracy_drop": 100.0, "compare_uniform": True,
                   "final_finetune": {"epochs": args.final_finetune, "lr": 0.01}},
    }


def proxy_quality(prepared, n: int, seed: int) -> tuple[float, float, float]:
    """(median proxy of ``n`` uniformly sampled sub-networks, the largest's proxy, seconds per proxy)."""
    from automc.search.evaluate import Evaluator
    from automc.search.strategies.proxy import proxy_accuracies, sample_values, value_grid

    decisions = prepared.space.decisions
    grid = value_grid(decisions)
    rng = np.random.default_rng(seed)
    evaluator = Evaluator(prepared.context)
    largest, _ = proxy_accuracies(evaluator, decisions, [{}], samples=1000, seed=seed)
    accs, seconds = proxy_accuracies(evaluator, decisions, sample_values(grid, n, rng), samples=1000, seed=seed)
    return float(np.median(accs)), float(largest[0]), seconds / n


def run_network(args, network: str, root: Path) -> dict:
    import automc
    from automc.algorithms.nas import uniform_width
    from automc.config import config_from_dict
    from automc.hw_cost import estimate
    from automc.policy import Policy
    from automc.search.baseline import prepare

    first = root / f"{network}-s{args.seed_list[0]}"
    # 1. baseline + elastic training (and the same without elastic training, for the "before" figures)
    plain_cfg = experiment(args, network, args.seed_list[0], first, None)  # the same cached baseline
    plain_cfg["compress"]["nas"].pop("supernet")
    plain = prepare(config_from_dict(plain_cfg), log=print)
    t = time.perf_counter()
    elastic = prepare(config_from_dict(experiment(args, network, args.seed_list[0], first, None)), log=print)
    supernet_s = elastic.baseline_metrics.get("supernet_seconds", time.perf_counter() - t)
    # 2. proxy quality before / after
    med0, big0, _ = proxy_quality(plain, args.quality_samples, 1)
    med1, big1, per_proxy = proxy_quality(elastic, args.quality_samples, 1)
    # 3. the budget: every width at --uniform-width
    table = elastic.context.table
    budget_ms = float(estimate(table, Policy(nas=uniform_width(table, args.uniform_width)), "arm-a76").latency_ms[0])
    constraint = f"latency@arm-a76 <= {budget_ms:.4f}ms"
    # 4. evolution per search seed, on the one elastic training (the cache is copied, not retrained)
    runs = []
    for seed in args.seed_list:
        out = root / f"{network}-s{seed}"
        if out != first:
            shutil.copytree(first / "cache", out / "cache", dirs_exist_ok=True)
        lines: list[str] = []
        start = time.perf_counter()
        result = automc.search(config_from_dict(experiment(args, network, seed, out, constraint)),
                               log=lambda s: (lines.append(s), print(s)))
        summary = json.loads((out / "export" / "summary.json").read_text())
        ref = json.loads((out / "export" / "uniform_reference.json").read_text())
        rate = next((s for s in lines if s.startswith("evolution: ")), "")
        runs.append({"seed": seed, "test": summary["best"]["test_accuracy"], "val": result.best.metrics["accuracy"],
                     "latency_ms": result.best.metrics["latency@arm-a76"],
                     "uniform_test": ref["test_accuracy"], "uniform_policy": ref["policy"],
                     "baseline_test": result.baseline["test_accuracy"], "seconds": time.perf_counter() - start,
                     "rate_line": rate, "structure": (out / "export" / "best_structure.json").read_text()})
    return {"network": network, "budget_ms": budget_ms, "uniform_width": args.uniform_width, "median_before": med0, "largest_before": big0,
            "median_after": med1, "largest_after": big1, "proxy_s": per_proxy, "supernet_s": supernet_s,
            "baseline": elastic.baseline_metrics, "runs": runs}


def report(r: dict) -> None:
    def ms(values):
        return f"{statistics.mean(values):.2f} +- {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"

    runs = r["runs"]
    base = runs[0]["baseline_test"]
    uni, nas = [x["uniform_test"] for x in runs], [x["test"] for x in runs]
    loss = base - statistics.mean(uni)
    recovered = statistics.mean(nas) - statistics.mean(uni)
    print(f"\n=== {r['network']} (baseline test {base:.2f}%, val {r['baseline']['accuracy']:.2f}%) ===")
    print(f"elastic training: {r['supernet_s']:.0f}s; proxy {r['proxy_s']:.2f}s per sub-network "
          f"({60 / r['proxy_s']:.0f}/min)")
    print(f"median sampled sub-network / largest, before fine-tuning: before elastic training "
          f"{r['median_before']:.1f}/{r['largest_before']:.1f} = {r['median_before'] / r['largest_before']:.0%}; after "
          f"{r['median_after']:.1f}/{r['largest_after']:.1f} = {r['median_after'] / r['largest_after']:.0%} (target >= 80%)")
    print(f"budget: latency@arm-a76 <= {r['budget_ms']:.4f} ms (every width x{r['uniform_width']})")
    print(f"test accuracy, same trial + final fine-tune, {len(runs)} search seed(s):")
    print(f"  uniform width (line-searched to the budget)  {ms(uni)}   loss vs baseline {loss:.2f} points"
          f" (needs >= 3 for the target to apply)")
    print(f"  evolution winner                             {ms(nas)}   recovers {recovered:.2f} of {loss:.2f} points"
          f" ({recovered / loss:.0%}; target >= 50%)" if loss > 0 else f"  evolution winner {ms(nas)}")
    for x in runs:
        print(f"  seed {x['seed']}: winner val {x['val']:.2f} test {x['test']:.2f} latency {x['latency_ms']}; "
              f"uniform test {x['uniform_test']:.2f}; {x['seconds']:.0f}s; {x['rate_line']}")
    print(f"  structure of seed {runs[0]['seed']}'s winner: {runs[0]['structure'].strip()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="mobilenetv2 only, 1 seed, 3k samples, short training")
    ap.add_argument("--networks", default="mobilenetv2,resnet20")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=4000, help="Fashion-MNIST samples used (train/val/test split)")
    ap.add_argument("--epochs", type=float, default=6)
    ap.add_argument("--supernet-epochs", type=float, default=2)
    ap.add_argument("--finetune", type=float, default=1)
    ap.add_argument("--final-finetune", type=float, default=2)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--proxies", type=int, default=60)
    ap.add_argument("--candidates", type=int, default=5000)
    ap.add_argument("--quality-samples", type=int, default=20)
    ap.add_argument("--uniform-width", type=float, default=0.3,
                    help="the budget: every width times this (at 0.5 the uniform network lost < 3 points on both)")
    ap.add_argument("--out", default="runs/bench_nas_search")
    args = ap.parse_args()
    if args.quick:
        args.networks, args.seeds, args.samples, args.epochs, args.supernet_epochs = "mobilenetv2", 1, 3000, 4, 1
        args.trials, args.proxies, args.quality_samples, args.final_finetune = 2, 30, 15, 1
    args.seed_list = list(range(args.seeds))
    start = time.perf_counter()
    results = [run_network(args, n, Path(args.out)) for n in args.networks.split(",")]
    for r in results:
        report(r)
    print(f"\ntotal {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
