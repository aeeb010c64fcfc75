"""The search report: tables (Pareto front, winner per device, per-layer breakdown) and plots,
as self-contained HTML (plots embedded) or Markdown (plots linked), plus a console form.

Every URL is passed through ``mask_secrets``: a report never shows a password.
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from automc._files import write_text_atomic
from automc._version import __version__
from automc.algorithms.nas import ElasticResolver
from automc.algorithms.quantization import weight_only
from automc.errors import mask_secrets
from automc.objectives import fmt_metric
from automc.policy import Policy
from automc.report import analysis as A
from automc.report._mlflow import SearchRuns, tracking_uri
from automc.report.plots import make_plots
from automc.search.finish.measure import baseline_for, latest, measured_speedup, read_measurements
from automc.search.finish.reference import read_reference
from automc.search.result import SearchResult
from automc.search.study import storage_url

Format = Literal["html", "md"]


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Report:
    title: str
    facts: list[tuple[str, str]]
    tables: list[Table] = field(default_factory=list)


def build(result: SearchResult) -> Report:
    """The report's content, independent of its format."""
    cfg = result.config
    counts = Counter(t.state for t in result.trials)
    facts = [
        ("model", str(cfg.model.name or cfg.model.factory)),
        ("data", cfg.data.name),
        ("compression", ", ".join(k for k in ("nas", "pruning", "quantization") if getattr(cfg.compress, k))),
        ("objectives", ", ".join(cfg.objectives)),
        ("constraints", "; ".join(cfg.constraints) or "none"),
        ("strategy", f"{cfg.search.strategy}, {len(result.trials)}/{cfg.search.n_trials} trials "
                     f"({', '.join(f'{n} {s.lower()}' for s, n in sorted(counts.items())) or 'none yet'})"),
        ("study storage", mask_secrets(storage_url(cfg))),
        ("MLflow", mask_secrets(tracking_uri(cfg))),
    ]
    report = Report(title=f"automc report: {cfg.name}", facts=facts)
    tables = (_summary(result), _uniform(result), _pareto(result), _per_device(result), _measured(result),
              _int8(result), _structure(result), _layers(result))
    report.tables += [t for t in tables if t is not None]  # a section without data is left out
    fails = [t for t in result.trials if t.state == "FAIL"]
    if fails:
        report.tables.append(Table("Failed trials", ["trial", "reason"],
                                   [[f"#{t.number}", t.fail_reason or "no reason recorded"] for t in fails[-20:]]))
    return report


def _summary(result: SearchResult) -> Table:
    best = result.best
    keys = ["accuracy", *(k for k in A.cost_axes(result) if k != "accuracy"), "macs", "params", "size"]
    keys = list(dict.fromkeys(keys))
    rows = [[k, fmt_metric(k, A.metric_value(result, None, k)),
             fmt_metric(k, A.metric_value(result, best, k)) if best else "-"] for k in keys]
    note = "" if best else "No completed trial meets the constraints yet."
    if best:
        note = (f"Winner: lowest {result.config.export.select_by or A.cost_axes(result)[0]} among feasible trials "
                f"within {_points(result)} of the baseline. "
                f"Policy: {A.policy_text(best.policy)}")
    return Table("Baseline vs winner", ["metric", "baseline", f"winner (trial #{best.number})" if best else "winner"],
                 rows, note)


