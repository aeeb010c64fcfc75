"""Quantized networks as the runtimes here execute them: float, uniform int8 and a searched mixed
int8/float winner of LeNet and ResNet-20 on Fashion-MNIST, each run in ONNX Runtime (ONNX QDQ) and
MindSpore Lite 2.0 (FULL_QUANT .ms) on this CPU.

    python benchmarks/deploy_quantized.py [--networks lenet resnet20] [--trials 8] [--save]

For each network: a real ``automc search`` (PTQ mixed precision, ``export.runtime: onnxruntime``,
objectives accuracy and size, winner the smallest within 1 point on validation) on 12,000 images;
then float (the baseline), uniform int8 (every layer 8/8, calibrated on the same training images)
and the winner are run on the full official test split (10,000 images) in each runtime. Printed per
row: test accuracy in the runtime (and the quantized network's), top-1 agreement with it, file size,
latency measured here (batch 1, 1 thread, interleaved with the float file of the same network in
the same runtime, median of rounds) and the latency the ``host-cpu`` model predicts.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

EXPERIMENT = {
    "seed": 0,
    "data": {"name": "fashion_mnist", "max_samples": 12000},
    "finetune": {"epochs": 0.5, "lr": 0.01},
    "compress": {"quantization": {"w_bits": [8, 32], "a_bits": [8, 32], "mode": "ptq", "calib_batches": 4}},
    "objectives": ["accuracy", "size"],
    "export": {"runtime": "onnxruntime", "formats": ["mindir"], "select_by": "size", "max_accuracy_drop": 1.0,
               "compare_uniform": False},
}
TRAIN = {"lenet": {"epochs": 3, "lr": 0.05}, "resnet20": {"epochs": 3, "lr": 0.05, "batch_size": 64}}


def full_test_split(data):
    """The official 10,000 test images, normalised as the search's data (its train split's statistics)."""
    from automc.data.mnist import load_fashion_mnist

    raw = load_fashion_mnist()
    x = np.asarray(raw.x_test, dtype=np.float32).reshape(len(raw.y_test), *data.input_shape)
    mean = np.asarray(data.mean, np.float32)[None, :, None, None]
    std = np.asarray(data.std, np.float32)[None, :, None, None]
    return ((x - mean) / std).astype(np.float32), np.asarray(raw.y_test, dtype=np.int32)


def predicted_ms(table, policy) -> float:
    from automc.objectives import parse_objective
    from automc.search.costs import cost_metrics

    metric = parse_objective("latency@host-cpu")
    return float(cost_metrics(table, policy, [metric])[metric.name][0])


def float_rows(net, x, y, tmp: Path) -> dict[str, tuple[float, int, float]]:
    """runtime -> (test accuracy, file bytes, latency ms) of the float network."""
    from automc.deploy import bench_ms, convert_to_ms, export_mindir, export_onnx, run_ms
    from automc.deploy.int8 import time_onnx
    import onnxruntime as ort

    mindir = export_mindir(net, x[:1], tmp / "float")
    ms_path = convert_to_ms(mindir, tmp / "float.ms")
    onnx_path = export_onnx(net, x[:1], tmp / "float.onnx")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    onnx_out = np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    ms_out = np.concatenate([run_ms(ms_path, x[i:i + 500], repeats=1, warmup=0)[0] for i in range(0, len(x), 500)])
    acc = lambda out: 100.0 * float(np.mean(out.reshape(len(y), -1).argmax(1) == y))  # noqa: E731
    return {"onnxruntime": (acc(onnx_out), onnx_path.stat().st_size, float(time_onnx([onnx_path], x[:1])[0])),
            "lite": (acc(ms_out), ms_path.stat().st_size,
                     float(np.median(bench_ms([ms_path], rounds=10, calls=5), axis=0)[0]))}


def bench_network(model: str, trials: int, out: Path, log) -> list[str]:
    import automc
    from automc.algorithms.quantization import quantize, to_deploy_form, uniform_policy
    from automc.config import config_from_dict
    from automc.deploy.int8 import export_int8
    from automc.policy import Policy
    from automc.search.baseline import prepare
    from automc.search.evaluate import Evaluator

    cfg = {**EXPERIMENT, "name": f"deploy-quantized-{model}", "model": {"name": model}, "train": TRAIN[model],
           "output_dir": str(out / model), "search": {"strategy": "tpe", "n_trials": trials}}
    t0 = time.time()
    result = automc.search(config_from_dict(cfg), log=lambda s: None)
    rows = [f"{model}: search {time.time() - t0:.0f} s, {len(result.trials)} trials, winner #{result.best.number} "
            f"(val {result.best.metrics['accuracy']:.2f}% vs baseline {result.baseline['accuracy']:.2f}%): "
            f"{sum(b == 8 for b in result.best.policy.w_bits.values())} layers int8, the others float"]
    log(rows[0])
    prepared = prepare(result.config, train_baseline=False)  # the cached baseline, data and layer table
    data, table = prepared.context.data, prepared.context.table
    baseline = Evaluator(prepared.context).baseline
    x, y = full_test_split(data)
    calib = data.train.x[:256]
    layers = list(table.compressible)
    uniform = uniform_policy(layers, w_bits=8, a_bits=8)
    nets = {"uniform int8": (to_deploy_form(quantize(baseline, uniform, calib_x=calib,
                                                     calib_batches=EXPERIMENT["compress"]["quantization"]["calib_batches"])),
                             uniform),
            "mixed winner": (to_deploy_form(result.best_network()), result.best.policy)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        floats = float_rows(baseline, x, y, tmp)
        pred_float = predicted_ms(table, Policy())
        for runtime in ("onnxruntime", "lite"):
            acc, size, ms = floats[runtime]
            rows.append(f"{model:8s} {'float':13s} {runtime:11s} {acc:6.2f}% {'-':>15s} {size / 1024:8.1f} KB "
                        f"{ms:8.3f} ms {'1.00x':>7s} {pred_float:8.4f} ms {'1.00x':>7s}")
        for label, (dnet, policy) in nets.items():
            pred = predicted_ms(table, policy)
            for runtime in ("onnxruntime", "lite"):
                suffix = ".onnx" if runtime == "onnxruntime" else ".ms"
                run = export_int8(dnet, runtime, tmp / f"{label.replace(' ', '_')}{suffix}", calibration=calib,
                                  test_x=x, test_y=y, log=lambda s: None)
                rows.append(f"{model:8s} {label:13s} {runtime:11s} {run.accuracy:6.2f}% "
                            f"{100 * run.agreement:6.2f}% ({run.network_accuracy:5.2f}%) "
                            f"{run.path.stat().st_size / 1024:8.1f} KB {run.latency_ms:8.3f} ms "
                            f"{run.float_latency_ms / run.latency_ms:6.2f}x {pred:8.4f} ms {pred_float / pred:6.2f}x"
                            f"  [{run.int8_kernel_count}/{run.int8_layer_count} int8 kernels; {run.note}]")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["lenet", "resnet20"])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--out", default=None, help="search output folder (default: a temporary one)")
    parser.add_argument("--save", action="store_true", help="write benchmarks/results/deploy_quantized-<date>.txt")
    parser.add_argument("--note", default="", help="what else ran on the machine")
    args = parser.parse_args()

    lines = [f"command: python benchmarks/deploy_quantized.py {' '.join(sys.argv[1:])}",
             f"date: {time.strftime('%Y-%m-%d %H:%M')}; machine: {platform.node()}, {platform.processor() or 'x86_64'}, "
             f"{__import__('os').cpu_count()} cores",
             "latency: batch 1, 1 thread, measured here; speed-up vs the same network's float file in the same runtime "
             "(timed interleaved); predicted: host-cpu model",
             f"{'network':8s} {'policy':13s} {'runtime':11s} {'test acc':>7s} {'agree (net acc)':>15s} {'file':>11s} "
             f"{'measured':>11s} {'speed-up':>7s} {'predicted':>11s} {'speed-up':>7s}"]
    for line in lines:
        print(line)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        for model in args.networks:
            rows = bench_network(model, args.trials, out, print)
            for row in rows[1:]:
                print(row)
            lines += rows
    if args.save:
        from _results import save

        save("deploy_quantized", lines, args.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
