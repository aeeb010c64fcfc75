"""``automc status``: where a search stands, read from its study (works while it runs)."""

from __future__ import annotations

from collections import Counter

from automc.config import ExperimentConfig
from automc.errors import mask_secrets
from automc.objectives import fmt_metric
from automc.report import analysis as A
from automc.report._mlflow import tracking_uri
from automc.report._store import load
from automc.search.result import SearchResult
from automc.search.study import storage_url

_RECENT = 5


def status_text(config: ExperimentConfig, *, result: SearchResult | None = None, experiment_file: str = "X.yaml") -> str:
    """Trials by state, baseline, best so far (overall and per device), the Pareto front,
    the latest trials, failures, and the commands to go further."""
    result = result or load(config)
    counts = Counter(t.state for t in result.trials)
    finished = sum(n for s, n in counts.items() if s in ("COMPLETE", "PRUNED", "FAIL"))
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no trials yet"
    lines = [f"study {config.name!r}: {finished}/{config.search.n_trials} trials finished ({states})",
             f"  storage: {mask_secrets(storage_url(config))}",
             f"  MLflow:  {mask_secrets(tracking_uri(config))}"]
    axes = A.cost_axes(result)
    lines.append("baseline: " + ", ".join(f"{k} {fmt_metric(k, A.metric_value(result, None, k))}"
                                          for k in ["accuracy", *axes]))
    best = result.best
    if best is not None:
        lines.append(f"best so far: trial #{best.number}: "
                     + ", ".join(f"{k} {fmt_metric(k, A.metric_value(result, best, k))}" for k in ["accuracy", *axes])
                     + f"  [{A.policy_text(best.policy, limit=4)}]")
    elif result.trials:
        lines.append("best so far: none (no completed trial meets the constraints yet)")
    if result.pareto_front:
        lines.append(f"Pareto front ({', '.join(config.objectives)}): "
                     + ", ".join(f"#{t.number}" for t in result.pareto_front))
    for d in A.best_per_device(result):
        if d.trial is not None:
            lines.append(f"best on {d.device}: trial #{d.trial.number}, {fmt_metric('latency', d.best_ms)} "
                         f"(baseline {fmt_metric('latency', d.baseline_ms)}, {d.speedup:.2f}x), "
                         f"accuracy {fmt_metric('accuracy', d.trial.metrics.get('accuracy'))}")
    recent = sorted(result.trials, key=lambda t: t.number)[-_RECENT:]
    if recent:
        lines.append("latest trials:")
        for t in recent:
            shown = ", ".join(f"{k} {fmt_metric(k, t.metrics[k])}" for k in ["accuracy", *axes] if k in t.metrics)
            took = f", {t.duration_s:.1f}s" if t.duration_s else ""
            lines.append(f"  #{t.number:<4} {t.state.lower():<8} {shown}{took}")
    fails = [t for t in result.trials if t.state == "FAIL"]
    for t in fails[-10:]:
        lines.append(f"failed trial #{t.number}: {t.fail_reason or 'no reason recorded'}")
    if finished < config.search.n_trials and not counts.get("RUNNING"):
        lines.append(f"not finished: `automc search {experiment_file}` resumes it")
    lines.append(f"next: automc report {experiment_file}  |  automc ui {experiment_file}  |  "
                 f"automc export {experiment_file} --trial N --format mindir,onnx")
    return mask_secrets("\n".join(lines))
