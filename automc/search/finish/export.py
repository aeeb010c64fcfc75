"""The winner's export: rebuild it, fine-tune it further (``export.final_finetune``), convert it to
its deployment form, write and check every format, and ``summary.json``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Callable

from automc import hw_cost
from automc._files import write_text_atomic
from automc.algorithms.nas import resolver_of
from automc.deploy import export_mindir
from automc.deploy.formats import export_formats
from automc.errors import AutomcError, TrialFailed
from automc.policy import Policy
from automc.search.costs import latency_devices
from automc.search.evaluate import Evaluator, save_weights, settings_from
from automc.search.result import FINAL_CHECKPOINT, SearchResult, trial_network
from automc.training import accuracy, train


def deploy_form(net, evaluator: Evaluator):
    """The network as exported: each compressor's deployment form, in order."""
    for compressor in evaluator.compressors:
        net = compressor.to_deploy_form(net)
    return net


def layer_latency_breakdown(prepared, policy) -> str:
    """CSV: per layer, baseline and best-policy latency (ms) on each device of the experiment."""
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
    rows = pareto_rows(result)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    path = write_text_atomic(result.config.out_path / "export" / "pareto_front.csv", text.getvalue())
    tracker.log_artifact(path)
    return path


def final_finetune(net, evaluator: Evaluator, path: Path) -> float:
    """Fine-tune the winner's ``net`` in place on the train split as ``export.final_finetune`` says
    (distilled from the baseline when ``distill_weight`` > 0), save its weights atomically to
    ``path``, and return its validation accuracy (%)."""
    config, data = evaluator.ctx.config, evaluator.ctx.data
    cfg = config.export.final_finetune
    teacher = evaluator.baseline if cfg.distill_weight > 0 else None
    try:
        train(net, data.train.x, data.train.y, settings_from(cfg, config.seed), teacher=teacher)
    except TrialFailed as exc:
        raise AutomcError(f"the final fine-tune of the winner failed ({exc}); lower export.final_finetune.lr "
                          "and run the search again (its trials are kept, only the export reruns)") from None
    save_weights(net, path)
    return accuracy(net, data.val.x, data.val.y)


#: summary.json fields of the winner that only its export computes (restored when an export is reused)
EXPORT_METRICS = ("test_accuracy", "file_bytes")
#: training images an int8 runtime's converter calibrates activation ranges on (Lite FULL_QUANT)
CALIBRATION_SAMPLES = 256
#: summary.json fields of the winner that the final fine-tune adds
FINAL_FIELDS = ("test_accuracy_before_final_finetune", "val_accuracy_after_final_finetune", "final_finetune_epochs")


def structure_text(row: dict) -> str:
    """One stage of a sub-network's structure (``ElasticResolver.structure``) as a short text."""
    return ", ".join(f"{k} {row[k]}" for k in ("depth", "width", "kernel") if row[k] != "-")


def export_fingerprint(result: SearchResult) -> dict:
    """What an export depends on: the winner, how many trials the study had finished, the formats
    and the final fine-tune. Equal fingerprint = the files in ``export/`` are this export."""
    config = result.config
    return {"best_trial": result.best.number,
            "finished_trials": sum(t.state in ("COMPLETE", "FAIL", "PRUNED") for t in result.trials),
            "formats": sorted(config.export.formats),
            "final_finetune": config.export.final_finetune.model_dump() if config.export.final_finetune else None}


def _reusable(out: Path, fingerprint: dict) -> dict | None:
    """``export/summary.json`` if it records an export with this fingerprint whose files all exist."""
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    files = [v for k, v in summary.get("artifacts", {}).items() if not k.endswith(("_diff", "_error"))]
    if summary.get("fingerprint") != fingerprint or not all(Path(f).exists() for f in files):
        return None
    return summary


