"""External check of the cost model on NAS-Bench-201 measured latencies.

For each device column of /work/shared/data/nb201_measured_latency.csv: calibrate a base
automc device with at most N measured architectures (default 20), predict all 15,625, and
print Spearman rank correlation and the share of predictions within +-10% / +-25% of the
measurement (on the held-out architectures). Beside the model, on the same calibration
architectures: least squares on operation counts (conv3x3, conv1x1, pool, add, skip, intercept)
and on FLOPs (MACs, intercept), with the same held-out figures; the model only adds something
where it beats them (a tie is not a win).

    python benchmarks/hw_cost_nb201.py [--n-calib 20] [--seeds 3] [--devices raspi4,pixel3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from automc.policy import Policy
from scipy.stats import spearmanr

from automc.hw_cost import apply_profile, load_device, save_profile
from automc.hw_cost.model import DeviceParams, layer_terms, network_seconds
from automc.hw_cost.nb201 import (fit_nb201_profile, live_edges, load_nb201_measurements, measurement_view,
                                  nb201_table, parse_arch)

#: the devices the op-count baseline is compared on (the model must beat it on 4 of them)
VERSUS_COUNTS = ("raspi4", "pixel3", "gold_6226", "1080ti_1", "titan_rtx_1", "2080ti_1")


def op_counts(arch: str) -> np.ndarray:
    """conv3x3, conv1x1, pool, add, skip counts of the edges that reach a cell's output (the
    ones that run), and an intercept."""
    nodes = parse_arch(arch)
    live = live_edges(nodes)
    runs = [[op for (op, _), alive in zip(node, flags) if alive and op != "none"] for node, flags in zip(nodes, live)]
    ops = [op for node in runs for op in node]
    adds = sum(max(0, len(node) - 1) for node in runs)
    return np.array([ops.count("nor_conv_3x3"), ops.count("nor_conv_1x1"), ops.count("avg_pool_3x3"), adds,
                     ops.count("skip_connect"), 1.0])


def held_out(pred: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    rel = np.abs(pred - y) / y
    return float(spearmanr(pred, y).statistic), float(np.mean(rel <= 0.10)), float(np.mean(rel <= 0.25))


def least_squares(x: np.ndarray, y: np.ndarray, calib: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(x[calib], y[calib], rcond=None)
    return x @ coef

#: measured column -> the profile file shipped for its built-in device (``--write-profiles``):
#: only where the device is the measured hardware (arm-a72 is the Raspberry Pi 4's core).
SHIPPED = {"raspi4": "arm-a72.nb201-raspi4.yaml"}

# measured column -> (base automc device, table options)
COLUMNS = {
    "raspi4": "arm-a72",
    "pixel3": "arm-a76",
    "pixel2": "arm-a76",
    "samsung_a50": "arm-a76",
    "samsung_s7": "arm-a76",
    "essential_ph_1": "arm-a76",
    "gold_6226": "host-cpu",
    "gold_6240": "host-cpu",
    "silver_4114": "host-cpu",
    "silver_4210r": "host-cpu",
    "1080ti_1": "t4",
    "2080ti_1": "t4",
    "titan_rtx_1": "t4",
    "titanx_1": "t4",
    "titanxp_1": "t4",
    "eyeriss": "ascend310",
    "fpga": "ascend310",
}
def run(columns, n_calib: int, seeds: int, write_profiles: str | None = None) -> None:
    archs, measured = load_nb201_measurements()
    n = len(archs)
    terms_cache: dict[tuple, list] = {}
    macs = np.array([nb201_table(a).totals()["macs"] for a in archs], dtype=float)
    counts = np.stack([op_counts(a) for a in archs])
    flops_x = np.stack([macs, np.ones(n)], axis=1)
    print("held out (Spearman / within 10% / within 25%), each fit on the same calibration architectures:")
    print(f"{'device':<15}{'base':<11}{'n':>3} {'model':>21} {'op-count LS':>21} {'FLOPs LS':>21}  fit_rmse")
    summary, summary_counts = {}, {}
    for col in columns:
        y_all = measured[col]
        base = load_device(COLUMNS[col], datasheet=True)
        view = measurement_view(col)
        key = (base.name, tuple(sorted(view.items())))
        if key not in terms_cache:
            terms_cache[key] = [layer_terms(t, t.resolve([Policy()]), base) for t in (nb201_table(a, **view) for a in archs)]
        terms = terms_cache[key]
        valid = np.flatnonzero(np.isfinite(y_all) & (y_all > 0))
        rhos, w10, w25, rmses, base_counts, base_flops = [], [], [], [], [], []
        for seed in range(seeds):
            profile, calib = fit_nb201_profile(col, COLUMNS[col], n_calib=n_calib, seed=seed,
                                               measurements=(archs, measured))
            if seed == 0 and write_profiles is not None and col in SHIPPED:
                out = save_profile(profile, Path(write_profiles) / SHIPPED[col])
                print(f"  wrote {out}")
            params = DeviceParams.of(apply_profile(base, profile))
            pred = np.array([network_seconds(t, params)[0] for t in terms]) * 1e3
            held = np.setdiff1d(valid, calib)
            rho, a10, a25 = held_out(pred[held], y_all[held])
            rhos.append(rho)
            w10.append(a10)
            w25.append(a25)
            rmses.append(profile.fit_rel_rmse)
            base_counts.append(held_out(least_squares(counts, y_all, calib)[held], y_all[held]))
            base_flops.append(held_out(least_squares(flops_x, y_all, calib)[held], y_all[held]))
        summary[col] = (np.mean(rhos), np.mean(w10), np.mean(w25))
        summary_counts[col] = np.mean(base_counts, axis=0)

        def cell(r, a, b):
            return f"{r:.3f} / {a:4.0%} / {b:4.0%}"

        print(f"{col:<15}{base.name:<11}{n_calib:>3} {cell(*summary[col]):>21} {cell(*summary_counts[col]):>21} "
              f"{cell(*np.mean(base_flops, axis=0)):>21}  {np.mean(rmses):.3f}")
    print()
    versus = [c for c in VERSUS_COUNTS if c in summary]
    wins = [c for c in versus if round(summary[c][0], 3) > round(summary_counts[c][0], 3)]
    print(f"model beats op-count LS in held-out Spearman on {len(wins)} of {len(versus)} ({', '.join(wins) or 'none'}); "
          "target: 4 of raspi4, pixel3, gold_6226, 1080ti_1, titan_rtx_1, 2080ti_1")
    gpus = [c for c in summary if COLUMNS[c] == "t4"]
    xeons = [c for c in summary if COLUMNS[c] == "host-cpu"]
    def ok(c, thr):
        return c in summary and summary[c][0] >= thr
    print("targets: raspi4 >= 0.93:", ok("raspi4", 0.93), "| pixel3 >= 0.93:", ok("pixel3", 0.93),
          f"| GPUs >= 0.9: {sum(ok(c, 0.9) for c in gpus)}/{len(gpus)} (need 2)",
          f"| Xeons >= 0.9: {sum(ok(c, 0.9) for c in xeons)}/{len(xeons)} (need 1)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-calib", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=3, help="repeat with different calibration draws and average")
    ap.add_argument("--devices", default=",".join(COLUMNS))
    ap.add_argument("--write-profiles", default=None, metavar="DIR",
                    help="write the seed-0 fit of each shipped device (see SHIPPED) as a profile YAML into DIR "
                         "(automc/hw_cost/profiles to update the built-in ones)")
    args = ap.parse_args()
    t0 = time.time()
    run([c.strip() for c in args.devices.split(",") if c.strip()], args.n_calib, args.seeds, args.write_profiles)
    print(f"({time.time() - t0:.0f} s)")
