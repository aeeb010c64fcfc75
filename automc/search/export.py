"""After the search: rebuild the winner, export it, check the export, and summarise."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from automc.errors import AutomcError, TrialFailed
from automc.search.evaluate import Evaluator, settings_from
from automc.search.result import FINAL_CHECKPOINT, SearchResult, trial_network
from automc.training import accuracy, train


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


def final_finetune(net, evaluator: Evaluator, path: Path) -> float:
    """Fine-tune the winner's ``net`` in place on the train split as ``export.final_finetune`` says
    (distilled from the baseline when ``distill_weight`` > 0), save its weights atomically to
    ``path``, and return its validation accuracy (%)."""
    import mindspore as ms

    config, data = evaluator.ctx.config, evaluator.ctx.data
    cfg = config.export.final_finetune
    teacher = evaluator.baseline if cfg.distill_weight > 0 else None
    try:
        train(net, data.train.x, data.train.y, settings_from(cfg, config.seed), teacher=teacher)
    except TrialFailed as exc:
        raise AutomcError(f"the final fine-tune of the winner failed ({exc}); lower export.final_finetune.lr "
                          "and run the search again (its trials are kept, only the export reruns)") from None
    tmp = path.with_suffix(".tmp.ckpt")
    ms.save_checkpoint(net, str(tmp))
    os.replace(tmp, path)
    return accuracy(net, data.val.x, data.val.y)


def export_best(result: SearchResult, prepared, tracker, *, log: Callable[[str], None] = print) -> dict[str, str]:
    """Export the winner (and the baseline, for comparison) to the configured formats; log artifacts.

    With ``export.final_finetune`` the winner is first fine-tuned further (``final_finetune``) and
    that network is exported; ``summary.json`` then holds its test accuracy as ``test_accuracy`` and
    the trial checkpoint's as ``test_accuracy_before_final_finetune``. Without it neither that field
    nor ``export/best_final.ckpt`` exist (a stale one is removed)."""
    from automc.deploy.formats import export_formats
    from automc.deploy.mindir import export_mindir

    config, best = result.config, result.best
    data = prepared.context.data
    evaluator = Evaluator(prepared.context)
    out = config.out_path / "export"
    out.mkdir(parents=True, exist_ok=True)
    sample = data.test.x[:1]
    check_x = data.test.x[:256]

    trained = trial_network(config, best, evaluator=evaluator)
    net = deploy_form(trained, evaluator)
    best_test = accuracy(net, data.test.x, data.test.y)
    result.baseline.setdefault("test_accuracy", accuracy(evaluator.baseline, data.test.x, data.test.y))
    artifacts: dict[str, str] = {}
    final: dict[str, float] = {}
    final_path = out / FINAL_CHECKPOINT
    if config.export.final_finetune is not None:
        val = final_finetune(trained, evaluator, final_path)
        net = deploy_form(trained, evaluator)
        final = {"test_accuracy_before_final_finetune": best_test, "val_accuracy_after_final_finetune": val,
                 "final_finetune_epochs": config.export.final_finetune.epochs}
        best_test = accuracy(net, data.test.x, data.test.y)
        log(f"final fine-tune: {final['final_finetune_epochs']:g} epochs, val {best.metrics['accuracy']:.2f}% -> "
            f"{val:.2f}%, test {final['test_accuracy_before_final_finetune']:.2f}% -> {best_test:.2f}% ({final_path})")
        artifacts["final_checkpoint"] = str(final_path)
    else:
        final_path.unlink(missing_ok=True)  # an earlier export's; summary.json no longer refers to it
    best.metrics["test_accuracy"] = best_test

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

    outcomes = export_formats(net, config.export.formats, out / "best", sample, check_x, log=log)
    for fmt, outcome in outcomes.items():
        if outcome.ok:
            artifacts[fmt] = str(outcome.path)
            artifacts[f"{fmt}_max_abs_diff"] = f"{outcome.report.max_abs_diff:.3g}"
        else:
            artifacts[f"{fmt}_error"] = outcome.error
    if outcomes.get("mindir") and outcomes["mindir"].ok:
        base_path = export_mindir(evaluator.baseline, sample, out / "baseline.mindir")
        artifacts["baseline_mindir"] = str(base_path)
        result.baseline["file_bytes"] = Path(base_path).stat().st_size
        best.metrics["file_bytes"] = outcomes["mindir"].path.stat().st_size

    summary = {"baseline": result.baseline, "best": {"trial": best.number, **best.metrics, **final},
               "policy": best.policy.to_dict(), "artifacts": artifacts}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    artifacts["summary"] = str(out / "summary.json")
    for key in ("policy", "layer_table", "layer_latency", "summary", "final_checkpoint", "mindir", "onnx", "ms"):
        if key in artifacts:
            tracker.log_artifact(Path(artifacts[key]), "best")
    tracker.log_artifact(prepared.baseline_checkpoint, "baseline")
    tracker.log_metrics(tracker.parent_id, {"best_accuracy": best.metrics["accuracy"],
                                            "best_test_accuracy": best_test, "best_trial": best.number,
                                            **{f"best_{k}": v for k, v in final.items()}})
    if final:
        tracker.log_params(tracker.parent_id, {f"final_finetune.{k}": v
                                               for k, v in config.export.final_finetune.model_dump().items()})
    return artifacts
