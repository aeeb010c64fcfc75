"""Predicted vs measured latency on this machine for random pruning policies.

Calibrates ``host-cpu`` from micro-benchmarks (cached under ~/.cache/automc/) plus a few
measured networks (the unpruned zoo nets and some pruned ones, kept apart from the check),
then measures >= 40 random channel-pruning policies over resnet20 (residual) and
mobilenetv2 (depthwise) and prints Spearman and the share within +-10% / +-25%.

    python benchmarks/hw_cost_host.py [--policies 24] [--calib 4] [--repeats 15]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr

from automc.hw_cost import calibrate_host, estimate, measure_latency_ms
from automc.policy import Policy

NETS = ("resnet20", "mobilenetv2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", type=int, default=24, help="check policies per network")
    ap.add_argument("--calib", type=int, default=4, help="extra measured policies per network used for calibration")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from automc.algorithms.pruning import prune
    from automc.analysis import build_layer_table
    from automc.models import build_model

    t0 = time.time()
    rng = np.random.default_rng(args.seed)
    measured = []  # (net name, table, policy, ms, is_calibration)
    for name in NETS:
        base = build_model(name, num_classes=10, input_shape=(3, 32, 32))
        table = build_layer_table(base, (3, 32, 32))
        groups = [g.name for g in table.prunable_groups]
        pols = [Policy()] + [
            Policy(prune={g: float(r) for g, r in zip(groups, rng.uniform(0.0, rng.uniform(0.2, 0.8), len(groups)))})
            for _ in range(args.calib + args.policies)
        ]
        for i, pol in enumerate(pols):
            net = prune(build_model(name, num_classes=10, input_shape=(3, 32, 32)), table, pol) if i else base
            ms = measure_latency_ms(net, (3, 32, 32), repeats=args.repeats)
            measured.append((name, table, pol, ms, i <= args.calib))
        print(f"measured {name}: {len(pols)} networks ({time.time() - t0:.0f} s)", flush=True)

    extra = [(t, ms, p) for _, t, p, ms, cal in measured if cal]
    spec = calibrate_host(force=True, extra_samples=extra, repeats=args.repeats)
    print(f"calibrated host-cpu from micro-benchmarks + {len(extra)} networks ({time.time() - t0:.0f} s)")

    rows = [(n, t, p, ms) for n, t, p, ms, cal in measured if not cal]
    pred = np.array([estimate(t, p, spec).latency_ms[0] for _, t, p, _ in rows])
    meas = np.array([ms for *_, ms in rows])
    names = np.array([n for n, *_ in rows])
    rel = np.abs(pred - meas) / meas
    print(f"{'set':<14}{'n':>4}{'spearman':>10}{'within10':>10}{'within25':>10}{'meas_ms':>16}")
    for label, mask in [("all", np.ones(len(rows), bool))] + [(n, names == n) for n in NETS]:
        rho = spearmanr(pred[mask], meas[mask]).statistic
        print(f"{label:<14}{mask.sum():>4}{rho:>10.3f}{np.mean(rel[mask] <= 0.1):>10.1%}{np.mean(rel[mask] <= 0.25):>10.1%}"
              f"{meas[mask].min():>8.2f}..{meas[mask].max():.2f}")
    print("targets (all): spearman >= 0.95 and >= 90% within 10%")


if __name__ == "__main__":
    main()
