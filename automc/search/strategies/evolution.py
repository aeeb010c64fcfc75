"""Strategies that rank candidates before fine-tuning them: evolution (Once-for-All) and greedy
shrinking (NetAdapt). Both score candidates without training (``automc.search.strategies.proxy``), check
the cost budget with the vectorised cost models, and enqueue only their best candidates, which
the study fine-tunes and tracks like any other trial. They cover every decision of the space
(NAS choices, pruning ratios on their step grid, bit-widths), so joint spaces work too; they are
made for an elastically trained baseline (``compress.nas.supernet``), whose sub-networks score
well without a fine-tune.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from automc.errors import ConfigError
from automc.objectives import Constraint
from automc.search.costs import cost_metrics
from automc.search.strategies.proxy import (AccuracyPredictor, by_compression, extremes, load_or_measure, proxy_accuracies,
                                 sample_values, value_grid)
from automc.search.space import policy_from_values
from automc.search.strategies.base import Log, Proposal
from automc.search.strategies.samplers import TPE
from automc.search.strategies.guided import FRONT_LEVELS
from automc.search.evaluate import Evaluator

Assignment = dict[str, Any]


def budget_levels(prepared) -> list[tuple[float, list[Constraint]]]:
    """``[(level, constraints)]``: the cost constraints (level 1); without any, the first cost
    objective at each of ``FRONT_LEVELS`` of the baseline's cost (a spread over the front)."""
    cons = [c for c in prepared.constraints if not c.metric.needs_training]
    if cons:
        return [(1.0, cons)]
    cost = next((m for m in prepared.objectives if not m.needs_training), None)
    if cost is None:
        raise ConfigError(f"search.strategy {prepared.context.config.search.strategy!r} needs a cost budget: add a "
                          "constraint such as 'latency@arm-a76 <= 50%' or a cost objective such as 'macs'")
    base = prepared.baseline_metrics[cost.name]
    return [(lv, [Constraint(cost, "<=", lv * base, f"{cost.name} <= {lv:.0%}")]) for lv in FRONT_LEVELS]


