"""External check of the cost model on NAS-Bench-201 measured latencies.

For each device column of /work/shared/data/nb201_measured_latency.csv: calibrate a base
automc device with at most N measured architectures (default 20), predict all 15,625, and
print Spearman rank correlation and the share of predictions within +-10% / +-25% of the
measurement (on the held-out architectures). A FLOPs proxy's Spearman is printed for scale.

    python benchmarks/hw_cost_nb201.py [--n-calib 20] [--seeds 3] [--devices raspi4,pixel3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from automc.policy import Policy
from scipy.stats import spearmanr

from automc.hw_cost import load_device, save_profile
from automc.hw_cost.calibration import apply_profile
from automc.hw_cost.model import DeviceParams, layer_seconds, layer_terms
from automc.hw_cost.nb201 import fit_nb201_profile, load_nb201_measurements, measurement_view, nb201_table

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
    print(f"{'device':<15}{'base':<11}{'n':>3} {'spearman':>9} {'within10':>9} {'within25':>9} {'flops_rho':>9}  fit_rmse")
    summary = {}
    for col in columns:
        y_all = measured[col]
        base = load_device(COLUMNS[col], datasheet=True)
        view = measurement_view(col)
        key = (base.name, tuple(sorted(view.items())))
        if key not in terms_cache:
            terms_cache[key] = [layer_terms(t, t.resolve([Policy()]), base) for t in (nb201_table(a, **view) for a in archs)]
        terms = terms_cache[key]
        valid = np.flatnonzero(np.isfinite(y_all) & (y_all > 0))
        rhos, w10, w25, rmses = [], [], [], []
        for seed in range(seeds):
            profile, calib = fit_nb201_profile(col, COLUMNS[col], n_calib=n_calib, seed=seed,
                                               measurements=(archs, measured))
            if seed == 0 and write_profiles is not None and col in SHIPPED:
                out = save_profile(profile, Path(write_profiles) / SHIPPED[col])
                print(f"  wrote {out}")
            params = DeviceParams.of(apply_profile(base, profile))
            pred = np.array([layer_seconds(t, params).sum() for t in terms]) * 1e3 + params.network_overhead_s * 1e3
            held = np.setdiff1d(valid, calib)
            rel = np.abs(pred[held] - y_all[held]) / y_all[held]
            rhos.append(spearmanr(pred[held], y_all[held]).statistic)
            w10.append(np.mean(rel <= 0.10))
            w25.append(np.mean(rel <= 0.25))
            rmses.append(profile.fit_rel_rmse)
        flops_rho = spearmanr(macs[valid], y_all[valid]).statistic
        summary[col] = (np.mean(rhos), np.mean(w10), np.mean(w25))
        print(f"{col:<15}{base.name:<11}{n_calib:>3} {np.mean(rhos):>9.3f} {np.mean(w10):>9.1%} {np.mean(w25):>9.1%} {flops_rho:>9.3f}  {np.mean(rmses):.3f}")
    print()
    gpus = [c for c in summary if COLUMNS[c] == "t4"]
    xeons = [c for c in summary if COLUMNS[c] == "host-cpu"]
    def ok(c, thr):
        return c in summary and summary[c][0] >= thr
    print("targets: raspi4 >= 0.93:", ok("raspi4", 0.93), "| pixel3 >= 0.93:", ok("pixel3", 0.93),
          f"| GPUs >= 0.9: {sum(ok(c, 0.9) for c in gpus)}/{len(gpus)} (need 2)",
          f"| Xeons >= 0.9: {sum(ok(c, 0.9) for c in xeons)}/{len(xeons)} (need 1)")


if __name__ == "__main__":
    from automc.policy import Policy

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