def _uniform(result: SearchResult) -> Table | None:
    """The winner against one ratio / bit-width for every layer at the same budget."""
    ref, best = read_reference(result.out_dir), result.best
    if ref is None or best is None or ref.get("policy") is None:
        return None
    summary = result.out_dir / "export" / "summary.json"  # the winner's test accuracy is measured at export
    exported = json.loads(summary.read_text()).get("best", {}) if summary.is_file() else {}
    test = best.metrics.get("test_accuracy", exported.get("test_accuracy") if exported.get("trial") == best.number else None)
    rows = [["val accuracy", fmt_metric("accuracy", best.metrics["accuracy"]), fmt_metric("accuracy", ref["val_accuracy"])],
            ["test accuracy", fmt_metric("accuracy", test), fmt_metric("accuracy", ref.get("test_accuracy"))]]
    for k, v in ref.get("metrics", {}).items():
        rows.append([k, fmt_metric(k, best.metrics.get(k, float("nan"))), fmt_metric(k, v)])
    note = (f"Uniform: every layer at {A.policy_text(Policy.from_dict(ref['policy']))}, within {ref['budget']}, "
            "fine-tuned like a trial (and the same final fine-tune as the winner).")
    return Table("Winner vs uniform compression at the same budget", ["metric", "winner", "uniform"], rows, note)


def _points(result: SearchResult) -> str:
    drop = result.config.export.max_accuracy_drop
    return f"{drop:g} point" + ("" if drop == 1 else "s")


def _pareto(result: SearchResult) -> Table:
    metrics = [m.name for m in A.objective_metrics(result)]
    extra = [k for k in A.cost_axes(result) if k not in metrics]
    cols = metrics + extra
    rows = []
    for t in result.pareto_front:
        mark = " (winner)" if result.best is not None and t.number == result.best.number else ""
        rows.append([f"#{t.number}{mark}", *(fmt_metric(k, t.metrics.get(k)) for k in cols),
                     "yes" if A.feasible(result, t) else "no", A.policy_text(t.policy, limit=4)])
    return Table(f"Pareto front over {', '.join(metrics)} ({len(rows)} trials)", ["trial", *cols, "feasible", "policy"],
                 rows, "" if rows else "No completed trial yet.")


def _per_device(result: SearchResult) -> Table | None:
    rows = []
    for d in A.best_per_device(result):
        if d.trial is None:
            rows.append([d.device, "-", fmt_metric("latency", d.baseline_ms), "-", "-", "-"])
            continue
        rows.append([d.device, f"#{d.trial.number}", fmt_metric("latency", d.baseline_ms),
                     fmt_metric("latency", d.best_ms), f"{d.speedup:.2f}x" if math.isfinite(d.speedup) else "-",
                     fmt_metric("accuracy", d.trial.metrics.get("accuracy"))])
    if not rows:
        return None
    return Table("Best policy per device", ["device", "trial", "baseline latency", "best latency", "speed-up", "accuracy"],
                 rows, "Per device: the feasible trial with the lowest latency on it, within "
                       f"{_points(result)} of the baseline (cost-model estimates).")


def _measured(result: SearchResult) -> Table | None:
    """Latency measured on a device (``export.measure``, ``automc measure``) beside the prediction."""
    measured = read_measurements(result.out_dir)
    if not measured:
        return None
    rows = []
    for m in latest(measured):
        base = baseline_for(m, measured)
        speedup = ("-" if base is None or m.network == "baseline" else
                   f"{measured_speedup(m, base):.2f}x / {base.predicted_latency_ms / m.predicted_latency_ms:.2f}x")
        rows.append([m.network, "-" if m.trial is None else f"#{m.trial}", m.runner, str(m.threads),
                     fmt_metric("latency", m.measured_latency_ms), fmt_metric("latency", m.min_ms),
                     f"{fmt_metric('latency', m.predicted_latency_ms)} ({m.device})", f"{m.ratio:.2f}", speedup])
    return Table("Latency measured on a device vs predicted",
                 ["network", "trial", "runner", "threads", "measured (median of runs)", "measured (min)", "predicted",
                  "measured / predicted", "speed-up vs baseline (measured / predicted)"], rows,
                 "MindSpore Lite's benchmark on the runner's device, batch 1 (export/measured.json): the median of "
                 "the runs' averages, and the fastest inference; the measured speed-up compares each run's fastest "
                 "inference with the baseline's in the same round. Predicted: the device model on the layer table.")


