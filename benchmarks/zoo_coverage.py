"""How much of a real model zoo automc can prune (issue 33): mindcv 0.3.0 networks (no weights,
10 classes), each traced by automc's own tracer, then every prunable group pruned by 50 %.

Per network it prints: the trace time, rows and groups, the share of MACs in layers whose output
channels are prunable (the classifier aside) and the counted reasons for the rest; then, pruned:
whether it builds and runs, params and MACs before and after, whether its re-trace equals the
table's prediction, the table's MACs against an independent count from hooks on every
Conv2d/Dense, and MindIR parity (relative max |d| / max |y|, argmax agreement), and for LITE_NETWORKS the same for the .ms
converted by MindSpore Lite 2.0's converter and run in its runtime.

Targets (issue 33): >= 90 % of the MACs prunable on every network; no prunable group that breaks a
network; table MACs within 1 % of the hook count everywhere; trace under 60 s.

    python benchmarks/zoo_coverage.py [--only resnet18,densenet121] [--save --note TEXT]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from _results import save

#: (mindcv arch, input size): 64x64 inputs, VGG at 224 and Inception-v3 at 96 (their minimum sizes)
NETWORKS = (
    ("resnet18", 64), ("resnet50", 64), ("densenet121", 64), ("googlenet", 64), ("inception_v3", 96),
    ("squeezenet1_1", 64), ("shufflenet_v2_x1_0", 64), ("regnet_x_200mf", 64), ("ghostnet_100", 64),
    ("convnext_tiny", 64), ("mobilenet_v2_100", 64), ("mobilenet_v3_small_100", 64),
    ("mobilenet_v3_large_100", 64), ("efficientnet_b0", 64), ("mnasnet_100", 64), ("vgg11", 224),
)
RATIO = 0.5
#: networks also converted to MindSpore Lite (.ms) and run in its runtime, pruned (issue 33)
LITE_NETWORKS = ("resnet18", "densenet121", "shufflenet_v2_x1_0", "ghostnet_100")


def hook_macs(net, shape) -> int:
    """MACs of one sample counted from hooks on every Conv2d and Dense (independent of the table)."""
    import mindspore as ms
    from mindspore import nn

    total = [0]

    def count(cell, inputs, output):
        x = inputs[0]
        if isinstance(cell, nn.Dense):
            total[0] += int(np.prod(x.shape[:-1])) * cell.in_channels * cell.out_channels
        else:
            kh, kw = cell.kernel_size
            total[0] += int(np.prod(output.shape)) * (cell.in_channels // cell.group) * kh * kw

    handles = [cell.register_forward_hook(count) for _, cell in net.cells_and_names()
               if isinstance(cell, (nn.Conv2d, nn.Dense))]
    try:
        net.set_train(False)
        net(ms.Tensor(np.zeros((1, *shape), np.float32)))
    finally:
        for h in handles:
            h.remove()
    return total[0]


def n_params(net) -> int:
    return sum(int(np.prod(p.shape)) for p in net.trainable_params())


def measure(arch: str, size: int) -> dict:
    import mindspore as ms

    from automc.algorithms.pruning import prune, refuse_breaking_groups
    from automc.analysis import build_layer_table
    from automc.deploy.mindir import check_mindir_parity, export_mindir
    from automc.models import build_model
    from automc.policy import Policy

    shape = (3, size, size)
    row: dict = {"arch": arch, "size": size}
    net = build_model("mindcv", num_classes=10, input_shape=shape, arch=arch)
    start = time.perf_counter()
    traced = build_layer_table(net, shape)
    row["trace_s"] = time.perf_counter() - start
    start = time.perf_counter()
    table = refuse_breaking_groups(net, traced, shape)  # as a search builds its table (automc.search.baseline.analyse)
    row["check_s"] = time.perf_counter() - start
    row["refused"] = len(traced.prunable_groups) - len(table.prunable_groups)  # the tracer's missed couplings
    cov = table.coverage()
    row.update(rows=len(table), groups=len(table.coupling), prunable_groups=len(table.prunable_groups),
               share=cov.share, coverage=cov.to_text())
    row["table_macs"], row["hook_macs"] = table.totals()["macs"], hook_macs(net, shape)
    policy = Policy(prune={g.name: RATIO for g in table.prunable_groups})
    try:
        pruned = prune(net, table, policy)
        x = np.random.default_rng(0).standard_normal((4, *shape)).astype(np.float32)
        assert pruned(ms.Tensor(x)).shape == (4, 10)
        row["runs"] = True
    except Exception as exc:  # a prunable group that breaks the network: the row says how
        row["runs"] = False
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return row
    row["params"], row["params_pruned"] = n_params(net), n_params(pruned)
    row["macs_pruned_predicted"] = table.totals(policy)["macs"]
    retraced = build_layer_table(pruned, shape)
    predicted = table.resolve(policy)
    row["retrace_equal"] = bool(retraced.names == table.names and np.array_equal(retraced.cin, predicted.cin[0])
                                and np.array_equal(retraced.cout, predicted.cout[0]))
    row["hook_macs_pruned"] = hook_macs(pruned, shape)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_mindir(pruned, x[:1], Path(tmp) / f"{arch}.mindir")
        report = check_mindir_parity(pruned, path, x)
        row["mindir_relative"], row["mindir_argmax"] = report.relative_diff, report.argmax_agreement
        if arch in LITE_NETWORKS:
            from automc.deploy.lite import check_ms_parity, convert_to_ms

            try:
                # exported at the batch it is checked with: a network whose construct reshapes by
                # a shape it computes (ShuffleNet's channel shuffle) bakes the batch into the .ms
                batch_path = export_mindir(pruned, x, Path(tmp) / f"{arch}-batch.mindir")
                ms_path = convert_to_ms(batch_path, Path(tmp) / f"{arch}.ms")
                ms = check_ms_parity(pruned, ms_path, x, repeats=3)
                row["ms"] = f"{ms.relative_diff:.1g} / {100 * ms.argmax_agreement:.0f}%"
            except Exception as exc:  # the row says what failed
                row["ms"] = f"FAILED ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated archs (default: all of NETWORKS)")
    ap.add_argument("--save", action="store_true", help="write the output to benchmarks/results/")
    ap.add_argument("--note", default="", help="what else was running (saved with the results)")
    args = ap.parse_args(argv)
    os.environ.setdefault("GLOG_v", "3")
    import mindspore as ms

    ms.set_context(mode=ms.PYNATIVE_MODE)
    wanted = set(args.only.split(",")) if args.only else None
    lines: list[str] = []

    def out(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    out("zoo_coverage: channel pruning on mindcv 0.3.0 networks (no weights, 10 classes), every prunable group at "
        f"{RATIO:.0%}")
    out(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}; machine: {platform.node()} "
        f"({os.cpu_count()} cores), CPython {platform.python_version()}, MindSpore {ms.__version__}")
    out(f"command: python {' '.join([Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:]))}")
    out()
    header = ("network", "input", "trace s", "check s", "rows", "groups", "prunable", "refused by the check",
              "MACs prunable", "runs", "params", "MACs (table/hooks)", "re-trace", "MindIR rel / argmax",
              ".ms (Lite) rel / argmax")
    out("  ".join(header))
    results, reasons = [], []
    for arch, size in NETWORKS:
        if wanted and arch not in wanted:
            continue
        try:
            r = measure(arch, size)
        except Exception:
            out(f"{arch}: FAILED to trace\n{traceback.format_exc()}")
            continue
        results.append(r)
        reasons.append(f"  {arch}: {r['coverage']}" + (f"; pruned: {r['error']}" if "error" in r else ""))
        first = (arch, f"{size}", f"{r['trace_s']:.1f}", f"{r['check_s']:.1f}", f"{r['rows']}", f"{r['groups']}",
                 f"{r['prunable_groups']}", f"{r['refused']}", f"{r['share']:.1%}")
        if not r["runs"]:
            cells = (*first, "NO", "-", f"{r['table_macs'] / r['hook_macs']:.3f}x", "-", "-")
        else:
            cells = (*first, "yes",
                     f"{r['params'] / 1e6:.2f}M -> {r['params_pruned'] / 1e6:.2f}M",
                     f"{r['table_macs'] / r['hook_macs']:.3f}x -> {r['macs_pruned_predicted'] / r['hook_macs_pruned']:.3f}x",
                     "equal" if r["retrace_equal"] else "DIFFERS",
                     f"{r['mindir_relative']:.1g} / {100 * r['mindir_argmax']:.0f}%", r.get("ms", "-"))
        out("  ".join(cells))
    out()
    out("MACs (table/hooks): the table's MACs over an independent count from hooks on every Conv2d/Dense, before -> "
        "after pruning")
    out()
    out("what keeps the rest:")
    for line in reasons:
        out(line)
    out()
    met = [r for r in results if r["share"] >= 0.9]
    broken = [r["arch"] for r in results if not r["runs"]]
    off = [r["arch"] for r in results if abs(r["table_macs"] / r["hook_macs"] - 1) > 0.01]
    slow = [r["arch"] for r in results if r["trace_s"] > 60]
    missed = [f"{r['arch']} {r['refused']}" for r in results if r["refused"]]
    out(f"targets: >= 90 % of the MACs prunable: {len(met)} of {len(results)} networks; prunable groups that break a "
        f"network: {', '.join(broken) or 'none'}; table MACs off the hook count by > 1 %: {', '.join(off) or 'none'}; "
        f"traces over 60 s: {', '.join(slow) or 'none'}; groups the tracer called prunable that broke the network "
        f"(refused by the check): {', '.join(missed) or 'none'}")
    if args.save:
        save("zoo_coverage", lines, args.note)


if __name__ == "__main__":
    main()
