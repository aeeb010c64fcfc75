"""Estimates per second of ``automc.hw_cost.estimate`` on a ResNet-20-sized layer table.

The table is built by hand (ResNet-20 for CIFAR: 19 convs + 9 adds + pool + dense, coupled
channel groups per stage) so the benchmark does not depend on the model zoo.

    python benchmarks/hw_cost_throughput.py [--policies 10000] [--device arm-a76]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from automc.analysis.layer_table import CouplingGroup, LayerTable
from automc.hw_cost import estimate, get_device
from automc.policy import Policy


def resnet20_table() -> LayerTable:
    rows, groups = [], []
    rows.append(dict(name="conv1", kind="conv", cin=3, cout=16, kh=3, kw=3, h_in=32, w_in=32, h_out=32, w_out=32, has_bn=True, has_act=True, out_group="stage0"))
    hw, cin = 32, 16
    for s, c in enumerate((16, 32, 64)):
        groups.append(CouplingGroup(name=f"stage{s}", channels=c, producers=()))
        for b in range(3):
            stride = 2 if (s > 0 and b == 0) else 1
            h_out = hw // stride
            g_in = f"stage{s - 1}" if (s > 0 and b == 0) else f"stage{s}"
            inner = f"s{s}.b{b}.mid"
            groups.append(CouplingGroup(name=inner, channels=c, producers=(f"s{s}.b{b}.conv1",)))
            rows.append(dict(name=f"s{s}.b{b}.conv1", kind="conv", cin=cin, cout=c, kh=3, kw=3, stride=stride, h_in=hw, w_in=hw, h_out=h_out, w_out=h_out, has_bn=True, has_act=True, in_group=g_in, out_group=inner))
            rows.append(dict(name=f"s{s}.b{b}.conv2", kind="conv", cin=c, cout=c, kh=3, kw=3, h_in=h_out, w_in=h_out, h_out=h_out, w_out=h_out, has_bn=True, in_group=inner, out_group=f"stage{s}"))
            rows.append(dict(name=f"s{s}.b{b}.add", kind="add", cin=c, cout=c, h_in=h_out, w_in=h_out, h_out=h_out, w_out=h_out, in_group=f"stage{s}", out_group=f"stage{s}"))
            hw, cin = h_out, c
    rows.append(dict(name="pool", kind="pool", cin=64, cout=64, kh=8, kw=8, stride=8, h_in=8, w_in=8, h_out=1, w_out=1, in_group="stage2", out_group="stage2"))
    rows.append(dict(name="fc", kind="dense", cin=64, cout=10, has_bias=True, in_group="stage2"))
    return LayerTable.from_rows(rows, coupling=groups, input_shape=(3, 32, 32))


def random_policies(table: LayerTable, n: int, seed: int = 0) -> list[Policy]:
    rng = np.random.default_rng(seed)
    names = [g.name for g in table.prunable_groups]
    comp = table.compressible
    out = []
    for _ in range(n):
        prune = {g: float(r) for g, r in zip(names, rng.uniform(0, 0.7, len(names)))}
        bits = {c: int(b) for c, b in zip(comp, rng.choice([4, 8, 16, 32], len(comp)))}
        out.append(Policy(prune=prune, w_bits=bits, a_bits=bits))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", type=int, default=10000)
    ap.add_argument("--device", default="arm-a76")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    table = resnet20_table()
    pols = random_policies(table, args.policies)
    spec = get_device(args.device)
    estimate(table, pols[:10], spec)  # warm caches
    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        est = estimate(table, pols, spec)
        best = min(best, time.perf_counter() - t0)
    t_one = float("inf")
    for _ in range(200):
        t0 = time.perf_counter()
        estimate(table, pols[0], spec)
        t_one = min(t_one, time.perf_counter() - t0)
    print(f"table: {len(table)} rows ({sum(k == 'conv' for k in table.kind)} conv), device {spec.name}")
    print(f"batched: {args.policies} policies in {best * 1e3:.1f} ms -> {args.policies / best:,.0f} estimates/s (target >= 100,000)")
    print(f"single policy call: {t_one * 1e6:.0f} us -> {1 / t_one:,.0f} calls/s")
    print(f"latency_ms range {est.latency_ms.min():.3f}..{est.latency_ms.max():.3f}, size_bytes {est.size_bytes.min()}..{est.size_bytes.max()}")


if __name__ == "__main__":
    main()