def export_best(result: SearchResult, prepared, tracker, *, log: Callable[[str], None] = print) -> dict[str, str]:
    """Export the winner (and the baseline, for comparison) to the configured formats; log artifacts.

    Call it holding ``folder_lock(<out>/export)``: processes sharing the study export the winner
    once per finished study (whichever finishes first; the others find its ``summary.json`` with
    the same :func:`export_fingerprint` and reuse the files), every file written aside and renamed.
    With ``export.final_finetune`` the winner is first fine-tuned further (``final_finetune``) and
    that network is exported; ``summary.json`` then holds its test accuracy as ``test_accuracy`` and
    the trial checkpoint's as ``test_accuracy_before_final_finetune``. Without it neither that field
    nor ``export/best_final.ckpt`` exist (a stale one is removed)."""
    config, best = result.config, result.best
    out = config.out_path / "export"
    fingerprint = export_fingerprint(result)
    summary = _reusable(out, fingerprint)
    if summary is not None:
        log(f"export: trial {best.number} is already exported for this study ({out / 'summary.json'})")
        result.baseline.update({k: v for k, v in summary["baseline"].items() if k not in result.baseline})
        best.metrics.update({k: summary["best"][k] for k in EXPORT_METRICS if k in summary["best"]})
        final = {k: summary["best"][k] for k in FINAL_FIELDS if k in summary["best"]}
        artifacts = dict(summary["artifacts"])
    else:
        artifacts, final = _export(result, prepared, fingerprint, log)
    for key in ("policy", "structure", "layer_table", "layer_latency", "summary", "final_checkpoint", "mindir", "onnx",
                "ms"):
        if key in artifacts:
            tracker.log_artifact(Path(artifacts[key]), "best")
    if "structure" in artifacts:  # the winner's sub-network per stage, readable in the run's parameters
        rows = json.loads(Path(artifacts["structure"]).read_text())
        tracker.log_params(tracker.parent_id, {f"best_structure.{r['stage']}": structure_text(r) for r in rows})
    tracker.log_artifact(prepared.baseline_checkpoint, "baseline")
    tracker.log_metrics(tracker.parent_id, {"best_accuracy": best.metrics["accuracy"],
                                            "best_test_accuracy": best.metrics["test_accuracy"],
                                            "best_trial": best.number,
                                            **{f"best_{k}": v for k, v in final.items()}})
    int8 = json.loads(Path(artifacts["summary"]).read_text()).get("int8", {})
    tracker.log_metrics(tracker.parent_id, {f"best_{runtime}_int8_{k}": float(run[k]) for runtime, run in int8.items()
                                            for k in ("agreement", "accuracy", "latency_ms", "float_latency_ms",
                                                      "parity_ok")})
    if final:
        tracker.log_params(tracker.parent_id, {f"final_finetune.{k}": v
                                               for k, v in config.export.final_finetune.model_dump().items()})
    return artifacts


def _export(result: SearchResult, prepared, fingerprint: dict, log: Callable[[str], None]) -> tuple[dict, dict]:
    """Write the winner's files and ``summary.json``; (artifacts, final fine-tune fields)."""
    config, best = result.config, result.best
    data = prepared.context.data
    evaluator = Evaluator(prepared.context)
    out = config.out_path / "export"
    out.mkdir(parents=True, exist_ok=True)
    sample = data.test.x[:1]
    check_x = data.test.x[:256]

    trained = trial_network(config, best, evaluator=evaluator, log=log)
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

    artifacts["policy"] = str(write_text_atomic(out / "best_policy.json", best.policy.to_json()))
    if best.policy.nas:
        structure = resolver_of(prepared.context.table).structure(best.policy.nas)
        artifacts["structure"] = str(write_text_atomic(out / "best_structure.json", json.dumps(structure, indent=1)))
    artifacts["layer_table"] = str(write_text_atomic(out / "best_layer_table.json",
                                                     json.dumps(prepared.context.table.rows(), indent=2)))
    breakdown = layer_latency_breakdown(prepared, best.policy)
    if breakdown:
        artifacts["layer_latency"] = str(write_text_atomic(out / "best_layer_latency.csv", breakdown))

    outcomes = export_formats(net, config.export.formats, out / "best", sample, check_x, log=log,
                              test=(data.test.x, data.test.y), calibration=data.train.x[:CALIBRATION_SAMPLES])
    int8 = {}
    for fmt, outcome in outcomes.items():
        if outcome.int8 is not None:
            artifacts[fmt] = str(outcome.path)
            int8[outcome.int8.runtime] = outcome.int8.fields()
        elif outcome.ok:
            artifacts[fmt] = str(outcome.path)
            artifacts[f"{fmt}_max_abs_diff"] = f"{outcome.report.max_abs_diff:.3g}"
            artifacts[f"{fmt}_relative_diff"] = f"{outcome.report.relative_diff:.3g}"
        else:
            artifacts[f"{fmt}_error"] = outcome.error
    if outcomes.get("mindir") and outcomes["mindir"].ok:
        base_path = export_mindir(evaluator.baseline, sample, out / "baseline.mindir")
        artifacts["baseline_mindir"] = str(base_path)
        result.baseline["file_bytes"] = Path(base_path).stat().st_size
        best.metrics["file_bytes"] = outcomes["mindir"].path.stat().st_size

    artifacts["summary"] = str(out / "summary.json")
    summary = {"baseline": result.baseline, "best": {"trial": best.number, **best.metrics, **final},
               "policy": best.policy.to_dict(), "artifacts": artifacts, "fingerprint": fingerprint}
    if int8:  # the quantized winner as each int8 runtime runs it: parity and latency measured here
        summary["int8"] = int8
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=str))
    return artifacts, final