def _int8(result: SearchResult) -> Table | None:
    """The quantized winner as each int8 runtime executed it at export (summary.json "int8")."""
    summary = result.out_dir / "export" / "summary.json"
    runs = json.loads(summary.read_text()).get("int8", {}) if summary.is_file() else {}
    if not runs:
        return None
    rows = [[runtime, Path(r["path"]).name, f"{100 * r['agreement']:.2f}% of {r['n_samples']}",
             f"{r['accuracy']:.2f}% ({r['network_accuracy']:.2f}%)", f"{r['int8_kernel_count']} / {r['int8_layer_count']}",
             f"{r['latency_ms']:.3f} ms / {r['float_latency_ms']:.3f} ms", "yes" if r["parity_ok"] else "NO"]
            for runtime, r in runs.items()]
    return Table("The quantized winner in runtimes with int8 kernels (this machine)",
                 ["runtime", "file", "top-1 agreement", "test accuracy (network)", "int8 kernels / int8 layers",
                  "latency int8 / float", "parity"], rows,
                 "Run on the test split in the runtime; parity: agreement >= 99 % and accuracy within 0.5 points of "
                 "the quantized network. Latency: batch 1, 1 thread, against the same network with float layers in "
                 "the same runtime, timed interleaved.")


def _structure(result: SearchResult) -> Table | None:
    """The winner's sub-network per stage (NAS): blocks kept, width, kernel of each kept block."""
    best = result.best
    if best is None or best.policy is None or not best.policy.nas or not isinstance(getattr(result.table, "elastic", None),
                                                                                      ElasticResolver):
        return None
    rows = [[r["stage"], r["depth"], r["width"], r["kernel"]] for r in result.table.elastic.structure(best.policy.nas)]
    return Table(f"Sub-network of the winner (trial #{best.number}), per stage", ["stage", "depth", "width", "kernel"],
                 rows, "depth: blocks kept of the stage's; width: multiplier (baseline -> kept channels of its "
                       "coupled groups); kernel: of each kept block's elastic convolution.")


def _layers(result: SearchResult) -> Table | None:
    bd = A.layer_breakdown(result)
    if bd is None:
        return None
    devs = list(bd.latency_ms)
    header = ["layer", "kind", "out channels", "removed", "w/a bits", *(f"ms@{d}" for d in devs)]
    rows = []
    for i, name in enumerate(bd.names):
        present = bool(bd.present[1][i])
        ch = f"{bd.cout[0][i]} -> {bd.cout[1][i]}" if present else f"{bd.cout[0][i]} -> removed"
        narrow = "*" if weight_only(int(bd.w_bits[1][i])) else ""
        bits = f"{bd.w_bits[1][i]}{narrow}/{bd.a_bits[1][i]}" if bd.kinds[i] in A.WEIGHT_KINDS else "-"
        lat = [f"{bd.latency_ms[d][0][i]:.4f} -> {bd.latency_ms[d][1][i]:.4f}" for d in devs]
        weights = bd.kinds[i] in A.WEIGHT_KINDS
        rows.append([name, bd.kinds[i], ch, f"{bd.prune_ratio[i]:.0%}" if weights else "-", bits, *lat])
    totals = [f"{bd.latency_ms[d][0].sum():.4f} -> {bd.latency_ms[d][1].sum():.4f}" for d in devs]
    rows.append(["total", "", "", "", "", *totals])
    note = "Latency: baseline -> winner, per layer, from the hardware cost model."
    if any(weight_only(int(b)) for b in bd.w_bits[1]):
        note += " *: a weight-only size choice (no runtime here computes below 8 bits)."
    if bd.reference_device:
        note += f" The experiment names no device; {devs[0]} is shown for reference."
    return Table(f"Per-layer breakdown of the winner (trial #{result.best.number})", header, rows, note)


