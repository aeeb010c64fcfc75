"""The search as pictures (matplotlib, Agg backend): Pareto front, per-layer policy, per-layer
latency of the winner vs the baseline, and the search history.

Each function takes a ``SearchResult`` and a folder, writes one PNG and returns its path (or
``None`` when there is nothing to draw, e.g. no completed trial yet). ``make_plots`` draws them all.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from automc.objectives import fmt_metric, parse_objective
from automc.report import analysis as A
from automc.search.result import SearchResult
from automc.search.strategies.sensitivity import read_saved

_DPI = 110
_GREY, _FRONT, _BEST, _BASE = "#9aa5b1", "#d1495b", "#2a9d8f", "#222222"


def _figure(rows: int, cols: int, width: float, height: float):
    """A figure of ``rows`` x ``cols`` panels, ``width`` x ``height`` inches in all: (figure, panels
    as a 2-D array). matplotlib's object API, without pyplot: no global figure registry, and no
    garbage collection when a figure is closed (pyplot's ``close`` collects, 0.6 s a figure in a
    process holding a search's networks)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(rows, cols, squeeze=False)


def _row(n: int, width: float, height: float):
    """A figure of ``n`` panels side by side, each ``width`` x ``height`` inches: (figure, panels)."""
    fig, axes = _figure(1, n, width * n, height)
    return fig, axes[0]


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)  # a Figure without pyplot draws with the Agg canvas for PNG
    return path


def _axis_label(name: str) -> str:
    unit = parse_objective(name).unit
    return f"{name} ({unit})" if unit else name


def plot_pareto(result: SearchResult, out_dir: Path) -> Path | None:
    """Accuracy vs each cost axis (cost objectives, latency per named device): every completed
    trial, the 2-D Pareto front, the baseline and the winner."""
    done = A.completed(result)
    if not done:
        return None
    axes_names = A.cost_axes(result)
    fig, row = _row(len(axes_names), 5.2, 4.2)
    for ax, cost in zip(row, axes_names):
        pts = [t for t in done if cost in t.metrics]
        ax.scatter([t.metrics[cost] for t in pts], [t.metrics["accuracy"] for t in pts], s=22, c=_GREY,
                   label="trials", zorder=2)
        front = A.front_2d(result, cost) if pts else []
        if front:
            ax.plot([t.metrics[cost] for t in front], [t.metrics["accuracy"] for t in front], "-o", c=_FRONT,
                    ms=6, lw=1.5, label="Pareto front", zorder=3, drawstyle="steps-post")
            for t in front:
                ax.annotate(f"#{t.number}", (t.metrics[cost], t.metrics["accuracy"]), textcoords="offset points",
                            xytext=(4, 4), fontsize=8, color=_FRONT)
        if cost in result.baseline and "accuracy" in result.baseline:
            ax.scatter([result.baseline[cost]], [result.baseline["accuracy"]], marker="*", s=160, c=_BASE,
                       label="baseline", zorder=4)
        best = result.best
        if best is not None and cost in best.metrics:
            ax.scatter([best.metrics[cost]], [best.metrics["accuracy"]], s=180, facecolors="none",
                       edgecolors=_BEST, linewidths=2, label=f"winner #{best.number}", zorder=5)
        ax.set_xlabel(_axis_label(cost))
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.set_title(f"accuracy vs {cost}")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{result.config.name}: {len(done)} completed trials")
    return _save(fig, out_dir / "pareto.png")


def plot_policy(result: SearchResult, out_dir: Path) -> Path | None:
    """The winner's per-layer policy: share of output channels removed and, if any layer is
    quantized, weight/activation bit-widths."""
    bd = A.layer_breakdown(result)
    if bd is None:
        return None
    idx = [i for i, k in enumerate(bd.kinds) if k in A.WEIGHT_KINDS]
    if not idx:
        return None
    names = [bd.names[i] for i in idx]
    quantized = bool((bd.w_bits[1] < 32).any() or (bd.a_bits[1] < 32).any() or result.config.compress.quantization)
    n = 2 if quantized else 1
    width = max(6.0, 0.45 * len(idx) + 2)
    fig, axes = _figure(n, 1, width, 3.2 * n + 0.8)
    x = np.arange(len(idx))
    ax = axes[0][0]
    ratio = bd.prune_ratio[idx]
    present = bd.present[1][idx]
    ax.bar(x, ratio, color=[_BEST if p else _FRONT for p in present])
    for j, i in enumerate(idx):
        ax.annotate(f"{bd.cout[1][i]}/{bd.cout[0][i]}" if present[j] else "removed", (x[j], ratio[j]),
                    textcoords="offset points", xytext=(0, 2), ha="center", fontsize=7)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("output channels removed")
    ax.set_title(f"winner #{result.best.number}: per-layer policy (labels: channels kept/baseline)")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if quantized:
        ax = axes[1][0]
        ax.bar(x - 0.2, bd.w_bits[1][idx], width=0.4, label="weight bits", color="#3d5a80")
        ax.bar(x + 0.2, bd.a_bits[1][idx], width=0.4, label="activation bits", color="#ee9b00")
        ax.set_yscale("log", base=2)
        ax.set_ylim(1, 48)
        ax.set_yticks([2, 4, 8, 16, 32], ["2", "4", "8", "16", "32"])
        ax.set_ylabel("bits (32 = float)")
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, out_dir / "policy.png")


