"""Ranking candidates before any fine-tune: proxy accuracy and an accuracy predictor (Once-for-All).

- **Proxy accuracy**: the candidate built from the (elastically trained) baseline with inherited
  weights, batch-norm statistics re-estimated on training inputs, scored on a validation subset;
  what a trial sees at step 0, without the fine-tune. About a second per sub-network here.
- **Accuracy predictor**: a ridge regression over the one-hot encoding of every decision, fitted on
  the proxies of sub-networks sampled uniformly from the space; it scores thousands of candidates
  per second, so an evolutionary search can look at far more of the space than it could measure.

Both are cached by the baseline checkpoint (``<output_dir>/cache/proxy-<hash>.json``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from automc._files import read_or_set_aside, write_text_atomic
from automc.algorithms import Decision
from automc.search.evaluate import Evaluator
from automc.search.space import policy_from_values
from automc.search.strategies.sensitivity import decision_grid, score

Log = Callable[[str], None]


def value_grid(decisions: Sequence[Decision]) -> dict[str, tuple[Any, ...]]:
    """Decision name -> the discrete values a candidate takes (categorical choices; a pruning
    ratio's step grid, as sensitivity scores it)."""
    return {d.param_name: tuple(decision_grid(d)) for d in decisions}


def by_compression(decision: Decision, values: Sequence[Any]) -> list[Any]:
    """``values`` of ``decision`` from the least to the most compressing (a pruning ratio grows;
    bits, width, depth and kernel shrink)."""
    return sorted(values, reverse=decision.section != "prune")


def extremes(decisions: Sequence[Decision]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the least compressed candidate, the most compressed one): every decision at its least and
    at its most compressing grid value."""
    grid = value_grid(decisions)
    ordered = {d.param_name: by_compression(d, grid[d.param_name]) for d in decisions}
    return {k: v[0] for k, v in ordered.items()}, {k: v[-1] for k, v in ordered.items()}


def sample_values(grid: Mapping[str, tuple[Any, ...]], n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """``n`` assignments drawn uniformly and independently per decision."""
    return [{k: v[rng.integers(len(v))] for k, v in grid.items()} for _ in range(n)]


def encode(grid: Mapping[str, tuple[Any, ...]], assignments: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """One-hot features of ``assignments`` (one block per decision, one column per grid value)."""
    cols = []
    for name, values in grid.items():
        index = {v: i for i, v in enumerate(values)}
        block = np.zeros((len(assignments), len(values)))
        block[np.arange(len(assignments)), [index[a[name]] for a in assignments]] = 1.0
        cols.append(block)
    return np.concatenate(cols, axis=1) if cols else np.zeros((len(assignments), 0))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    rho = spearmanr(a, b).statistic
    return float(rho) if np.isfinite(rho) else 0.0


@dataclass
class AccuracyPredictor:
    """Ridge regression of proxy accuracy on the one-hot decisions (regularisation by
    cross-validation); ``cv_spearman`` is its rank correlation on held-out measured candidates."""

    grid: dict[str, tuple[Any, ...]]
    model: Any = None
    cv_spearman: float = float("nan")

    def fit(self, assignments: Sequence[Mapping[str, Any]], accuracies: Sequence[float], *, seed: int = 0):
        from sklearn.linear_model import RidgeCV
        from sklearn.model_selection import KFold, cross_val_predict

        x, y = encode(self.grid, assignments), np.asarray(accuracies, dtype=float)
        make = lambda: RidgeCV(alphas=np.logspace(-2, 3, 12))  # noqa: E731
        if len(y) >= 10:
            folds = KFold(5, shuffle=True, random_state=seed)
            self.cv_spearman = spearman(cross_val_predict(make(), x, y, cv=folds), y)
        self.model = make().fit(x, y)
        return self

    def predict(self, assignments: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.model.predict(encode(self.grid, assignments))


@dataclass(frozen=True)
class ProxyTable:
    """Measured proxy accuracies (%) of sub-networks, with the time they took."""

    assignments: tuple[dict[str, Any], ...]
    accuracies: tuple[float, ...]
    samples: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"assignments": list(self.assignments), "accuracies": list(self.accuracies), "samples": self.samples,
                "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ProxyTable":
        return cls(tuple(data["assignments"]), tuple(data["accuracies"]), data["samples"], data["seconds"])


def proxy_accuracies(evaluator, decisions: Sequence[Decision], assignments: Sequence[Mapping[str, Any]], *,
                     samples: int, seed: int, log: Log = lambda s: None) -> tuple[list[float], float]:
    """(proxy accuracy % of each assignment, seconds): built by ``evaluator.compress`` with
    batch-norm re-estimated, on ``samples`` validation inputs."""
    val = evaluator.ctx.data.val
    idx = np.sort(np.random.default_rng(seed).choice(len(val), size=min(samples, len(val)), replace=False))
    x, y = val.x[idx], val.y[idx]
    start, out = time.perf_counter(), []
    for i, a in enumerate(assignments):
        out.append(score(evaluator.compress(policy_from_values(decisions, a), recalibrate=True, seed=seed), x, y)[0])
        if (i + 1) % 25 == 0 or i + 1 == len(assignments):
            log(f"proxy: {i + 1}/{len(assignments)} sub-networks measured ({time.perf_counter() - start:.0f}s)")
    return out, time.perf_counter() - start


def load_or_measure(prepared, *, seed: int, log: Log = lambda s: None) -> ProxyTable:
    """Proxy accuracies of ``search.proxy_subnets`` sub-networks sampled uniformly from the space
    (the largest and smallest included) with ``seed`` (the search's: another search seed measures
    other sub-networks, so its predictor and search are its own), measured once per baseline and
    seed, and cached."""
    ctx, cfg = prepared.context, prepared.context.config
    decisions = prepared.space.decisions
    grid = value_grid(decisions)
    n, samples = cfg.search.proxy_subnets, cfg.search.proxy_samples
    blob = json.dumps({"baseline": prepared.baseline_checkpoint.name, "grid": grid, "n": n, "samples": samples,
                       "seed": seed, "data": ctx.data.fingerprint()}, sort_keys=True, default=str)
    path = cfg.out_path / "cache" / f"proxy-{hashlib.sha256(blob.encode()).hexdigest()[:16]}.json"
    table = read_or_set_aside(path, lambda p: ProxyTable.from_dict(json.loads(p.read_text())), "proxy", log)
    if table is not None:
        log(f"proxy: reusing {path} ({len(table.accuracies)} sub-networks)")
        return table
    rng = np.random.default_rng(seed)
    assignments = list(extremes(decisions)) + sample_values(grid, max(0, n - 2), rng)
    log(f"proxy: measuring {len(assignments)} sub-networks on {min(samples, len(ctx.data.val))} validation samples "
        "(inherited weights, batch-norm re-estimated, no fine-tune)")
    accs, seconds = proxy_accuracies(Evaluator(ctx), decisions, assignments, samples=samples, seed=seed, log=log)
    table = ProxyTable(tuple(assignments), tuple(accs), min(samples, len(ctx.data.val)), seconds)
    write_text_atomic(path, json.dumps(table.to_dict()))
    log(f"proxy: {len(accs)} sub-networks in {seconds:.0f}s ({60 * len(accs) / max(seconds, 1e-9):.0f}/min); "
        f"median {np.median(accs):.1f}%, largest {accs[0]:.1f}%, smallest {accs[1]:.1f}%")
    return table