# ---------------------------------------------------------------------------- renderers
def to_text(report: Report) -> str:
    lines = [report.title, ""]
    width = max(len(k) for k, _ in report.facts)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in report.facts]
    for t in report.tables:
        lines += ["", t.title]
        rows = [t.header, *t.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(t.header))]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        if t.note:
            lines.append(f"  {t.note}")
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(report: Report, plots: dict[str, Path], out_dir: Path) -> str:
    lines = [f"# {report.title}", "", *[f"- **{k}**: {_md_cell(v)}" for k, v in report.facts]]
    for t in report.tables:
        lines += ["", f"## {t.title}", "", "| " + " | ".join(map(_md_cell, t.header)) + " |",
                  "|" + "---|" * len(t.header)]
        lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in t.rows]
        if t.note:
            lines += ["", t.note]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{k}]({p.relative_to(out_dir) if p.is_relative_to(out_dir) else p})" for k, p in plots.items()]
    lines += ["", f"<sub>automc {__version__}, {time.strftime('%Y-%m-%d %H:%M')}</sub>", ""]
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}
th{background:#f3f5f7}h2{margin-top:1.6em}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.note{color:#555;font-size:13px}dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}dt{font-weight:600}"""


def to_html(report: Report, plots: dict[str, Path]) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(report.title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{e(report.title)}</h1><dl>"]
    parts += [f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in report.facts]
    parts.append("</dl>")
    for t in report.tables:
        parts.append(f"<h2>{e(t.title)}</h2><table><tr>{''.join(f'<th>{e(h)}</th>' for h in t.header)}</tr>")
        parts += [f"<tr>{''.join(f'<td>{e(c)}</td>' for c in r)}</tr>" for r in t.rows]
        parts.append("</table>")
        if t.note:
            parts.append(f"<p class='note'>{e(t.note)}</p>")
    if plots:
        parts.append("<h2>Plots</h2>")
        for key, path in plots.items():
            data = base64.b64encode(path.read_bytes()).decode()
            parts.append(f"<figure><img alt='{e(key)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption class='note'>{e(path.name)}</figcaption></figure>")
    parts.append(f"<p class='note'>automc {__version__}, {time.strftime('%Y-%m-%d %H:%M')}</p></body></html>")
    return "\n".join(parts)


def write_report(result: SearchResult, *, fmt: Format = "html", out_dir: str | Path | None = None,
                 mlflow: bool = True) -> Path:
    """Draw the plots, write ``<output_dir>/report/report.html`` (or ``.md``) and return its path.

    With ``mlflow=True`` the PNGs go to the search's MLflow parent run under ``plots/`` and the
    report under ``report/``: to ``result.run_id`` (the run of the search that returned
    ``result``), else to the newest parent run of the experiment.
    """
    if fmt not in ("html", "md"):
        raise ValueError(f"report format {fmt!r}; use 'html' or 'md'")
    out = Path(out_dir) if out_dir is not None else result.out_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    plots = make_plots(result, out)
    content = build(result)
    path = out / f"report.{fmt}"
    text = to_html(content, plots) if fmt == "html" else to_markdown(content, plots, out)
    write_text_atomic(path, mask_secrets(text))
    if mlflow:
        runs = SearchRuns(result.config)
        parent = result.run_id or runs.latest_parent()
        runs.log_files(parent, [*plots.values()], "plots")
        runs.log_files(parent, [path], "report")
    return path


def report_search(result: SearchResult, *, log: Callable[[str], None] = print) -> Path | None:
    """The report of a search that just finished (``automc search``, ``automc.search()``): written
    and logged to its run, its path in ``result.artifacts["report"]``. Plots and report are a
    convenience: a failure is one warning line, never the loss of a finished search."""
    try:
        path = write_report(result)
    except Exception as exc:  # noqa: BLE001
        log(f"warning: report not written ({type(exc).__name__}: {exc}); `automc report` retries")
        return None
    result.artifacts["report"] = str(path)
    return path
