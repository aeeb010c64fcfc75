"""Device cost models against published real-device latencies.

The published figures are ``automc/hw_cost/data/published_latency.csv`` (every row with its source
and quote); the standard networks' layer tables are ``automc/hw_cost/data/published_tables.json``
(mindcv networks traced at the published input size; ``--build-tables`` re-traces them, ~10 min).

For every shipped device profile with published rows, per (network, precision) the median of the
published per-image latencies (runtimes disagree; the median keeps one figure per network) is
compared with:
  - the shipped model (datasheet peaks and efficiencies, as searches use it today);
  - the model fitted to the device's other networks (``automc.hw_cost.calibration.calibrate``),
    leave-one-network-out: each network is predicted by a fit that never saw it.
Printed per device: the share within +-25 % and within 2x, Spearman over networks, and INT8/FP32 and
FP16/FP32 speed-ups predicted against published, where published.

    python benchmarks/hw_cost_published.py [--build-tables] [--save --note TEXT]
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from automc.hw_cost.published import DATA, profile_for, read_published

TABLES = DATA.with_name("published_tables.json")
#: published network name -> (mindcv architecture, input size)
NETWORKS = {
    "resnet18": ("resnet18", 224), "resnet34": ("resnet34", 224), "resnet50": ("resnet50", 224),
    "resnet101": ("resnet101", 224), "resnet152": ("resnet152", 224),
    "mobilenetv1": ("mobilenet_v1_100", 224), "mobilenetv2": ("mobilenet_v2_100", 224),
    "mobilenetv3_large": ("mobilenet_v3_large_100", 224), "mobilenetv3_small": ("mobilenet_v3_small_100", 224),
    "squeezenet1_0": ("squeezenet1_0", 224), "squeezenet1_1": ("squeezenet1_1", 224),
    "shufflenetv2_x1_0": ("shufflenet_v2_x1_0", 224), "vgg16": ("vgg16", 224), "vgg19": ("vgg19", 224),
    "densenet121": ("densenet121", 224), "googlenet": ("googlenet", 224), "inceptionv3": ("inception_v3", 299),
    "efficientnet_b0": ("efficientnet_b0", 224), "ghostnet": ("ghostnet_100", 224), "mnasnet": ("mnasnet_100", 224),
}
BITS = {"fp32": 32, "fp16": 16, "int8": 8}


def build_tables(path: Path, names: list[str]) -> None:
    """Trace each mindcv network once (no weights) and store its layer table."""
    from mindcv.models import create_model

    from automc.analysis import build_layer_table

    tables = json.loads(path.read_text()) if path.is_file() else {}
    for name in names:
        if name in tables:
            continue
        arch, size = NETWORKS[name]
        start = time.perf_counter()
        net = create_model(arch, pretrained=False, num_classes=1000)
        tables[name] = build_layer_table(net, (3, size, size)).to_dict()
        print(f"traced {name} ({arch}, {size}x{size}) in {time.perf_counter() - start:.0f}s", flush=True)
        path.write_text(json.dumps(tables, separators=(",", ":")))


def load_tables(path: Path) -> dict:
    from automc.analysis.layer_table import LayerTable

    return {k: LayerTable.from_dict(v) for k, v in json.loads(path.read_text()).items()}


def published_points(rows) -> dict[str, dict[tuple[str, str], float]]:
    """profile -> (network, precision) -> median published per-image latency (ms), batch-1 rows only."""
    grouped = collections.defaultdict(list)
    for m in rows:
        profile = profile_for(m)
        if profile and m.batch == 1 and m.network in NETWORKS and m.precision in BITS:
            grouped[(profile, m.network, m.precision)].append(m.per_image_ms)
    out: dict[str, dict] = collections.defaultdict(dict)
    for (profile, net, prec), values in grouped.items():
        out[profile][(net, prec)] = float(np.median(values))
    return out


def precision_policy(table, precision: str):
    from automc.policy import Policy

    bits = BITS[precision]
    if bits == 32:
        return Policy()
    names = table.compressible
    return Policy.from_dict({"w_bits": {n: bits for n in names}, "a_bits": {n: bits for n in names}})


def predict(spec, tables, points) -> dict:
    from automc.hw_cost.model import estimate

    return {(n, p): float(estimate(tables[n], precision_policy(tables[n], p), spec).latency_ms[0]) for n, p in points}


def leave_one_network_out(device: str, tables, points: dict) -> dict:
    """Each network's points predicted by a fit on the other networks' points."""
    from automc.hw_cost.calibration import Sample, apply_profile, calibrate

    out = {}
    for held in sorted({n for n, _ in points}):
        train = [(n, p) for n, p in points if n != held]
        test = [(n, p) for n, p in points if n == held]
        if len(train) < 2:
            continue
        samples = [Sample(tables[n], points[(n, p)], precision_policy(tables[n], p)) for n, p in train]
        spec = apply_profile(device, calibrate(device, samples))
        out.update(predict(spec, tables, test))
    return out


def shares(pred: dict, points: dict) -> tuple[float, float, int]:
    keys = [k for k in points if k in pred]
    ratio = np.array([pred[k] / points[k] for k in keys])
    return float(np.mean(np.abs(ratio - 1) <= 0.25)), float(np.mean((ratio <= 2) & (ratio >= 0.5))), len(keys)


def spearman(pred: dict, points: dict, precision: str) -> tuple[float, int]:
    from scipy.stats import spearmanr

    keys = [k for k in points if k in pred and k[1] == precision]
    if len(keys) < 3:
        return float("nan"), len(keys)
    return float(spearmanr([pred[k] for k in keys], [points[k] for k in keys])[0]), len(keys)


def speedups(pred: dict, points: dict) -> list[str]:
    lines = []
    for low in ("int8", "fp16"):
        for net in sorted({n for n, p in points if p == low and (n, "fp32") in points}):
            pub = points[(net, "fp32")] / points[(net, low)]
            if (net, low) in pred and (net, "fp32") in pred:
                ours = pred[(net, "fp32")] / pred[(net, low)]
                lines.append(f"{net} {low}/fp32 speed-up: published {pub:.2f}x, predicted {ours:.2f}x "
                             f"({(ours / pub - 1) * 100:+.0f}%)")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-tables", action="store_true", help="trace the networks missing from the table file")
    ap.add_argument("--save", action="store_true", help="write the output to benchmarks/results/")
    ap.add_argument("--note", default="", help="what else was running (saved with the results)")
    args = ap.parse_args(argv)
    rows = read_published()
    points = published_points(rows)
    if args.build_tables:
        build_tables(TABLES, sorted({n for pts in points.values() for n, _ in pts}))
    tables = load_tables(TABLES)
    lines: list[str] = []

    def out(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    out("hw_cost_published: device cost models against published real-device latencies")
    out(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}; machine: {platform.node()} "
        f"({os.cpu_count()} cores), CPython {platform.python_version()}")
    out(f"command: python {' '.join([Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:]))}")
    out(f"data: {len(rows)} published rows; {sum(len(p) for p in points.values())} (device, network, precision) "
        "points from batch-1 rows of shipped devices (median over runtimes)")
    out()
    totals = collections.defaultdict(list)
    for device in sorted(points):
        pts = {k: v for k, v in points[device].items() if k[0] in tables}
        if not pts:
            continue
        shipped, held = predict(device, tables, pts), leave_one_network_out(device, tables, pts)
        nets = sorted({n for n, _ in pts})
        out(f"{device}: {len(pts)} points, {len(nets)} networks ({', '.join(nets)})")
        for label, pred in (("shipped (datasheet)", shipped), ("fitted, leave-one-network-out", held)):
            w25, w2x, n = shares(pred, pts)
            rhos = [f"{prec} rho {r:.2f} (n={k})" for prec in ("fp32", "fp16", "int8")
                    for r, k in [spearman(pred, pts, prec)] if k >= 3]
            out(f"  {label:31s} within 25%: {w25 * 100:3.0f}%  within 2x: {w2x * 100:3.0f}%  of {n}; "
                + ("; ".join(rhos) or "fewer than 3 networks per precision"))
            totals[label].append((w25 * n, w2x * n, n))
        for line in speedups(shipped, pts):
            out(f"  shipped: {line}")
        for line in speedups(held, pts):
            out(f"  fitted:  {line}")
        worst = sorted(pts, key=lambda k: -abs(np.log(shipped[k] / pts[k])))[:3]
        out("  worst shipped: " + "; ".join(f"{n} {p} published {pts[(n, p)]:.3g} ms, predicted "
                                            f"{shipped[(n, p)]:.3g} ms" for n, p in worst))
    out()
    for label, parts in totals.items():
        a, b, n = (sum(x) for x in zip(*parts))
        out(f"all devices, {label}: within 25% {a / n * 100:.0f}%, within 2x {b / n * 100:.0f}% of {n:.0f} points")
    if args.save:
        path = Path(__file__).parent / "results" / f"hw_cost_published-{datetime.date.today().isoformat()}.txt"
        path.write_text("\n".join(lines + ([f"other load: {args.note}"] if args.note else [])) + "\n")
        print(f"saved {path}")


if __name__ == "__main__":
    main()
