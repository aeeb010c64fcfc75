"""Text the CLI prints: the end-of-search summary, ``status`` and ``devices``."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from automc import hw_cost
from automc.errors import mask_secrets
from automc.objectives import fmt_metric
from automc.search.finish.measure import latest, read_measurements, speedups
from automc.search.finish.reference import read_reference
from automc.search.result import SearchResult
from automc.search.tracking import ui_hint


def summary_text(result: SearchResult) -> str:
    """Baseline vs best, the artifacts, and how to open the MLflow UI."""
    b, best = result.baseline, result.best
    done = Counter(t.state for t in result.trials)
    lines = [f"\nsearch {result.config.name!r}: {len(result.trials)} trials "
             f"({', '.join(f'{n} {s.lower()}' for s, n in sorted(done.items()))}), "
             f"{len(result.pareto_front)} on the Pareto front"]
    if best is None:
        lines.append("no trial met the constraints; see `automc status` for failures")
        return "\n".join(lines)
    m = best.metrics
    rows = [("", "baseline", f"best (trial #{best.number})")]
    rows.append(("val accuracy", fmt_metric("accuracy", b["accuracy"]), fmt_metric("accuracy", m["accuracy"])))
    if "test_accuracy" in m:
        rows.append(("test accuracy", fmt_metric("accuracy", b.get("test_accuracy")), fmt_metric("accuracy", m["test_accuracy"])))
    shapes = result.table.resolve([result.best.policy]) if result.table is not None else None
    macs = float(shapes.macs.sum()) if shapes is not None else m.get("macs")
    params = float(shapes.params.sum()) if shapes is not None else m.get("params")
    rows.append(("MACs", fmt_metric("macs", b.get("macs")), fmt_metric("macs", macs)))
    rows.append(("params", fmt_metric("params", b.get("params")), fmt_metric("params", params)))
    if "file_bytes" in m:
        rows.append(("MindIR file", fmt_metric("file_bytes", b.get("file_bytes")), fmt_metric("file_bytes", m["file_bytes"])))
    for key, value in m.items():
        if key.startswith(("latency@", "energy@")) or key == "size":
            rows.append((key, fmt_metric(key, b.get(key)), fmt_metric(key, value)))
    ref = read_reference(result.out_dir)
    if ref and ref.get("policy") is not None and "test_accuracy" in m:
        rows.append(("uniform, same budget", "", f"test {ref['test_accuracy']:.2f}% "
                     f"(winner {m['test_accuracy'] - ref['test_accuracy']:+.2f} points)"))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, width)) for r in rows]
    measured = read_measurements(result.out_dir)
    shown = [m for m in latest(measured) if m.trial in (None, best.number)]
    if shown:
        lines += ["", "measured on a device:", *(f"  {m.line()}" for m in shown),
                  *(f"  {line}" for line in speedups(shown, measured))]
    lines.append("")
    for key, path in result.artifacts.items():
        if key not in ("tracking_uri",):
            lines.append(f"{key:>18}: {path}")
    uri = result.artifacts.get("tracking_uri", "")
    if uri:
        lines.append(f"\nMLflow: {mask_secrets(uri)}")
        lines.append(f"  open the UI:  {ui_hint(uri)}")
    return "\n".join(lines)


def calibration_text(name: str, spec: hw_cost.DeviceSpec | None = None) -> str:
    """What a device's model is fitted to, with its held-out figures, or "uncalibrated"; a device
    ``automc calibrate`` wrote (``spec.calibration``): its base and its in-sample and leave-one-out errors."""
    if name == "host-cpu":
        return "this machine, by automc.hw_cost.calibrate_host()"
    mine = spec.calibration if spec is not None else None
    if mine:
        errors = [f"{label} within 10 %: {s['within_10pct'] * 100:.0f}%" for label, s in
                  (("in-sample", mine.get("in_sample")), ("left out", mine.get("leave_one_out"))) if s]
        rows = len(mine.get("rows") or ())
        return f"yours: {rows} measurement{'s' * (rows != 1)}, base {mine.get('base', '?')}" + (
            f" ({', '.join(errors)})" if errors else "")
    profile = hw_cost.device_profile(name)
    if profile is None:
        return "uncalibrated (datasheet)"
    h = profile.heldout
    if not h:
        return f"{profile.n_samples} measurements ({profile.source or 'no held-out figures'})"
    rho = h.get("spearman", float("nan"))
    n, nets = int(h["measurements"]), int(h["networks"])
    return (f"{n} measurement{'s' * (n != 1)}, {nets} network{'s' * (nets != 1)}: "
            f"{h['within_25pct'] * 100:.0f}% / " + (f"{rho:.2f}" if rho == rho else "-"))


def devices_text(files: Sequence[str] = ()) -> str:
    """Every known device (built-in, registered, in the ``$AUTOMC_DEVICES`` folders) and the
    device YAMLs ``files``, with their key figures."""
    specs = [(name, hw_cost.get_device(name)) for name in hw_cost.list_devices()]
    specs += [(spec.name, spec) for spec in (hw_cost.load_device(f) for f in files)]
    rows = [("device", "kind", "peak TOPS (fp32/fp16/int8/int4)", "DRAM GB/s", "us per op / inference", "align cin/cout",
             "fitted to measurements (held out: within 25% / Spearman)")]
    for name, d in specs:
        peaks = "/".join(f"{d.peak_tops[p]:g}" if p in d.peak_tops else "-" for p in ("fp32", "fp16", "int8", "int4"))
        rows.append((name, d.kind, peaks, f"{d.memory_bandwidth_gbps:g}", f"{d.mean_op_overhead_us:.1f} / {d.network_overhead_us:.0f}",
                     f"{d.align.get('cin', 1)}/{d.align.get('cout', 1)}", calibration_text(name, d)))
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip() for r in rows]
    lines.append("\nSources for every figure: automc/hw_cost/devices/<device>.yaml; measurements: "
                 "automc/hw_cost/data/published_latency.csv (benchmarks/hw_cost_published.py); add your own "
                 f"device with a YAML file of the same fields (`automc calibrate` fits one to your measurements; "
                 f"${hw_cost.USER_DEVICES_ENV} names the folder(s) of yours).")
    return "\n".join(lines)
