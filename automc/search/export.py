"""After the search: rebuild the winner, export it, check the export, and summarise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from automc.search.evaluate import Evaluator
from automc.search.result import SearchResult, trial_network
from automc.training import accuracy


def deploy_form(net, evaluator: Evaluator):
    """The network as exported: each compressor's deployment form, in order."""
    for compressor in evaluator.compressors:
        net = compressor.to_deploy_form(net)
    return net


def latency_devices(config) -> list[str]:
    """Devices the experiment cares about: from objectives, constraints and ``devices``."""
    from automc.search.objectives import parse_constraint, parse_objective

    metrics = [parse_objective(o) for o in config.objectives] + [parse_constraint(c).metric for c in config.constraints]
    names = [m.device for m in metrics if m.device] + list(config.devices)
    return list(dict.fromkeys(names))


def layer_latency_breakdown(prepared, policy) -> str:
    """CSV: per layer, baseline and best-policy latency (ms) on each device of the experiment."""
    from automc import hw_cost
    from automc.policy import Policy

    devices = latency_devices(prepared.context.config)
    if not devices:
        return ""
    table = prepared.context.table
    cols = {d: hw_cost.estimate(table, [Policy(), policy], d).layer_latency_ms for d in devices}
    header = "layer,kind," + ",".join(f"baseline_ms@{d},best_ms@{d}" for d in devices)
    lines = [header]
    for i, name in enumerate(table.names):
        cells = ",".join(f"{cols[d][0, i]:.6f},{cols[d][1, i]:.6f}" for d in devices)
        lines.append(f"{name},{table.kind[i]},{cells}")
    return "\n".join(lines) + "\n"


def pareto_rows(result: SearchResult) -> list[dict]:
    """The Pareto front as plain rows: trial, every metric, and the policy's params."""
    return [{"trial": t.number, **t.metrics, **(t.policy.flat_params() if t.policy else {})}
            for t in result.pareto_front]


def log_pareto_front(result: SearchResult, tracker) -> Path:
    """Write the Pareto front as CSV next to the exports and log it to the search's parent run."""
    import csv

    rows = pareto_rows(result)
    path = result.config.out_path / "export" / "pareto_front.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    tracker.log_artifact(path)
    return path


def export_best(result: SearchResult, prepared, tracker, *, log: Callable[[str], None] = print) -> dict[str, str]:
    """Export the winner (and the baseline, for comparison) to the configured formats; log artifacts."""
    from automc.deploy.mindir import check_mindir_parity, export_mindir

    config, best = result.config, result.best
    data = prepared.context.data
    evaluator = Evaluator(prepared.context)
    out = config.out_path / "export"
    out.mkdir(parents=True, exist_ok=True)
    sample = data.test.x[:1]
    check_x = data.test.x[:256]

    net = deploy_form(trial_network(config, best, evaluator=evaluator), evaluator)
    best_test = accuracy(net, data.test.x, data.test.y)
    result.baseline.setdefault("test_accuracy", accuracy(evaluator.baseline, data.test.x, data.test.y))
    best.metrics["test_accuracy"] = best_test

    artifacts: dict[str, str] = {}
    policy_path = out / "best_policy.json"
    policy_path.write_text(best.policy.to_json())
    artifacts["policy"] = str(policy_path)
    table_path = out / "best_layer_table.json"
    table_path.write_text(json.dumps(prepared.context.table.rows(), indent=2))
    artifacts["layer_table"] = str(table_path)
    breakdown = layer_latency_breakdown(prepared, best.policy)
    if breakdown:
        breakdown_path = out / "best_layer_latency.csv"
        breakdown_path.write_text(breakdown)
        artifacts["layer_latency"] = str(breakdown_path)

    if "mindir" in config.export.formats or "ms" in config.export.formats:
        path = export_mindir(net, sample, out / "best.mindir")
        report = check_mindir_parity(net, path, check_x)
        log(f"MindIR round-trip (mindspore.load + nn.GraphCell): {report}")
        if not report.ok(1e-4):
            log("warning: the MindIR outputs differ from the in-memory network by more than 1e-4")
        artifacts["mindir"] = str(path)
        artifacts["mindir_max_abs_diff"] = f"{report.max_abs_diff:.3g}"
        base_path = export_mindir(evaluator.baseline, sample, out / "baseline.mindir")
        artifacts["baseline_mindir"] = str(base_path)
        result.baseline["file_bytes"] = Path(base_path).stat().st_size
        best.metrics["file_bytes"] = Path(path).stat().st_size
    if "onnx" in config.export.formats:
        from automc.deploy.onnx import check_onnx_parity, export_onnx

        path = export_onnx(net, sample, out / "best.onnx")
        report = check_onnx_parity(net, path, check_x)
        log(f"ONNX parity (onnxruntime): {report}")
        artifacts["onnx"] = str(path)
        artifacts["onnx_max_abs_diff"] = f"{report.max_abs_diff:.3g}"
    if "ms" in config.export.formats:
        from automc.deploy import lite

        ms_path = lite.convert_to_ms(artifacts["mindir"], out / "best.ms")
        report = lite.check_ms_parity(net, ms_path, check_x)
        log(f"MindSpore Lite .ms (real Lite runtime): {report}")
        artifacts["ms"] = str(ms_path)
        artifacts["ms_max_abs_diff"] = f"{report.max_abs_diff:.3g}"

    summary = {"baseline": result.baseline, "best": {"trial": best.number, **best.metrics},
               "policy": best.policy.to_dict(), "artifacts": artifacts}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    artifacts["summary"] = str(out / "summary.json")
    for key in ("policy", "layer_table", "layer_latency", "summary", "mindir", "onnx", "ms"):
        if key in artifacts:
            tracker.log_artifact(Path(artifacts[key]), "best")
    tracker.log_artifact(prepared.baseline_checkpoint, "baseline")
    tracker.log_metrics(tracker.parent_id, {"best_accuracy": best.metrics["accuracy"],
                                            "best_test_accuracy": best_test, "best_trial": best.number})
    return artifacts
