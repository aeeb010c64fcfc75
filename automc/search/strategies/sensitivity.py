"""Per-decision sensitivity of the baseline: AIMET's "eval dictionary", Model Optimizer's scores.

For every prunable group x ratio of a grid, and every quantizable layer x bit-width, the
baseline with only that one change is scored on a validation subset: accuracy and
cross-entropy loss, after batch-norm re-estimation (EagleEye), without fine-tuning. The budget
solver adds these up; the report plots them. The subset is sized so that one entry's standard
error is about a point of accuracy; the solver reads the loss, which is less noisy.
Results are cached by the baseline's checkpoint, the grid and the subset.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from automc._files import read_or_set_aside, write_text_atomic
from automc.algorithms import Decision
from automc.policy import FLOAT_BITS
from automc.search.evaluate import Evaluator
from automc.search.space import policy_from_values
from automc.training import predict

#: grid points per prunable group (AIMET evaluates 10 ratios per layer)
RATIO_POINTS = 8
Log = Callable[[str], None]


@dataclass(frozen=True)
class Curve:
    """One decision's entries: ``values`` (ratios or bit-widths) with the accuracy (%) and loss
    of the baseline changed by that value alone."""

    section: str  # prune, w_bits, a_bits
    key: str  # group or layer name
    values: tuple[float, ...]
    accuracy: tuple[float, ...]
    loss: tuple[float, ...]

    @property
    def param_name(self) -> str:
        return f"{self.section}.{self.key}"


@dataclass(frozen=True)
class Sensitivity:
    """The baseline's score and every curve; ``damage`` is what the budget solver minimises."""

    baseline_accuracy: float  # %, on the same validation subset as the curves
    baseline_loss: float  # cross-entropy, the reference of every curve's damage
    samples: int  # validation samples per entry
    curves: tuple[Curve, ...]
    seconds: float = 0.0  # time the analysis took
    bn_recalibrated: bool = False  # batch-norm statistics re-estimated before scoring each entry
    meta: dict[str, Any] = field(default_factory=dict)  # what the cache key was made of

    def curve(self, param_name: str) -> Curve:
        for c in self.curves:
            if c.param_name == param_name:
                return c
        raise KeyError(f"no sensitivity entry for {param_name!r}")

    def damage(self, param_name: str) -> np.ndarray:
        """Loss increase over the baseline at each value, made monotone in the compression
        (pruning more, or fewer bits, never helps: a lower entry is noise) and >= 0."""
        c = self.curve(param_name)
        values, loss = np.asarray(c.values, float), np.asarray(c.loss, float) - self.baseline_loss
        order = np.argsort(values) if c.section == "prune" else np.argsort(-values)  # least compressed first
        out = np.empty_like(loss)
        out[order] = np.maximum.accumulate(np.maximum(loss[order], 0.0))
        return out

    def damage_at(self, param_name: str, values: Sequence[float]) -> np.ndarray:
        """``damage`` at ``values``: pruning ratios between measured ones are interpolated
        linearly (as AIMET interpolates its eval dictionary), bit-widths are looked up."""
        c = self.curve(param_name)
        measured = self.damage(param_name)
        if c.section == "prune":
            return np.interp(np.asarray(values, float), np.asarray(c.values, float), measured)
        index = {float(v): i for i, v in enumerate(c.values)}
        return np.array([measured[index[float(v)]] for v in values])

    @property
    def standard_error(self) -> float:
        """Standard error (points) of one accuracy entry at the baseline's accuracy."""
        p = self.baseline_accuracy / 100.0
        return 100.0 * math.sqrt(max(p * (1 - p), 1e-4) / max(self.samples, 1))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Sensitivity":
        curves = tuple(Curve(**{**c, **{k: tuple(c[k]) for k in ("values", "accuracy", "loss")}})
                       for c in data["curves"])
        return cls(**{**data, "curves": curves})

    def to_text(self) -> str:
        lines = [f"sensitivity on {self.samples} validation samples (one entry's standard error "
                 f"~{self.standard_error:.2f} points); baseline accuracy {self.baseline_accuracy:.2f}%, "
                 f"loss {self.baseline_loss:.4f}; {len(self.curves)} decisions in {self.seconds:.1f}s"
                 + (", batch-norm re-estimated" if self.bn_recalibrated else "")]
        for c in self.curves:
            cells = "  ".join(f"{_fmt_value(c.section, v)}:{a:.1f}%" for v, a in zip(c.values, c.accuracy))
            lines.append(f"  {c.param_name}: {cells}")
        return "\n".join(lines)


def _fmt_value(section: str, value: float) -> str:
    return f"{value:.2f}" if section == "prune" else f"{int(value)}b"


def decision_grid(decision: Decision, points: int = RATIO_POINTS) -> tuple[float, ...]:
    """Values at which a decision is scored: every bit-width choice; for a pruning ratio, about
    ``points`` ratios from 0 to its maximum on the decision's own step grid (so the solver's
    solutions are values the sampler can propose too)."""
    if decision.kind == "categorical":
        return tuple(decision.choices)
    step = decision.step or (decision.high - decision.low) / points
    stride = max(1, math.ceil((decision.high - decision.low) / step / (points - 1) - 1e-9))
    n = int(math.floor((decision.high - decision.low) / step + 1e-9))
    idx = sorted(set(range(0, n + 1, stride)) | {n})
    return tuple(round(decision.low + i * step, 6) for i in idx)


