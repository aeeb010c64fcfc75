"""The budget solver: per-group ratios and per-layer bit-widths that lose the least under cost budgets.

    minimise   sum over decisions of damage[decision, value]            (from ``sensitivity``,
                                                                        interpolated between measured ratios)
    subject to cost_k(policy) <= budget_k  for every cost constraint k  (macs, params, size,
               bitops, latency@device, energy@device: the device cost model itself)

A layer's cost depends on its input and output channel groups and its own bit-widths, so it
is not a sum of per-decision terms. The program is still solved exactly: each layer touched by
two or more decisions gets one continuous variable per combination of their values, tied to
the one-hot decision variables by marginal constraints (with integral one-hot marginals the
joint is integral too), and its costs per combination come from one vectorised call of the
cost model over every combination of every layer. ``scipy.optimize.milp`` (HiGHS) solves it;
each solution is re-checked with the cost model on the whole policy.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from automc.algorithms import Decision
from automc.analysis.layer_table import LayerTable
from automc.objectives import Constraint, Metric
from automc.policy import Policy
from automc.search.costs import cost_metrics, layer_costs
from automc.search.space import policy_from_values
from automc.search.strategies.sensitivity import RATIO_POINTS, Sensitivity, decision_grid, scored_decisions

_TIE = 1e-6  # equal damage: prefer the less compressed value (a zero entry may be noise)
#: pruning-ratio grids the solver chooses from, finest first: finer than sensitivity measures
#: (damage between measured ratios is interpolated), so a budget is met without a coarse
#: step's slack; the finest whose layer blocks stay under MAX_JOINT_VARS variables is used
SOLVER_RATIO_POINTS = (19, 13, RATIO_POINTS)
MAX_JOINT_VARS = 4000


def solver_grid(decision: Decision, points: int = SOLVER_RATIO_POINTS[0]) -> tuple[float, ...]:
    """The values the solver chooses from for ``decision`` (bit-widths: every choice)."""
    return decision_grid(decision, points)


@dataclass(frozen=True)
class Solution:
    policy: Policy
    damage: float  # summed sensitivity (loss increase) the solver predicts
    costs: dict[str, float]  # of the whole policy, re-checked with the cost model
    budget_scale: float = 1.0  # the budgets were multiplied by this


@dataclass
class _Var:
    param_name: str
    decision: Decision
    values: tuple[float, ...]
    damage: np.ndarray
    offset: int = 0  # first column of its one-hot block


class BudgetSolver:
    """Built once per (table, sensitivity, decisions); solves for any budgets of ``metrics``."""

    def __init__(self, table: LayerTable, sensitivity: Sensitivity, decisions: Sequence[Decision],
                 metrics: Sequence[Metric]):
        self.table = table
        self.metrics = list(dict.fromkeys(m for m in metrics if not m.needs_training))
        for points in SOLVER_RATIO_POINTS:
            self.vars = []
            for d in scored_decisions(decisions):
                values = solver_grid(d, points)
                self.vars.append(_Var(d.param_name, d, values, sensitivity.damage_at(d.param_name, values)))
            if self._joint_vars() <= MAX_JOINT_VARS:
                break
        offset = 0
        for v in self.vars:
            v.offset, offset = offset, offset + len(v.values)
        self.n_x = offset
        self._build_layer_terms()

    # -- the cost side: one cost-model call over every combination of every layer
    def _layer_vars(self, row: int) -> tuple[list[int], list[int]]:
        """The decisions changing row ``row``'s cost: ``(anchor, inputs)``; ``inputs`` are the
        pruning ratios of groups only its input reads (every group, for a channel-wise row),
        ``anchor`` the rest (a conv's or dense layer's output group, its bit-widths)."""
        name, t = self.table.names[row], self.table
        index = {v.param_name: i for i, v in enumerate(self.vars)}
        # a channel-wise row (pooling, depthwise conv, concat, add, ...): its cost grows with its
        # channels, which every group adds to alike; the anchor is its bit-widths
        out_groups = set() if t.kind[row] not in ("conv", "dense") else set(t.groups_of(row, "out"))
        anchor = [f"prune.{t.coupling[g].name}" for g in out_groups] + [f"w_bits.{name}", f"a_bits.{name}"]
        inputs = [f"prune.{t.coupling[g].name}" for g in t.groups_of(row, "in") if g not in out_groups]
        return (sorted({index[w] for w in anchor if w in index}), sorted({index[w] for w in inputs if w in index}))

    def _pieces(self, row: int) -> list[tuple[list[int], bool]]:
        """How row ``row``'s cost enters the program: ``(decisions, relative)`` pieces whose costs
        add up to it. A layer reading one group: one piece over all its decisions. A layer reading
        several (a DenseNet layer reads every earlier layer of its block: the joint of all would
        have ~5**30 combinations): its anchor, plus one piece per input group over the anchor and
        that group, relative to the anchor alone (others unpruned). Exact where a layer's cost is
        linear in its input channels given its output (MACs, params, BitOPs, size); a first-order
        split otherwise (latency's roofline), which every solution's re-check with the cost
        model on the whole policy guards."""
        anchor, inputs = self._layer_vars(row)
        if len(inputs) <= 1:
            return [(sorted(anchor + inputs), False)]
        return [(anchor, False)] + [(anchor + [i], True) for i in inputs]

    def _joint_vars(self) -> int:
        sizes = ([len(self.vars[i].values) for i in vs] for row in range(len(self.table)) for vs, _ in self._pieces(row))
        return sum(math.prod(n) for n in sizes if len(n) > 1)

    def _policy(self, assignment: dict[int, int]) -> Policy:
        chosen = [self.vars[i] for i in assignment]
        return policy_from_values([v.decision for v in chosen],
                                  {v.param_name: v.values[o] for v, o in zip(chosen, assignment.values())})

    def _build_layer_terms(self) -> None:
        pieces = []  # (row, var indices, combos, first policy, index of the anchor piece it is relative to)
        policies = [Policy()]
        for row in range(len(self.table)):
            anchor_piece = None
            for vs, relative in self._pieces(row):
                combos = list(itertools.product(*[range(len(self.vars[i].values)) for i in vs])) if vs else []
                pieces.append((row, vs, combos, len(policies), anchor_piece if relative else None))
                if not relative:
                    anchor_piece = len(pieces) - 1
                policies += [self._policy(dict(zip(vs, c))) for c in combos]
        costs = layer_costs(self.table, policies, self.metrics)
        self.constant = {m: float(c) for m, (_, c) in costs.items()}
        # x-coefficients (pieces with one decision) and y-blocks (pieces with several)
        self.x_cost = {m: np.zeros(self.n_x) for m in costs}
        self.blocks = []  # (var indices, combos array (C, k), {metric: (C,) costs})
        for row, vs, combos, start, anchor in pieces:
            if not vs:  # nothing changes it (or a relative piece's anchor): the unpruned cost
                for m, (per_layer, _) in costs.items():
                    self.constant[m] += float(per_layer[0, row])
                continue
            per = {m: per_layer[start:start + len(combos), row].astype(float) for m, (per_layer, _) in costs.items()}
            if anchor is not None:  # minus the anchor's cost at the same anchor values
                anchor_vs, anchor_start = pieces[anchor][1], pieces[anchor][3]
                at = (np.ravel_multi_index(np.array(combos)[:, :len(anchor_vs)].T,
                                           [len(self.vars[i].values) for i in anchor_vs]) + anchor_start
                      if anchor_vs else np.zeros(len(combos), dtype=np.int64))
                for m, (per_layer, _) in costs.items():
                    per[m] -= per_layer[at, row]
            if len(vs) == 1:
                v = self.vars[vs[0]]
                for m in per:
                    self.x_cost[m][v.offset:v.offset + len(v.values)] += per[m]
            else:
                self.blocks.append((vs, np.array(combos), per))
        self.n_y = sum(len(c) for _, c, _ in self.blocks)

    # -- the program
    def _model(self, budgets: dict[str, float]):
        from scipy.optimize import LinearConstraint
        from scipy.sparse import lil_matrix

        n = self.n_x + self.n_y
        objective = self._damage_row(n)
        for v in self.vars:
            objective[v.offset:v.offset + len(v.values)] += _TIE * np.argsort(np.argsort(self._compression_order(v)))
        rows_eq = len(self.vars) + sum(sum(len(self.vars[i].values) for i in vs) for vs, _, _ in self.blocks)
        a_eq = lil_matrix((rows_eq, n))
        r = 0
        for v in self.vars:  # one value per decision
            a_eq[r, v.offset:v.offset + len(v.values)] = 1.0
            r += 1
        col = self.n_x
        for vs, combos, _ in self.blocks:  # marginals of each layer's joint block
            for k, i in enumerate(vs):
                v = self.vars[i]
                for o in range(len(v.values)):
                    members = np.nonzero(combos[:, k] == o)[0]
                    a_eq[r, col + members] = 1.0
                    a_eq[r, v.offset + o] = -1.0
                    r += 1
            col += len(combos)
        eq_rhs = np.zeros(rows_eq)
        eq_rhs[:len(self.vars)] = 1.0
        cons = [LinearConstraint(a_eq.tocsr(), eq_rhs, eq_rhs)]
        if budgets:
            a_b = np.zeros((len(budgets), n))
            ub = np.zeros(len(budgets))
            for k, (m, b) in enumerate(budgets.items()):
                a_b[k, :self.n_x] = self.x_cost[m]
                col = self.n_x
                for _, combos, per in self.blocks:
                    a_b[k, col:col + len(combos)] = per[m]
                    col += len(combos)
                ub[k] = b - self.constant[m]
            cons.append(LinearConstraint(a_b, -np.inf, ub))
        integrality = np.r_[np.ones(self.n_x), np.zeros(self.n_y)]
        return objective, cons, integrality

    def _damage_row(self, n: int) -> np.ndarray:
        """Each decision value's predicted damage in its one-hot column (the joint columns: 0)."""
        row = np.zeros(n)
        for v in self.vars:
            row[v.offset:v.offset + len(v.values)] = v.damage
        return row

    @staticmethod
    def _compression_order(v: _Var) -> np.ndarray:
        vals = np.asarray(v.values, float)
        return vals if v.decision.section == "prune" else -vals

    def solve(self, budgets: dict[Metric, float], *, n_solutions: int = 1, budget_scale: float = 1.0,
              min_damage: float = 0.0, time_limit_s: float = 30.0) -> list[Solution]:
        """The ``n_solutions`` best policies (least predicted damage first) under ``budgets``
        (metric -> upper bound, each scaled by ``budget_scale``) among those whose predicted
        damage is at least ``min_damage``; fewer if no more are feasible."""
        from scipy.optimize import Bounds, LinearConstraint, milp

        limits = {m.name: float(b) * budget_scale for m, b in budgets.items()}
        unknown = set(limits) - set(self.constant)
        if unknown:
            raise ValueError(f"solver built without metrics {sorted(unknown)}")
        objective, cons, integrality = self._model(limits)
        if min_damage > 0:
            cons.append(LinearConstraint(self._damage_row(len(objective)), min_damage, np.inf))
        bounds = Bounds(np.zeros(len(objective)), np.ones(len(objective)))
        out: list[Solution] = []
        deadline = time.perf_counter() + time_limit_s
        while len(out) < n_solutions and time.perf_counter() < deadline:
            res = milp(objective, constraints=cons, integrality=integrality, bounds=bounds,
                       options={"time_limit": max(1.0, deadline - time.perf_counter())})
            if res.x is None or res.status not in (0, 1):
                break
            chosen = self._chosen(res.x)
            policy = self._policy(chosen)
            costs = {m: float(v[0]) for m, v in cost_metrics(self.table, [policy], self.metrics).items()}
            damage = float(sum(self.vars[i].damage[o] for i, o in chosen.items()))
            out.append(Solution(policy, damage, costs, budget_scale))
            cut = np.zeros(len(objective))  # no-good cut: the next solution differs in a decision
            for i, o in chosen.items():
                cut[self.vars[i].offset + o] = 1.0
            cons = cons + [LinearConstraint(cut, -np.inf, len(self.vars) - 1)]
        return out

    def _chosen(self, x: np.ndarray) -> dict[int, int]:
        return {i: int(np.argmax(x[v.offset:v.offset + len(v.values)])) for i, v in enumerate(self.vars)}


def budgets_of(constraints: Sequence[Constraint]) -> dict[Metric, float]:
    """The cost constraints (``<=`` on a cost metric; already absolute) as solver budgets."""
    return {c.metric: c.value for c in constraints if not c.metric.needs_training and c.op == "<="}
