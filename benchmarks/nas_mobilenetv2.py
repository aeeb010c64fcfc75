"""NAS over elastic width/depth/kernel on MobileNetV2 under an arm-a76 latency budget.

1. Train a reduced MobileNetV2 (depthwise kernel 5, width 0.35, 64 last channels) on digits
   upscaled to 32x32 (cached in ``runs/bench_nas_mobilenetv2``).
2. The uniformly shrunk network: every width multiplied by ``--uniform-width``, full depth, kernel 5.
   Its predicted latency on arm-a76 (``automc.hw_cost.estimate``) is the budget.
3. Search (NetAdapt-style greedy over the NAS choices): from the full network, repeatedly take the
   one-decision shrink (a smaller width, depth or kernel) that loses the least inherited validation
   accuracy (sub-network extracted with inherited weights and re-calibrated batch-norm statistics,
   no fine-tune) per ms of predicted
   latency saved (layer table + cost model, no network built), until the budget is met. Random
   sampling does not work here: a normally trained baseline loses all accuracy (10%) when many
   choices change at once, so only near-baseline moves are scored; a supernet would fix that.
4. Fine-tune the uniform network the same way; print both (validation picks, test reports).

    python benchmarks/nas_mobilenetv2.py   # ~16 min on 2 busy CPU cores, +12 min to train the baseline once
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=float, default=8, help="baseline training epochs")
    ap.add_argument("--finetune", type=float, default=2, help="fine-tune epochs per finalist")
    ap.add_argument("--uniform-width", type=float, default=0.5)
    ap.add_argument("--samples", type=int, default=4000)
    ap.add_argument("--moves", type=int, default=12, help="candidate moves scored per greedy step")
    ap.add_argument("--probe", type=int, default=135, help="validation samples that score a move")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="runs/bench_nas_mobilenetv2")
    args = ap.parse_args()

    import mindspore as ms

    from automc.algorithms.nas import ElasticNAS, extract, recalibrate_bn, uniform_width
    from automc.analysis import build_layer_table
    from automc.data import load_dataset
    from automc.hw_cost import estimate
    from automc.models.zoo import mobilenetv2
    from automc.policy import Policy
    from automc.training import TrainSettings, accuracy, train

    t_start = time.perf_counter()
    data = load_dataset("digits", resize=(32, 32), channels=3, seed=args.seed)
    shape = data.input_shape
    net = mobilenetv2(num_classes=data.num_classes, input_shape=shape, width_mult=0.35, last_channels=64, kernel=5)
    cache = Path(args.cache)
    ckpt = cache / f"baseline_e{args.epochs:g}_s{args.seed}.ckpt"
    if ckpt.exists():
        ms.load_param_into_net(net, ms.load_checkpoint(str(ckpt)))
        print(f"baseline loaded from {ckpt}")
    else:
        t = time.perf_counter()
        train(net, data.train.x, data.train.y, TrainSettings(epochs=args.epochs, batch_size=64, lr=0.05, seed=args.seed))
        cache.mkdir(parents=True, exist_ok=True)
        ms.save_checkpoint(net, str(ckpt))
        print(f"baseline trained: {args.epochs:g} epochs in {time.perf_counter() - t:.0f} s")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net.set_train(False)
    base_val = accuracy(net, data.val.x, data.val.y)

    table = build_layer_table(net, shape, seed=args.seed)
    nas = ElasticNAS(width=[0.25, 0.5, 0.75, 1.0], depth=[1, 2, 3], kernel=[3, 5])
    decisions = nas.decisions(table)
    device = "arm-a76"
    uniform = Policy(nas=uniform_width(table, args.uniform_width))
    base_cost, uni_cost = (estimate(table, p, device) for p in (Policy(), uniform))
    budget = float(uni_cost.latency_ms[0])
    print(f"baseline: val {base_val:.1f}%  latency {base_cost.latency_ms[0]:.3f} ms  MACs {base_cost.macs[0] / 1e6:.2f} M")
    print(f"search space: {len(decisions)} decisions; budget = uniform width {args.uniform_width} = {budget:.3f} ms on {device}")

    # ---- cost many random candidates from the table alone (no network is built)
    rng = np.random.default_rng(args.seed)
    t = time.perf_counter()
    randoms = [Policy(nas={d.key: d.choices[rng.integers(len(d.choices))] for d in decisions}) for _ in range(args.samples)]
    lat = estimate(table, randoms, device).latency_ms
    print(f"costed {len(randoms)} random candidates in {time.perf_counter() - t:.1f} s; "
          f"{int((lat <= budget).sum())} within the budget")

    # ---- search: NetAdapt-style greedy shrinking of the elastic choices, guided by the inherited
    # sub-network's accuracy (no fine-tune) and the table's latency, until the budget is met
    def inherited_accuracy(nas: dict) -> float:
        sub = recalibrate_bn(extract(net, table, nas), data.train.x, seed=args.seed)
        return accuracy(sub, data.val.x[: args.probe], data.val.y[: args.probe])

    t = time.perf_counter()
    current: dict = {}
    cur_lat, cur_acc, step = float(base_cost.latency_ms[0]), inherited_accuracy({}), 0
    while cur_lat > budget:
        moves = []  # one step down in one decision: the next smaller width, depth or kernel
        for d in decisions:
            smaller = [v for v in d.choices if v < current.get(d.key, d.default)]
            if smaller:
                moves.append({**current, d.key: max(smaller)})
        move_lat = estimate(table, [Policy(nas=m) for m in moves], device).latency_ms
        saved = cur_lat - move_lat
        order = np.argsort(-saved)[: args.moves]  # the moves that save the most latency
        scored = []
        for i in order:
            acc = inherited_accuracy(moves[i])
            scored.append((max(cur_acc - acc, 0.2) / saved[i], -acc, int(i)))  # accuracy lost per ms saved
        _, neg_acc, best_i = min(scored)
        current, cur_lat, cur_acc, step = moves[best_i], float(move_lat[best_i]), -neg_acc, step + 1
        print(f"  step {step}: {cur_lat:.3f} ms, inherited val {cur_acc:.1f}%")
    print(f"greedy search: {step} steps in {time.perf_counter() - t:.0f} s")
    found = Policy(nas=current)

    def finetune(policy: Policy) -> dict:
        sub = recalibrate_bn(extract(net, table, policy.nas), data.train.x, seed=args.seed)
        before = accuracy(sub, data.val.x, data.val.y)
        t0 = time.perf_counter()
        train(sub, data.train.x, data.train.y, TrainSettings(epochs=args.finetune, batch_size=64, lr=0.01, seed=args.seed))
        ms.set_context(mode=ms.PYNATIVE_MODE)
        cost = estimate(table, policy, device)
        return {"latency_ms": float(cost.latency_ms[0]), "macs_m": float(cost.macs[0]) / 1e6,
                "params_k": float(cost.params[0]) / 1e3, "val_inherited": before,
                "val": accuracy(sub, data.val.x, data.val.y), "test": accuracy(sub, data.test.x, data.test.y),
                "finetune_s": time.perf_counter() - t0}

    best, uni = finetune(found), finetune(uniform)

    print("\n                      latency_ms  MACs(M)  params(k)  val_inherited  val    test")
    for name, r in (("uniform width %.2f" % args.uniform_width, uni), ("NAS (greedy) winner", best)):
        print(f"{name:<22}{r['latency_ms']:>10.3f}{r['macs_m']:>9.2f}{r['params_k']:>11.1f}"
              f"{r['val_inherited']:>15.1f}{r['val']:>7.1f}{r['test']:>8.1f}")
    print("NAS winner's choices:", json.dumps(found.nas, sort_keys=True))
    meets = best["latency_ms"] <= budget
    beats = best["test"] > uni["test"] or (best["test"] == uni["test"] and best["val"] > uni["val"])
    print(f"meets budget: {meets}; beats the uniform network at {'equal or lower' if best['latency_ms'] <= uni['latency_ms'] else 'HIGHER'} "
          f"latency: {beats} (test {best['test']:.1f}% vs {uni['test']:.1f}%)")
    print(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