def plot_layer_latency(result: SearchResult, out_dir: Path) -> Path | None:
    """Per-layer latency (``hw_cost.estimate(...).layer_latency_ms``) of the winner vs the baseline,
    one panel per device."""
    bd = A.layer_breakdown(result)
    if bd is None:
        return None
    devs = list(bd.latency_ms)
    fig, row = _row(len(devs), 5.0, max(3.0, 0.28 * len(bd.names) + 1.5))
    y = np.arange(len(bd.names))
    for ax, dev in zip(row, devs):
        lat = bd.latency_ms[dev]
        ax.barh(y + 0.2, lat[0], height=0.4, color=_GREY, label=f"baseline {fmt_metric('latency', lat[0].sum())}")
        ax.barh(y - 0.2, lat[1], height=0.4, color=_BEST, label=f"winner {fmt_metric('latency', lat[1].sum())}")
        ax.set_yticks(y, bd.names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("latency (ms)")
        ref = " (reference device)" if bd.reference_device else ""
        ax.set_title(f"{dev}{ref}")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"per-layer latency, winner #{result.best.number} vs baseline (cost model)")
    return _save(fig, out_dir / "layer_latency.png")


def plot_history(result: SearchResult, out_dir: Path) -> Path | None:
    """Each objective per trial (completed trials as dots, pruned/failed as crosses where a
    value exists) with the best-so-far line."""
    trials = sorted(result.trials, key=lambda t: t.number)
    if not trials:
        return None
    metrics = A.objective_metrics(result)
    fig, row = _row(len(metrics), 5.0, 3.8)
    for ax, m in zip(row, metrics):
        done = [t for t in trials if t.state == "COMPLETE" and m.name in t.metrics]
        other = [t for t in trials if t.state != "COMPLETE" and m.name in t.metrics]
        ax.scatter([t.number for t in done], [t.metrics[m.name] for t in done], s=20, c=_GREY, label="completed")
        if other:
            ax.scatter([t.number for t in other], [t.metrics[m.name] for t in other], marker="x", s=20,
                       c="#bbbbbb", label="pruned / failed")
        values = [t.metrics.get(m.name, math.nan) if t.state == "COMPLETE" else math.nan for t in trials]
        ax.step([t.number for t in trials], A.best_so_far(values, m.direction), where="post", c=_FRONT,
                label="best so far")
        if m.name in result.baseline:
            ax.axhline(result.baseline[m.name], ls="--", c=_BASE, lw=1, label="baseline")
        ax.set_xlabel("trial")
        ax.set_ylabel(_axis_label(m.name))
        ax.set_title(f"{m.name} ({m.direction})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{result.config.name}: search history ({len(trials)} trials)")
    return _save(fig, out_dir / "history.png")


def plot_sensitivity(result: SearchResult, out_dir: Path) -> Path | None:
    """Validation accuracy of the baseline with one change at a time (pruning ratio per group,
    bit-width per layer), batch-norm re-estimated, no fine-tune: what the budget solver minimises."""
    sens = read_saved(result.out_dir)
    if sens is None or not sens.curves:
        return None
    sections = [s for s in ("prune", "w_bits", "a_bits") if any(c.section == s for c in sens.curves)]
    fig, row = _row(len(sections), 5.5, 4.0)
    for ax, section in zip(row, sections):
        for c in (c for c in sens.curves if c.section == section):
            ax.plot(c.values, c.accuracy, marker="o", ms=3, lw=1, label=c.key)
        ax.axhline(sens.baseline_accuracy, ls="--", c=_BASE, lw=1, label="baseline")
        ax.set_xlabel("share of channels removed" if section == "prune" else f"{section} (bits)")
        ax.set_ylabel("val accuracy (%), no fine-tune")
        if section != "prune":
            ax.invert_xaxis()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle(f"sensitivity on {sens.samples} validation samples (entry s.e. ~{sens.standard_error:.1f} points)")
    return _save(fig, out_dir / "sensitivity.png")


def make_plots(result: SearchResult, out_dir: str | Path) -> dict[str, Path]:
    """Every plot that has data, as ``{"pareto": path, "policy": ..., "layer_latency": ..., "history": ...}``."""
    out_dir = Path(out_dir)
    plots = {"pareto": plot_pareto, "policy": plot_policy, "layer_latency": plot_layer_latency,
             "history": plot_history, "sensitivity": plot_sensitivity}
    out = {}
    for key, fn in plots.items():
        path = fn(result, out_dir)
        if path is not None:
            out[key] = path
    return out
