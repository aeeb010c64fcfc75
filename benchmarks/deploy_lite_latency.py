"""Measure float .ms latency in the MindSpore Lite 2.0 runtime (one more point for cost models).

    python benchmarks/deploy_lite_latency.py [--batch 1] [--repeats 50] [--threads 1]

Builds the deploy tests' small networks (and mindcv's resnet18 when installed), exports MindIR,
converts to .ms, checks parity and prints one line per network.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "deploy"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import deploy_nets
    from mindspore import Tensor

    from automc.deploy import compare_outputs, convert_to_ms, ensure_toolchain, export_mindir, run_ms

    tc = ensure_toolchain()
    nets = {name: (deploy_nets.build(name), (3, 16, 16)) for name in deploy_nets.NETS}
    try:
        import mindcv

        nets["mindcv_resnet18"] = (mindcv.create_model("resnet18", pretrained=False, num_classes=10), (3, 32, 32))
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        for name, (net, shape) in nets.items():
            net.set_train(False)
            x = np.random.default_rng(0).normal(size=(args.batch, *shape)).astype(np.float32)
            ms_path = convert_to_ms(export_mindir(net, x, Path(tmp) / name), Path(tmp) / f"{name}.ms", toolchain=tc)
            out, latency_ms = run_ms(ms_path, x, repeats=args.repeats, threads=args.threads, toolchain=tc)
            report = compare_outputs(net(Tensor(x)).asnumpy(), out, fmt="ms", latency_ms=latency_ms)
            print(f"{name:18s} batch={args.batch} threads={args.threads} size={ms_path.stat().st_size}B {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