def scored_decisions(decisions: Sequence[Decision]) -> list[Decision]:
    """The decisions sensitivity covers: pruning ratios and bit-widths (NAS choices are scored
    as whole sub-networks instead)."""
    return [d for d in decisions if d.section in ("prune", "w_bits", "a_bits")]


def _is_identity(decision: Decision, value: float) -> bool:
    return value == 0 if decision.section == "prune" else value >= FLOAT_BITS


def _has_bn(net) -> bool:
    from mindspore import nn

    return any(isinstance(c, (nn.BatchNorm2d, nn.BatchNorm1d)) for _, c in net.cells_and_names())


def score(net, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(accuracy %, mean cross-entropy) of ``net`` on ``(x, y)``."""
    logits = predict(net, x).astype(np.float64)
    if not np.all(np.isfinite(logits)):
        return 0.0, float("inf")
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = float(-log_p[np.arange(len(y)), y].mean())
    return float((logits.argmax(1) == y).mean() * 100.0), loss


def analyse(evaluator, decisions: Sequence[Decision], *, samples: int = 2000, seed: int = 0,
            log: Log = lambda s: None) -> Sensitivity:
    """Score every ``decision x grid value`` on ``samples`` validation inputs (``evaluator`` is a
    ``automc.search.evaluate.Evaluator``: its ``compress`` applies one-change policies)."""
    data = evaluator.ctx.data
    rng = np.random.default_rng(seed)
    n = min(samples, len(data.val))
    idx = np.sort(rng.choice(len(data.val), size=n, replace=False))
    x, y = data.val.x[idx], data.val.y[idx]
    start = time.perf_counter()
    base_acc, base_loss = score(evaluator.baseline, x, y)
    bn = _has_bn(evaluator.baseline)
    curves = []
    todo = scored_decisions(decisions)
    for i, d in enumerate(todo):
        values, accs, losses = decision_grid(d), [], []
        for v in values:
            if _is_identity(d, v):
                acc, loss = base_acc, base_loss
            else:  # as a trial sees it before fine-tuning: pruned networks get batch-norm re-estimated
                acc, loss = score(evaluator.compress(policy_from_values([d], {d.param_name: v}), recalibrate=True, seed=seed), x, y)
            accs.append(acc)
            losses.append(loss)
        curves.append(Curve(d.section, d.key, tuple(float(v) for v in values), tuple(accs), tuple(losses)))
        log(f"sensitivity {i + 1}/{len(todo)} {d.param_name}: "
            + " ".join(f"{_fmt_value(d.section, v)}:{a:.1f}%" for v, a in zip(values, accs)))
    return Sensitivity(base_acc, base_loss, n, tuple(curves), time.perf_counter() - start, bn)


def cache_key(baseline_checkpoint: Path, decisions: Sequence[Decision], *, samples: int, seed: int,
              data_fingerprint: Any) -> str:
    grid = [(d.param_name, decision_grid(d)) for d in scored_decisions(decisions)]
    blob = json.dumps({"baseline": Path(baseline_checkpoint).name, "grid": grid, "samples": samples, "seed": seed,
                       "data": data_fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_or_analyse(prepared, *, log: Log = lambda s: None) -> Sensitivity:
    """The sensitivity of ``prepared``'s baseline over its search space: read from the cache
    (``<output_dir>/cache/sensitivity-<hash>.json``) or computed once and cached. A copy is kept
    as ``<output_dir>/sensitivity.json`` for reports."""
    ctx = prepared.context
    cfg = ctx.config
    samples = cfg.search.sensitivity_samples
    key = cache_key(prepared.baseline_checkpoint, prepared.space.decisions, samples=samples, seed=cfg.seed,
                    data_fingerprint=ctx.data.fingerprint())
    path = cfg.out_path / "cache" / f"sensitivity-{key}.json"
    result = read_or_set_aside(path, lambda p: Sensitivity.from_dict(json.loads(p.read_text())), "sensitivity", log)
    if result is not None:
        log(f"sensitivity: reusing {path} ({len(result.curves)} decisions)")
    else:
        n = len(scored_decisions(prepared.space.decisions))
        log(f"sensitivity: scoring {n} decisions on {min(samples, len(ctx.data.val))} validation samples "
            "(each change alone, batch-norm re-estimated, no fine-tune)")
        result = analyse(Evaluator(ctx), prepared.space.decisions, samples=samples, seed=cfg.seed, log=log)
        write_text_atomic(path, json.dumps(result.to_dict()))
        log(f"sensitivity: done in {result.seconds:.1f}s (entry standard error ~{result.standard_error:.2f} points)")
    (cfg.out_path / "sensitivity.json").write_text(json.dumps(result.to_dict(), indent=1))
    return result


def read_saved(out_path: Path) -> Sensitivity | None:
    """The sensitivity a search of this output folder computed, if any (for reports)."""
    path = Path(out_path) / "sensitivity.json"
    return Sensitivity.from_dict(json.loads(path.read_text())) if path.is_file() else None