class Budget:
    """Vectorised feasibility of assignments under ``constraints`` (cost models, no network)."""

    def __init__(self, prepared, constraints: Sequence[Constraint]):
        self.table, self.decisions, self.constraints = prepared.context.table, prepared.space.decisions, list(constraints)
        self.evaluated = 0

    def costs(self, assignments: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        self.evaluated += len(assignments)
        policies = [policy_from_values(self.decisions, a) for a in assignments]
        return cost_metrics(self.table, policies, [c.metric for c in self.constraints])

    def within(self, costs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Which of the candidates whose ``costs`` these are meet every constraint."""
        ok = np.ones(len(next(iter(costs.values()))), dtype=bool)
        for c in self.constraints:
            ok &= c.satisfied(costs[c.metric.name])
        return ok

    def feasible(self, assignments: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.within(self.costs(assignments)) if assignments else np.zeros(0, dtype=bool)


def _key(a: Mapping[str, Any]) -> tuple:
    return tuple(sorted(a.items()))


def evolve(grid: Mapping[str, tuple[Any, ...]], score: Callable[[list[Assignment]], np.ndarray], budget: Budget,
           rng: np.random.Generator, *, candidates: int, population: int = 100, parent_ratio: float = 0.25,
           mutation_ratio: float = 0.5, mutate_prob: float = 0.1, max_tries: int = 50) -> list[tuple[Assignment, float]]:
    """Once-for-All's evolutionary search: a population of candidates within ``budget``; each
    generation keeps the best quarter as parents and breeds children by mutation (each decision
    redrawn with ``mutate_prob``) and uniform crossover, until ``candidates`` were scored. Returns
    every scored candidate, best first."""
    keys = list(grid)
    seen: dict[tuple, tuple[Assignment, float]] = {}

    def fill(make: Callable[[int], list[Assignment]], k: int) -> list[Assignment]:
        out: list[Assignment] = []
        for _ in range(max_tries):
            batch = [a for a in make(2 * (k - len(out))) if _key(a) not in seen]
            out += [a for a, ok in zip(batch, budget.feasible(batch)) if ok][:k - len(out)]
            if len(out) >= k:
                break
        return out

    def add(batch: list[Assignment]) -> None:
        batch = list({_key(a): a for a in batch if _key(a) not in seen}.values())
        for a, s in zip(batch, score(batch) if batch else []):
            seen[_key(a)] = (a, float(s))

    pop = fill(lambda m: sample_values(grid, m, rng), population)
    if not pop:
        raise ConfigError("no candidate within the budget among thousands sampled: relax the constraints or allow "
                          "smaller choices (compress.nas width/depth/kernel, pruning.max_ratio, bit-widths)")
    add(pop)
    n_parents = max(2, int(parent_ratio * population))
    while len(seen) < candidates:
        before = len(seen)
        ranked = sorted(seen.values(), key=lambda t: -t[1])
        parents = [a for a, _ in ranked[:n_parents]]

        def mutate(m: int) -> list[Assignment]:
            out = []
            for _ in range(m):
                a = dict(parents[rng.integers(len(parents))])
                for k in keys:
                    if rng.random() < mutate_prob:
                        a[k] = grid[k][rng.integers(len(grid[k]))]
                out.append(a)
            return out

        def cross(m: int) -> list[Assignment]:
            out = []
            for _ in range(m):
                p, q = rng.choice(len(parents), size=2, replace=False)
                out.append({k: parents[p][k] if rng.random() < 0.5 else parents[q][k] for k in keys})
            return out

        n_mut = int(mutation_ratio * population)
        add(fill(mutate, n_mut) + fill(cross, population - n_parents - n_mut))
        if len(seen) == before:  # the budget admits no new candidate near the parents
            break
    return sorted(seen.values(), key=lambda t: -t[1])


def diverse_top(ranked: Sequence[tuple[Assignment, float]], n: int, min_distance: int = 2) -> list[tuple[Assignment, float]]:
    """The best ``n`` of ``ranked`` that differ pairwise in at least ``min_distance`` decisions
    (the next best ones otherwise differ in a single decision: too alike to fine-tune each)."""
    out: list[tuple[Assignment, float]] = []
    for a, s in ranked:
        if all(sum(a[k] != b[k] for k in a) >= min_distance for b, _ in out):
            out.append((a, s))
            if len(out) == n:
                break
    return out


class Evolution(TPE):
    """Once-for-All: proxies of sub-networks sampled uniformly train an accuracy predictor; an
    evolutionary search scores ``search.candidates`` candidates with it under the cost budget;
    the ``n_trials`` best (pairwise different) are fine-tuned."""

    name = "evolution"

    def propose(self, prepared, log: Log) -> list[Proposal]:
        cfg = self.config.search
        decisions = prepared.space.decisions
        grid = value_grid(decisions)
        measured = load_or_measure(prepared, seed=self.seed, log=log)
        predictor = AccuracyPredictor(grid).fit(measured.assignments, measured.accuracies, seed=self.seed)
        log(f"predictor: ridge on {sum(map(len, grid.values()))} one-hot features, fitted on {len(measured.accuracies)} "
            f"measured sub-networks; cross-validated Spearman {predictor.cv_spearman:.2f}")
        levels = budget_levels(prepared)
        per_level = max(1, -(-cfg.n_trials // len(levels)))
        rng = np.random.default_rng(self.seed)
        out: list[Proposal] = []
        for level, constraints in levels:
            budget = Budget(prepared, constraints)
            start = time.perf_counter()
            ranked = evolve(grid, predictor.predict, budget, rng, candidates=cfg.candidates // len(levels))
            seconds = time.perf_counter() - start
            log(f"evolution: {len(ranked)} candidates scored in {seconds:.1f}s ({60 * len(ranked) / max(seconds, 1e-9):,.0f}/min"
                f", {budget.evaluated} cost-model checks) under {', '.join(c.text for c in constraints)}; "
                f"best predicted {ranked[0][1]:.2f}%")
            for rank, (a, s) in enumerate(diverse_top(ranked, per_level)):
                out.append(Proposal(policy_from_values(decisions, a), {"source": "evolution", "rank": rank,
                                                                       "budget_level": level,
                                                                       "predicted_accuracy": round(s, 3)}))
        return out[:cfg.n_trials]

    def max_trials(self, proposals: list[Proposal]) -> int | None:
        return len(proposals)


def _shrinks(grid: Mapping[str, tuple[Any, ...]], decisions, current: Assignment) -> list[Assignment]:
    """Every one-decision move one grid step towards more compression."""
    out = []
    for d in decisions:
        values = by_compression(d, grid[d.param_name])
        i = values.index(current[d.param_name])
        if i + 1 < len(values):
            out.append({**current, d.param_name: values[i + 1]})
    return out


class Greedy(TPE):
    """NetAdapt: from the least compressed candidate, repeatedly take the one-step shrink of one
    decision that loses the least proxy accuracy per share of cost saved, until the budget is met
    (without constraints: down to each level of the front). The candidate that meets each budget
    and the best other moves of that last step are fine-tuned."""

    name = "greedy"

    def propose(self, prepared, log: Log) -> list[Proposal]:
        cfg = self.config
        decisions = prepared.space.decisions
        grid = value_grid(decisions)
        levels = budget_levels(prepared)
        metric = levels[0][1][0].metric
        base_cost = prepared.baseline_metrics[metric.name]
        evaluator = Evaluator(prepared.context)

        def proxies(batch):
            return np.array(proxy_accuracies(evaluator, decisions, batch, samples=cfg.search.proxy_samples,
                                             seed=cfg.seed)[0])

        least = current = extremes(decisions)[0]
        acc = float(proxies([current])[0])
        per_level = max(1, -(-cfg.search.n_trials // len(levels)))
        out: list[Proposal] = []
        start, scored, steps = time.perf_counter(), 1, 0
        for level, constraints in levels:
            budget = Budget(prepared, constraints)
            costs = budget.costs([current])
            last = None  # (moves, proxies, feasible, chosen) of this level's last step
            while not budget.within(costs)[0]:
                moves = _shrinks(grid, decisions, current)
                if not moves:
                    raise ConfigError(f"greedy: the most compressed candidate misses {constraints[0].text}: relax it "
                                      "or allow smaller choices")
                accs = proxies(moves)
                scored += len(moves)
                move_costs = budget.costs(moves)
                saved = (costs[metric.name][0] - move_costs[metric.name]) / base_cost
                gain = (accs - acc) / np.maximum(saved, 1e-6)  # accuracy change per share of cost saved
                best = int(np.argmax(np.where(saved > 0, gain, -np.inf)))
                steps += 1
                last = (moves, accs, budget.within(move_costs), best)
                current, acc = moves[best], float(accs[best])
                costs = {k: v[best:best + 1] for k, v in move_costs.items()}
                log(f"greedy step {steps}: {_describe(current, least)} -> proxy {acc:.1f}%, "
                    f"{metric.name} {float(costs[metric.name][0]) / base_cost:.0%} of the baseline")
            ranked = [(current, acc)]
            if last is not None:  # the other moves of the last step that meet the budget too
                moves, accs, ok, best = last
                ranked += sorted(((m, float(a)) for i, (m, a, f) in enumerate(zip(moves, accs, ok)) if f and i != best),
                                 key=lambda t: -t[1])
            for rank, (a, s) in enumerate(ranked[:per_level]):
                out.append(Proposal(policy_from_values(decisions, a), {"source": "greedy", "rank": rank, "budget_level": level,
                                                                       "proxy_accuracy": round(s, 3)}))
        seconds = time.perf_counter() - start
        log(f"greedy: {steps} steps, {scored} candidates measured in {seconds:.0f}s ({60 * scored / max(seconds, 1e-9):.0f}/min)")
        return out[:cfg.search.n_trials]

    def max_trials(self, proposals: list[Proposal]) -> int | None:
        return len(proposals)


def _describe(a: Mapping[str, Any], least: Mapping[str, Any]) -> str:
    """The decisions of ``a`` that differ from the least compressed candidate ``least``."""
    return ", ".join(f"{k}={v}" for k, v in a.items() if v != least[k])[:200] or "unchanged"
