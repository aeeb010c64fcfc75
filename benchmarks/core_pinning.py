"""What keeping a MindSpore training process to one core costs and saves (README: the tests'
xdist workers each keep to their own cores, ``tests/conftest.py``).

Each run trains a fresh network in a new process (automc's trainer: jit steps, SGD, batch 32,
2 epochs on 1,257 random 'digits-sized' samples) and reports its wall time and CPU time:
- ``spread``: the process may run on every CPU (as by default);
- ``pinned``: the process keeps to one CPU;
- ``2 spread`` / ``2 pinned``: two such processes at once, free or each on its own CPU (the
  situation of two pytest-xdist workers, or two parallel trials on a 2-core machine).

    python benchmarks/core_pinning.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from _results import save

CHILD = """
import json, os, sys, time
import numpy as np
cpus = json.loads(sys.argv[2])
if cpus:
    for thread in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(thread), cpus)
import mindspore as ms
ms.set_device("CPU")
from automc.models.zoo import lenet, resnet20
from automc.training import TrainSettings, train
rng = np.random.default_rng(0)
if sys.argv[1] == "lenet":
    x, net = rng.standard_normal((1257, 1, 8, 8)).astype(np.float32), lenet()
else:
    x, net = rng.standard_normal((1257, 3, 16, 16)).astype(np.float32), resnet20(input_shape=(3, 16, 16), width=8)
y = rng.integers(0, 10, len(x)).astype(np.int32)
wall, cpu = time.perf_counter(), time.process_time()
train(net, x, y, TrainSettings(epochs=2, batch_size=32))
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))
"""

NETWORKS = {"lenet": "LeNet (8x8)", "resnet20": "ResNet-20, width 8 (16x16)"}


def run(network: str, cpu_sets: list[list[int]]) -> list[dict[str, float]]:
    """One process per entry of ``cpu_sets`` (``[]``: every CPU), all at once."""
    env = {**os.environ, "GLOG_v": "3"}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, network, json.dumps(cpus)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=env) for cpus in cpu_sets]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("needs 2 or more CPUs")
    modes = {"spread": [[]], "pinned": [[cpus[0]]], "2 spread": [[], []], "2 pinned": [[cpus[0]], [cpus[1]]]}
    lines = [
        "# core pinning: one training process (or two at once) free on every CPU vs kept to one CPU each",
        f"# command: python benchmarks/core_pinning.py --repeats {args.repeats}",
        f"# date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"# machine: {platform.platform()}, {os.cpu_count()} CPUs; Python {platform.python_version()}",
        "# each figure: mean +- std over the repeats (modes interleaved); a pair reports both processes",
        "",
        f"{'network':<28} {'mode':<9} {'wall s':>13} {'CPU s':>13} {'cores busy':>10}",
    ]
    for network, label in NETWORKS.items():
        got: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        for _ in range(args.repeats):
            for mode, sets in modes.items():
                got[mode] += run(network, sets)
        cpu_of = {}
        for mode, results in got.items():
            wall, cpu = [r["wall"] for r in results], [r["cpu"] for r in results]
            cpu_of[mode] = statistics.mean(cpu)
            lines.append(f"{label:<28} {mode:<9} {statistics.mean(wall):6.2f} +- {statistics.stdev(wall):4.2f} "
                         f"{statistics.mean(cpu):6.2f} +- {statistics.stdev(cpu):4.2f} "
                         f"{statistics.mean(cpu) / statistics.mean(wall):10.2f}")
        lines.append(f"{'':<28} CPU pinned / spread: alone {cpu_of['pinned'] / cpu_of['spread']:.2f}, "
                     f"two at once {cpu_of['2 pinned'] / cpu_of['2 spread']:.2f}")
        print("\n".join(lines[-5:]), flush=True)
    save("core_pinning", lines, "none (nothing else running; the processes of one pair run at once)")


if __name__ == "__main__":
    main()
