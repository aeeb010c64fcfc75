"""The winner against the uniform reference at the same budget.

A user would otherwise compress every layer by the same ratio (or bit-width; in a NAS space,
every width by one multiplier). After a search, the least compressed uniform policy within the
same budget (the cost constraints, else the winner's own cost) is fine-tuned exactly as a trial
was, plus the winner's final fine-tune, and scored on the same validation and test splits:
``export/uniform_reference.json``, the summary and the report show both side by side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from automc._files import write_text_atomic
from automc.objectives import Constraint, parse_objective
from automc.search.costs import cost_metrics, tracked_cost_metrics
from automc.search.evaluate import Evaluator
from automc.search.finish.export import export_fingerprint, final_finetune
from automc.search.selection import select_metric
from automc.search.strategies.uniform import uniform_at_budget
from automc.training import accuracy

FILE = "uniform_reference.json"


def _budget(result, prepared) -> tuple[list[Constraint], str]:
    cons = [c for c in prepared.constraints if not c.metric.needs_training and c.op == "<="]
    if cons:
        return cons, "; ".join(c.text for c in cons)
    metric = parse_objective(select_metric(result.config))
    value = result.best.metrics[metric.name]
    return [Constraint(metric, "<=", value, f"{metric.name} <= winner's {value:.6g}")], f"the winner's {metric.name}"


def uniform_reference(result, prepared, *, log: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Evaluate the uniform policy at the winner's budget; write and return its record."""
    if result.best is None or not any(d.section in ("prune", "w_bits") or d.key.endswith(".width")
                                      for d in prepared.space.decisions):
        return None
    config, ctx = result.config, prepared.context
    fingerprint = export_fingerprint(result)
    previous = read_reference(config.out_path)
    if previous is not None and previous.get("fingerprint") == fingerprint:  # another process of the study did it
        log(f"uniform reference: already evaluated for this study ({config.out_path / 'export' / FILE})")
        return previous
    cons, budget_text = _budget(result, prepared)
    policy = uniform_at_budget(ctx.table, prepared.space.decisions, cons, order_by=cons[0].metric)
    out = config.out_path / "export"
    if policy is None:
        record: dict[str, Any] = {"budget": budget_text, "policy": None,
                                  "note": "no uniform policy of the search space meets the budget"}
    else:
        evaluator = Evaluator(ctx)
        evaluated = evaluator.evaluate(policy, seed=config.seed)
        net = evaluated.network
        record = {"budget": budget_text, "policy": policy.to_dict(), "val_accuracy": evaluated.accuracy,
                  "finetune_epochs": evaluated.epochs}
        if config.export.final_finetune is not None:
            record["val_accuracy_after_final_finetune"] = final_finetune(net, evaluator, out / "uniform_final.ckpt")
        record["test_accuracy"] = accuracy(net, ctx.data.test.x, ctx.data.test.y)
        tracked = tracked_cost_metrics(config, prepared.objectives, prepared.constraints)
        record["metrics"] = {k: float(v[0]) for k, v in cost_metrics(ctx.table, policy, tracked).items()}
        best_test = result.best.metrics.get("test_accuracy")
        log(f"uniform reference at {budget_text}: test accuracy {record['test_accuracy']:.2f}%"
            + (f" (winner {best_test:.2f}%, {best_test - record['test_accuracy']:+.2f} points)" if best_test else ""))
    record["fingerprint"] = fingerprint
    write_text_atomic(out / FILE, json.dumps(record, indent=2))
    return record


def read_reference(out_path: Path) -> dict[str, Any] | None:
    path = Path(out_path) / "export" / FILE
    return json.loads(path.read_text()) if path.is_file() else None
