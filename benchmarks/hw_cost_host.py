"""Predicted vs measured latency on this machine for random pruning policies (issue 3, host check).

Times, in one interleaved MindSpore Lite session (``automc.hw_cost.host.time_networks``): the
host micro-benchmarks, 17 calibration networks per zoo net (the unpruned one and 16 pruned
ones) and >= 40 random channel-pruning policies over resnet20 (residual) and mobilenetv2
(depthwise) that the fit never sees. Calibrates ``host-cpu`` on the micro-benchmarks plus the
calibration networks, then prints Spearman and the share within +-10% / +-25% for the checked
policies, next to a MACs proxy (Spearman only) and the uncalibrated model.

    python benchmarks/hw_cost_host.py [--policies 24] [--calib 16] [--rounds 30] [--processes 3] [--measurements m.npy]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from automc.hw_cost import estimate
from automc.hw_cost.host import fit_host, host_base_spec, micro_benchmarks, time_networks
from automc.policy import Policy

NETS = ("resnet20", "mobilenetv2")
INPUT = (3, 32, 32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", type=int, default=24, help="checked policies per network")
    ap.add_argument("--calib", type=int, default=16, help="extra measured policies per network used for calibration")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--measurements", default=None,
                    help="a .npy file: loaded if it exists (re-fit without re-timing), else written after timing")
    ap.add_argument("--verbose", action="store_true", help="print every network: MACs, measured, predicted")
    args = ap.parse_args()

    from automc.algorithms.pruning import prune
    from automc.analysis import build_layer_table
    from automc.models import build_model

    t0 = time.time()
    rng = np.random.default_rng(args.seed)
    items = [(t, net, shape, Policy(), "micro", True) for t, net, shape in micro_benchmarks()]
    for name in NETS:
        base = build_model(name, num_classes=10, input_shape=INPUT)
        table = build_layer_table(base, INPUT)
        groups = [g.name for g in table.prunable_groups]
        pols = [Policy()] + [
            Policy(prune={g: float(r) for g, r in zip(groups, rng.uniform(0.0, rng.uniform(0.2, 0.8), len(groups)))})
            for _ in range(args.calib + args.policies)
        ]
        for i, pol in enumerate(pols):
            net = prune(build_model(name, num_classes=10, input_shape=INPUT), table, pol) if i else base
            items.append((table, net, INPUT, pol, name, i <= args.calib))
    saved = Path(args.measurements) if args.measurements else None
    if saved is not None and saved.exists():
        latency = np.load(saved)
        print(f"loaded {len(latency)} measured latencies from {saved}")
    else:
        print(f"built {len(items)} networks ({time.time() - t0:.0f} s); exporting to .ms and timing in Lite ...", flush=True)
        latency = time_networks([(net, shape) for _, net, shape, *_ in items], rounds=args.rounds, processes=args.processes)
        print(f"timed ({time.time() - t0:.0f} s)")
        if saved is not None:
            np.save(saved, latency)

    samples = [(t, float(ms), p) for (t, _, _, p, _, cal), ms in zip(items, latency) if cal]
    n_micro = sum(it[4] == "micro" for it in items)
    spec = fit_host(samples, n_micro=n_micro, runtime="lite")
    print(f"calibrated host-cpu on {len(samples)} networks ({n_micro} micro-benchmarks, together weighted a quarter of the networks)")

    check = [(it, ms) for it, ms in zip(items, latency) if not it[5]]
    meas = np.array([ms for _, ms in check])
    names = np.array([it[4] for it, _ in check])
    pred = np.array([estimate(it[0], it[3], spec).latency_ms[0] for it, _ in check])
    raw = np.array([estimate(it[0], it[3], host_base_spec()).latency_ms[0] for it, _ in check])
    macs = np.array([it[0].totals(it[3])["macs"] for it, _ in check])
    rel = np.abs(pred - meas) / meas
    if args.verbose:
        for it, ms in zip(items, latency):
            est = estimate(it[0], it[3], spec).latency_ms[0]
            tag = "calib" if it[5] else "check"
            print(f"{it[4]:<12}{tag:<7}{it[0].totals(it[3])['macs'] / 1e6:8.2f}M  measured {ms:7.3f}  predicted {est:7.3f}"
                  f"  {100 * (est - ms) / ms:+6.1f}%")
    print(f"{'set':<13}{'n':>4}{'spearman':>10}{'within10':>10}{'within25':>10}{'uncal rho':>11}{'MACs rho':>10}{'measured ms':>16}")
    for label, mask in [("all", np.ones(len(check), bool))] + [(n, names == n) for n in NETS]:
        rho = spearmanr(pred[mask], meas[mask]).statistic
        print(f"{label:<13}{mask.sum():>4}{rho:>10.3f}{np.mean(rel[mask] <= 0.1):>10.1%}{np.mean(rel[mask] <= 0.25):>10.1%}"
              f"{spearmanr(raw[mask], meas[mask]).statistic:>11.3f}{spearmanr(macs[mask], meas[mask]).statistic:>10.3f}"
              f"{meas[mask].min():>9.3f}..{meas[mask].max():.3f}")
    print(f"median |error| {np.median(rel):.1%}, worst {rel.max():.1%}; targets (all): spearman >= 0.95 and >= 90% within 10%")


if __name__ == "__main__":
    main()
